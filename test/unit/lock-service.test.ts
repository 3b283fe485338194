import { describe, expect, it, onTestFinished, vi } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { lockProblem } from "../../src/http/errors.js";
import { LockError } from "../../src/lock/index.js";
import type { Metrics } from "../../src/metrics.js";
import type { Problem } from "../../src/problems.js";
import { fakeLocks, leaseOf, settled } from "./support.js";

/**
 * The lock protocol's decisions, through LockService's public API on a fake etcd: what
 * it answers, and what it leaves in etcd. Races are scripted with the fake's pauses, and
 * time is the fake's clock (Date.now reads it), so every outcome is decided by events.
 */

/** The refusal `p` rejects with (fails the test when it resolves). */
async function refusal(p: Promise<unknown>): Promise<Problem> {
  const err = await p.then(
    (v) => {
      throw new Error(`expected a refusal, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
  // What the API would answer: the engine's refusal through the HTTP layer's one mapping.
  if (err instanceof LockError) return lockProblem(err);
  throw err;
}

const iso = (ms: number) => new Date(ms).toISOString();

const modes = [
  { worker: false, how: "shared I/O (Node)" },
  { worker: true, how: "no shared I/O (Workers)" },
];

describe.each(modes)("LockService decisions on a fake etcd: $how", ({ worker }) => {
  const setup = () => fakeLocks({ worker });

  it("acquires a free lock: the token is the key's create revision, the handle names its lease", async () => {
    const { fake, locks } = setup();
    const { grant, replayed } = await locks.acquire("n", { ttl: 30, wait: 0, owner: "me" });
    expect(replayed).toBe(false);
    const kv = fake.peek("t/n");
    expect(grant).toEqual({
      name: "n",
      token: kv?.createRevision,
      lease: expect.stringMatching(/^[0-9a-f]{32}$/),
      ttl: 30,
      expiresAt: iso(fake.now() + 30_000),
      owner: "me",
    });
    expect(kv?.lease).toBe(leaseOf(grant.lease));
    // etcd holds no copy of the handle's secret half.
    expect(kv?.value).not.toContain(grant.lease.slice(16));
  });

  it("reports the TTL etcd granted when it raised a small one", async () => {
    const { locks } = setup();
    expect((await locks.acquire("n", { ttl: 1, wait: 0 })).grant.ttl).toBe(2);
  });

  it("a held lock answers lock-held with the holder and a Retry-After, never an earlier expiry", async () => {
    const { fake, locks } = setup();
    const { grant } = await locks.acquire("n", { ttl: 30, wait: 0, owner: "first" });
    fake.advance(10_500);
    const held = await refusal(locks.acquire("n", { ttl: 30, wait: 0, owner: "second" }));
    expect(held.code).toBe("lock-held");
    expect(held.status).toBe(409);
    // etcd says 19 whole seconds are left; this instance told the holder the lease ends
    // at grant + 30 s, and says the same now.
    expect(held.extensions.holder).toEqual({ owner: "first", token: grant.token, expiresAt: grant.expiresAt });
    expect(held.headers["Retry-After"]).toBe("20");
  });

  it("another instance estimates the expiry from etcd's whole seconds, as a lower bound", async () => {
    const { fake, locks } = setup();
    const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
    fake.advance(10_500);
    const other = fakeLocks({ worker }, fake).locks;
    const held = await refusal(other.acquire("n", { ttl: 30, wait: 0 }));
    expect(held.extensions.holder).toEqual({ token: grant.token, expiresAt: iso(fake.now() + 19_000) });
    expect(held.headers["Retry-After"]).toBe("19");
  });

  it("a lock whose lease expired is free again, with a larger token", async () => {
    const { fake, locks } = setup();
    const first = await locks.acquire("n", { ttl: 5, wait: 0 });
    fake.advance(5_000);
    const second = await locks.acquire("n", { ttl: 5, wait: 0 });
    expect(second.grant.token).toBeGreaterThan(first.grant.token);
  });

  it("a waiter is woken by the release and gets the lock", async () => {
    const { fake, locks } = setup();
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const watching = fake.nextCall("watchDeletes");
    const waiter = locks.acquire("n", { ttl: 30, wait: 60 });
    await watching;
    expect(locks.activeWaiters).toBe(1);
    await locks.release("n", holder.grant.lease);
    const { grant } = await waiter;
    expect(grant.token).toBeGreaterThan(holder.grant.token);
    expect(fake.peek("t/n")?.createRevision).toBe(grant.token);
    expect(locks.activeWaiters).toBe(0);
  });

  it("a waiter is woken by the holder's lease expiring", async () => {
    const { fake, locks } = setup();
    await locks.acquire("n", { ttl: 10, wait: 0 });
    const watching = fake.nextCall("watchDeletes");
    const waiter = locks.acquire("n", { ttl: 30, wait: 60 });
    await watching;
    fake.advance(10_000);
    expect((await waiter).grant.ttl).toBe(30);
  });

  it("a wait that runs out answers lock-held", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = setup();
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const watching = fake.nextCall("watchDeletes");
    const waiter = refusal(locks.acquire("n", { ttl: 30, wait: 5 }));
    await watching;
    fake.advance(5_000);
    await vi.advanceTimersByTimeAsync(5_000);
    const held = await waiter;
    expect(held).toMatchObject({ code: "lock-held", extensions: { holder: { token: holder.grant.token } } });
    expect(locks.activeWaiters).toBe(0);
  });

  it("beyond maxWaiters, a waiting acquire is refused at once", async () => {
    const { fake, locks } = fakeLocks({ worker, maxWaiters: 1 });
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const watching = fake.nextCall("watchDeletes");
    const first = locks.acquire("n", { ttl: 30, wait: 60 });
    await watching;
    const refused = await refusal(locks.acquire("n", { ttl: 30, wait: 60 }));
    expect(refused).toMatchObject({ code: "too-many-waiters", headers: { "Retry-After": "1" } });
    await locks.release("n", holder.grant.lease);
    await first;
  });

  it("shutting down answers waiters with backend-unavailable", async () => {
    const shutdown = new AbortController();
    const { fake, locks } = fakeLocks({ worker, shutdownSignal: shutdown.signal });
    await locks.acquire("n", { ttl: 30, wait: 0 });
    const watching = fake.nextCall("watchDeletes");
    const waiter = refusal(locks.acquire("n", { ttl: 30, wait: 60 }));
    await watching;
    shutdown.abort();
    expect(await waiter).toMatchObject({ code: "backend-unavailable", headers: { "Retry-After": "1" } });
  });

  describe("idempotent acquires", () => {
    const idem = { idempotencyKey: "k-1", caller: "api-key-a" };

    it("the same caller repeating the same request gets the same grant, replayed", async () => {
      const { fake, locks } = setup();
      const first = await locks.acquire("n", { ttl: 30, wait: 0, owner: "o", ...idem });
      fake.advance(2_000);
      const again = await locks.acquire("n", { ttl: 30, wait: 0, owner: "o", ...idem });
      expect(again.replayed).toBe(true);
      expect(again.grant).toEqual(first.grant);
      // The replayed handle is the grant's own: it releases the lock.
      await locks.release("n", again.grant.lease);
      expect(fake.peek("t/n")).toBeUndefined();
    });

    it("the same key with other fields is a mismatch", async () => {
      const { locks } = setup();
      await locks.acquire("n", { ttl: 30, wait: 0, ...idem });
      for (const other of [{ ttl: 31 }, { owner: "x" }]) {
        const err = await refusal(locks.acquire("n", { ttl: 30, wait: 0, ...idem, ...other }));
        expect(err).toMatchObject({ code: "idempotency-key-mismatch", status: 422 });
      }
    });

    it("a retry may wait less than the first attempt: clients send the wait that is left", async () => {
      const { locks } = setup();
      const first = await locks.acquire("n", { ttl: 30, wait: 10, ...idem });
      const retry = await locks.acquire("n", { ttl: 30, wait: 7.5, ...idem });
      expect(retry).toMatchObject({ replayed: true, grant: { lease: first.grant.lease } });
    });

    it("another caller with the same key is just another acquire: lock-held, no handle", async () => {
      const { locks } = setup();
      await locks.acquire("n", { ttl: 30, wait: 0, ...idem });
      const err = await refusal(locks.acquire("n", { ttl: 30, wait: 0, ...idem, caller: "api-key-b" }));
      expect(err.code).toBe("lock-held");
      expect(JSON.stringify(err.toJSON())).not.toMatch(/lease/);
    });
  });

  describe("release and renew", () => {
    it("releasing its own grant costs one guarded delete, and pools the lease", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      fake.resetCalls();
      await locks.release("n", grant.lease);
      expect(fake.calls.map((c) => c.method)).toEqual(["deleteAllIfUnchanged"]);
      expect(fake.peek("t/n")).toBeUndefined();
      expect(fake.lease(leaseOf(grant.lease))).toBeDefined();
    });

    it("another instance releases a grant after checking its handle", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      const other = fakeLocks({ worker }, fake).locks;
      await other.release("n", grant.lease);
      expect(fake.peek("t/n")).toBeUndefined();
    });

    it("a former holder's handle on a reused lease is lock-lost and leaves the new grant alone", async () => {
      const { fake, locks } = setup();
      const a = await locks.acquire("n", { ttl: 30, wait: 0 });
      await locks.release("n", a.grant.lease);
      const b = await locks.acquire("n", { ttl: 30, wait: 0 });
      expect(leaseOf(b.grant.lease)).toBe(leaseOf(a.grant.lease));
      for (const stale of [locks.release("n", a.grant.lease), locks.renew("n", a.grant.lease)]) {
        expect(await refusal(stale)).toMatchObject({ code: "lock-lost", status: 410 });
      }
      expect(fake.peek("t/n")?.createRevision).toBe(b.grant.token);
      expect((await locks.renew("n", b.grant.lease)).token).toBe(b.grant.token);
    });

    it("a grant that expired, and a handle that is no handle, are lock-lost", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 5, wait: 0 });
      fake.advance(5_000);
      expect((await refusal(locks.release("n", grant.lease))).code).toBe("lock-lost");
      expect((await refusal(locks.renew("n", grant.lease))).code).toBe("lock-lost");
      expect((await refusal(locks.release("n", "not-a-handle"))).code).toBe("lock-lost");
    });

    it("renew resets the lease and moves the expiry on", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 10, wait: 0 });
      fake.advance(8_000);
      const renewed = await locks.renew("n", grant.lease);
      expect(renewed).toMatchObject({ token: grant.token, ttl: 10, expiresAt: iso(fake.now() + 10_000) });
      fake.advance(8_000);
      expect(fake.peek("t/n")).toBeDefined();
    });

    it("inspect never reports an expiry earlier than the one the holder was given", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      fake.advance(1_500);
      expect(await locks.inspect("n")).toMatchObject({ ttl: 28, expiresAt: grant.expiresAt });
    });
  });

  describe("force release", () => {
    it("ends the current grant and revokes its lease", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      expect(await locks.forceRelease("n")).toBeDefined();
      await settled();
      expect(fake.peek("t/n")).toBeUndefined();
      expect(fake.lease(leaseOf(grant.lease))).toBeUndefined();
      expect(await locks.forceRelease("n")).toBeUndefined();
    });

    it("a lease read before the grant ended and reused for another name is left alone", async () => {
      const { fake, locks: holderSide } = setup();
      const adminSide = fakeLocks({ worker }, fake).locks;
      const first = await holderSide.acquire("team-a:x", { ttl: 30, wait: 0 });
      const read = fake.pauseNext("get", { applied: true, match: (key) => key === "t/team-a:x" });
      const forced = adminSide.forceRelease("team-a:x");
      await read.reached; // the admin's instance has read the grant and its lease, and lags
      await holderSide.release("team-a:x", first.grant.lease);
      const theirs = await holderSide.acquire("team-b:y", { ttl: 30, wait: 0 });
      const lease = leaseOf(first.grant.lease);
      expect(leaseOf(theirs.grant.lease)).toBe(lease);
      read.release();
      expect(await forced).toBeUndefined();
      await settled();
      expect(fake.argsOf("leaseRevoke")).not.toContainEqual([lease]);
      expect(fake.peek("t/team-b:y")?.createRevision).toBe(theirs.grant.token);
      expect((await holderSide.renew("team-b:y", theirs.grant.lease)).token).toBe(theirs.grant.token);
    });

    it("a grant that changed hands between the read and the txn: the new one is ended", async () => {
      const { fake, locks: holderSide } = setup();
      const adminSide = fakeLocks({ worker }, fake).locks;
      const first = await holderSide.acquire("n", { ttl: 30, wait: 0 });
      const read = fake.pauseNext("get", { applied: true, match: (key) => key === "t/n" });
      const forced = adminSide.forceRelease("n");
      await read.reached;
      await holderSide.release("n", first.grant.lease);
      const second = await holderSide.acquire("n", { ttl: 30, wait: 0 });
      read.release();
      expect(await forced).toBeDefined();
      await settled();
      expect(fake.peek("t/n")).toBeUndefined();
      expect(fake.lease(leaseOf(second.grant.lease))).toBeUndefined();
      expect((await refusal(holderSide.renew("n", second.grant.lease))).code).toBe("lock-lost");
    });
  });

  describe("leases that die or answers that are lost", () => {
    it("a pooled lease that died is skipped: the acquire gets a fresh lease", async () => {
      const { fake, locks } = setup();
      const a = await locks.acquire("a", { ttl: 30, wait: 0 });
      await locks.release("a", a.grant.lease);
      const dead = leaseOf(a.grant.lease);
      await fake.leaseRevoke(dead); // behind the service's back
      fake.resetCalls();
      const b = await locks.acquire("b", { ttl: 30, wait: 0 });
      expect(leaseOf(b.grant.lease)).not.toBe(dead);
      expect(fake.count("leaseGrant")).toBe(1);
      expect(fake.peek("t/b")?.lease).toBe(leaseOf(b.grant.lease));
    });

    it("in a shared txn, a dead pooled lease fails only its own acquire's attempt", async () => {
      const { fake, locks } = setup();
      const first = await Promise.all(["a", "b"].map((n) => locks.acquire(n, { ttl: 30, wait: 0 })));
      await Promise.all(first.map(({ grant }) => locks.release(grant.name, grant.lease)));
      const [dead, alive] = first.map(({ grant }) => leaseOf(grant.lease));
      await fake.leaseRevoke(dead ?? 0n);
      const next = await Promise.all(["c", "d"].map((n) => locks.acquire(n, { ttl: 30, wait: 0 })));
      const leases = next.map(({ grant }) => leaseOf(grant.lease));
      expect(leases).toContain(alive);
      expect(leases).not.toContain(dead);
      for (const { grant } of next) expect(fake.peek(`t/${grant.name}`)?.createRevision).toBe(grant.token);
    });

    it("a create whose answer was lost revokes its lease, so no key stays held by nobody", async () => {
      const { fake, locks } = setup();
      fake.failNext("createAllIfAbsent", { applied: true });
      await expect(locks.acquire("n", { ttl: 30, wait: 0 })).rejects.toBeInstanceOf(EtcdUnavailableError);
      await settled();
      expect(fake.peek("t/n")).toBeUndefined();
      expect((await locks.acquire("n", { ttl: 30, wait: 0 })).grant.name).toBe("n");
    });

    it("a grant whose caller hung up is ended by its own revision", async () => {
      const { fake, locks } = setup();
      const gone = new AbortController();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0, signal: gone.signal });
      const deleting = fake.nextCall("deleteAllIfUnchanged");
      gone.abort();
      expect((await deleting)[0]).toEqual([{ key: "t/n", modRevision: grant.token }]);
      await settled();
      expect(fake.peek("t/n")).toBeUndefined();
    });
  });
});

describe("LockService metrics outcomes (fake etcd)", () => {
  it("counts granted, held, timeout, lost, released and forced", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const seen: string[] = [];
    const metrics: Metrics = {
      acquire: (o) => seen.push(`acquire:${o}`),
      renew: (o) => seen.push(`renew:${o}`),
      release: (o) => seen.push(`release:${o}`),
      waited: () => seen.push("waited"),
      held: () => seen.push("held"),
      etcd: () => {},
    };
    const { fake, locks } = fakeLocks({ metrics });
    const a = await locks.acquire("n", { ttl: 30, wait: 0 });
    await refusal(locks.acquire("n", { ttl: 30, wait: 0 }));
    const watching = fake.nextCall("watchDeletes");
    const waiter = refusal(locks.acquire("n", { ttl: 30, wait: 1 }));
    await watching;
    fake.advance(1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    await waiter;
    await locks.renew("n", a.grant.lease);
    await locks.release("n", a.grant.lease);
    await refusal(locks.release("n", a.grant.lease));
    await refusal(locks.renew("n", a.grant.lease));
    await locks.acquire("n", { ttl: 30, wait: 0 });
    await locks.forceRelease("n");
    expect(seen).toEqual([
      "acquire:granted",
      "acquire:held",
      "waited",
      "acquire:timeout",
      "renew:renewed",
      "release:released",
      "held",
      "release:lost",
      "renew:lost",
      "acquire:granted",
      "release:forced",
      "held",
    ]);
  });
});
