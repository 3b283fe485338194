import { describe, expect, it } from "vitest";
import { createLines, LockError, LockHeld, LockLost } from "../../src/lock/index.js";
import { parseHandle } from "../../src/lock/names.js";
import { counting, grpcOnTestEtcd } from "../support/etcd.js";
import { uniqueName } from "../support/http.js";
import { createTestLocks as createLocks, grantOf } from "../support/locks.js";

const settle = <T>(p: Promise<T>) =>
  p.then(
    (v) => v,
    (e: unknown) => (e instanceof LockError ? e : Promise.reject(e)),
  );

describe("coalesced txns and the release fast path (real etcd)", () => {
  const shared = grpcOnTestEtcd();

  it("concurrent acquires and releases of distinct names share txns, and each name gets its grant", async () => {
    const { client, calls, reset } = counting(shared.client);
    const locks = createLocks(client, { prefix: "t/", maxWaiters: 100 });
    const names = Array.from({ length: 20 }, () => uniqueName("batch"));
    // Warm the pool so the acquires below need no lease grants and start together.
    await Promise.all(
      names.map(async (n) => {
        const { grant } = await locks.acquire(`${n}-warm`, { ttl: 10, wait: 0 });
        await locks.release(grant.name, grant.lease);
      }),
    );
    reset();
    const grants = (await Promise.all(names.map((n) => locks.acquire(n, { ttl: 10, wait: 0 })))).map((r) => r.grant);
    expect(calls.joinAll ?? 0).toBeLessThanOrEqual(3);
    for (const g of grants) expect((await locks.inspect(g.name))?.token).toBe(g.token);
    reset();
    await Promise.all(grants.map((g) => locks.release(g.name, g.lease)));
    expect(calls.deleteAllIfUnchanged ?? 0).toBeLessThanOrEqual(3);
    // The release fast path: no read before the delete.
    expect(calls.get ?? 0).toBe(0);
    for (const g of grants) expect(await locks.inspect(g.name)).toBeUndefined();
    await locks.close();
  });

  it("a taken name in a batch fails only its own acquire", async () => {
    const other = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const locks = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const taken = uniqueName("taken");
    const held = await other.acquire(taken, { ttl: 10, wait: 0, owner: "other" });
    const names = [uniqueName("free"), taken, uniqueName("free"), uniqueName("free")];
    const results = await Promise.all(names.map((n) => settle(locks.acquire(n, { ttl: 10, wait: 0 }))));
    expect(results[1]).toBeInstanceOf(LockHeld);
    for (const i of [0, 2, 3]) expect(results[i]).toMatchObject({ grant: { name: names[i] } });
    expect((await locks.inspect(taken))?.token).toBe(held.grant.token);
    await other.close();
    await locks.close();
  });

  it("two acquires of one name at once on one instance: one grant, one lock-held", async () => {
    const locks = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const name = uniqueName("twice");
    const results = await Promise.all([0, 1].map(() => settle(locks.acquire(name, { ttl: 10, wait: 0 }))));
    expect(results.filter((r) => r instanceof LockHeld)).toHaveLength(1);
    expect(results.filter((r) => !(r instanceof LockError))).toHaveLength(1);
    await locks.close();
  });

  it("acquires of one semaphore at once on one instance: never more grants than its limit", async () => {
    const lines = createLines(shared.client, { prefix: "t/", maxWaiters: 100 });
    const line = { kind: "semaphore" as const, name: uniqueName("sem") };
    // Warm the pool: the acquires below start in one turn and would share a txn if allowed.
    await Promise.all(
      [0, 1, 2, 3, 4].map(async (i) => {
        const { grant } = grantOf(
          await lines.acquire({ kind: "lock", name: `${line.name}-${i}` }, { ttl: 10, wait: 0, limit: 1 }),
        );
        await lines.release({ kind: "lock", name: grant.name }, grant.lease);
      }),
    );
    const results = await Promise.all(
      [0, 1, 2, 3, 4].map(() => settle(lines.acquire(line, { ttl: 10, wait: 0, limit: 2 }))),
    );
    const granted = results.filter((r) => !(r instanceof LockError));
    expect(granted).toHaveLength(2);
    expect(results.filter((r) => r instanceof LockHeld)).toHaveLength(3);
    const info = await lines.inspect(line);
    expect(info?.holders).toHaveLength(2);
    expect(new Set(info?.holders.map((h) => h.token)).size).toBe(2);
    await lines.close();
  });

  it("a pooled lease that died is skipped: the acquire gets a live lease and holds the lock", async () => {
    const locks = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const pair = [uniqueName("die"), uniqueName("die")];
    const first = await Promise.all(pair.map((n) => locks.acquire(n, { ttl: 10, wait: 0 })));
    await Promise.all(first.map((r) => locks.release(r.grant.name, r.grant.lease)));
    // Both leases sit in the pool; one is revoked behind the service's back.
    const dead = parseHandle(first[0]?.grant.lease ?? "")?.lease ?? 0n;
    expect(await shared.client.leaseRevoke(dead)).toBe(true);
    const next = [uniqueName("after"), uniqueName("after")];
    const grants = (await Promise.all(next.map((n) => locks.acquire(n, { ttl: 10, wait: 0 })))).map((r) => r.grant);
    // The dead lease fails the shared txn; sent alone again, the live one is still used.
    const alive = parseHandle(first[1]?.grant.lease ?? "")?.lease;
    expect(grants.map((g) => parseHandle(g.lease)?.lease)).toContain(alive);
    for (const g of grants) {
      expect(parseHandle(g.lease)?.lease).not.toBe(dead);
      expect((await locks.inspect(g.name))?.token).toBe(g.token);
      expect((await shared.client.leaseTimeToLive(parseHandle(g.lease)?.lease ?? 0n)).ttl).toBeGreaterThan(8);
    }
    await locks.close();
  });

  it("a release whose remembered grant is stale falls back to etcd: old handle lost, the new holder untouched", async () => {
    const a = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const b = createLocks(shared.client, { prefix: "t/", maxWaiters: 100 });
    const name = uniqueName("stale");
    const old = await a.acquire(name, { ttl: 10, wait: 0 });
    expect(await b.forceRelease(name)).toBeDefined();
    const now = await b.acquire(name, { ttl: 10, wait: 0 });
    await expect(a.release(name, old.grant.lease)).rejects.toBeInstanceOf(LockLost);
    expect((await a.inspect(name))?.token).toBe(now.grant.token);
    // A remembers nothing of b's grant: its release goes the read-then-delete way.
    await a.release(name, now.grant.lease);
    expect(await a.inspect(name)).toBeUndefined();
    await a.close();
    await b.close();
  });
});
