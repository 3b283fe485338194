import { describe, expect, it, vi } from "vitest";
import { LockError, LockHeld, LockLost } from "../../src/lock/index.js";
import { parseHandle } from "../../src/lock/names.js";
import { counting, grpcOnTestEtcd, untilWatches } from "../support/etcd.js";
import { eventually, sleep, uniqueName, until } from "../support/http.js";
import { createTestLocks as createLocks } from "../support/locks.js";

describe("the line engine's etcd economy for locks (real etcd)", () => {
  const shared = grpcOnTestEtcd();

  it("an uncontended cycle reuses the released lease: no grant and no revoke after the first", async () => {
    const { client, calls, reset } = counting(shared.client);
    const locks = createLocks(client, { prefix: "t/", maxWaiters: 100 });
    const first = await locks.acquire(uniqueName(), { ttl: 10, wait: 0 });
    await locks.release(first.grant.name, first.grant.lease);
    reset();
    for (let i = 0; i < 5; i++) {
      const { grant } = await locks.acquire(uniqueName(), { ttl: 10, wait: 0 });
      await locks.release(grant.name, grant.lease);
    }
    expect(calls.leaseGrant ?? 0).toBe(0);
    expect(calls.leaseRevoke ?? 0).toBe(0);
    // Per cycle: keep-alive alongside the join txn to acquire (no read first), one delete txn to release.
    expect(calls).toEqual({ leaseKeepAliveOnce: 5, joinAll: 5, deleteAllIfUnchanged: 5 });
    await locks.close();
  });

  it("a reused lease never lets a former holder's handle touch the later grant", async () => {
    const locks = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const name = uniqueName("reuse");
    const a = await locks.acquire(name, { ttl: 10, wait: 0 });
    await locks.release(name, a.grant.lease);
    const b = await locks.acquire(name, { ttl: 10, wait: 0 });
    // Same etcd lease, different grant.
    expect(parseHandle(b.grant.lease)?.lease).toBe(parseHandle(a.grant.lease)?.lease);
    expect(b.grant.lease).not.toBe(a.grant.lease);
    expect(b.grant.token).toBeGreaterThan(a.grant.token);
    await expect(locks.renew(name, a.grant.lease)).rejects.toBeInstanceOf(LockLost);
    await expect(locks.release(name, a.grant.lease)).rejects.toBeInstanceOf(LockLost);
    expect((await locks.inspect(name))?.token).toBe(b.grant.token);
    expect((await locks.renew(name, b.grant.lease)).token).toBe(b.grant.token);
    await locks.release(name, b.grant.lease);
    await locks.close();
  });

  it("pooled leases nobody reuses are revoked, not left in etcd for their whole TTL", async () => {
    const locks = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const { grant } = await locks.acquire(uniqueName("idle"), { ttl: 600, wait: 0 });
    await locks.release(grant.name, grant.lease);
    const id = parseHandle(grant.lease)?.lease ?? 0n;
    expect((await shared.client.leaseTimeToLive(id)).ttl).toBeGreaterThan(0);
    // The pool's idle window (3 s) passes on a fake clock: the sweep runs as if 3.3 s later.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 3_300 });
    try {
      locks.lines.sweepLeases();
    } finally {
      vi.useRealTimers();
    }
    await until(async () => (await shared.client.leaseTimeToLive(id)).ttl === -1, "the idle lease to be revoked");
    expect((await shared.client.leaseTimeToLive(id)).ttl).toBe(-1);
    await locks.close();
  });

  it("waiters share one copy of the line (one read, one watch), and each release wakes one of them", async () => {
    const { client, calls, reset } = counting(shared.client);
    const locks = createLocks(client, { prefix: "t/", maxWaiters: 100 });
    const name = uniqueName("shared");
    const holder = await locks.acquire(name, { ttl: 30, wait: 0 });
    const waiters = Array.from({ length: 20 }, () =>
      locks.acquire(name, { ttl: 30, wait: 4 }).then(
        (r) => r.grant,
        (e: LockError) => e,
      ),
    );
    await until(
      async () => (await locks.inspect(name))?.waiters === 20 && calls.watchRange === 1,
      "20 waiters in line on one watch",
    );
    reset();
    await locks.release(name, holder.grant.lease);
    await Promise.any(waiters.map((w) => w.then((r) => (r instanceof LockError ? Promise.reject(r) : r))));
    // One wake-up, one attempt (the waiter's key put again as a holder): not twenty
    // transactions racing for one lock, and nobody read the line again.
    expect(calls.guardedWrite).toBe(1);
    expect(calls.joinAll ?? 0).toBe(0);
    expect(calls.scan ?? 0).toBe(0);
    const results = await Promise.all(waiters);
    const granted = results.filter((r) => !(r instanceof LockError));
    expect(granted).toHaveLength(1);
    expect(results.filter((r) => r instanceof LockHeld)).toHaveLength(19);
    await locks.close();
  });

  it("a woken waiter that leaves passes the turn on, so a free lock never sleeps", async () => {
    const locks = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const name = uniqueName("baton");
    const holder = await locks.acquire(name, { ttl: 30, wait: 0 });
    const gone = new AbortController();
    const first = locks.acquire(name, { ttl: 30, wait: 5, signal: gone.signal }).catch((e: Error) => e);
    await until(async () => (await locks.inspect(name))?.waiters === 1, "the first acquire to wait");
    const second = locks.acquire(name, { ttl: 30, wait: 5 });
    await until(async () => (await locks.inspect(name))?.waiters === 2, "the second acquire to wait behind it");
    // The first waiter is woken by the release but hangs up before it can try.
    const released = locks.release(name, holder.grant.lease);
    gone.abort();
    await released;
    const started = Date.now();
    const got = await second;
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(got.grant.token).toBeGreaterThan(holder.grant.token);
    expect(await first).toBeInstanceOf(Error);
    await locks.close();
  });

  it("a waiter rides out an etcd outage shorter than its wait instead of failing", async () => {
    const locks = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const name = uniqueName("ride");
    const holder = await locks.acquire(name, { ttl: 30, wait: 0 });
    const waiting = locks.acquire(name, { ttl: 30, wait: 12 });
    await until(async () => (await locks.inspect(name))?.waiters === 1, "the acquire to wait");
    await untilWatches(shared.etcd.endpoint, 1, "the waiter's watch to be open in etcd");
    await shared.etcd.stop();
    // Deliberate: the outage lasts a while (1.5 s), well inside the waiter's 12 s.
    await sleep(1_500);
    await shared.etcd.restart();
    // Once the client has reconnected, release: the waiter gets the lock.
    await eventually(() => locks.release(name, holder.grant.lease), "the release once etcd is back");
    const got = await waiting;
    expect(got.grant.token).toBeGreaterThan(holder.grant.token);
    await locks.close();
  });
});
