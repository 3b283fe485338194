import { describe, expect, it } from "vitest";
import { LeasePool } from "../../src/lock/strategies/lease-pool.js";
import { fakeLines, leaseOf, settled } from "./support.js";

const T0 = 1_000_000;

describe("LeasePool", () => {
  it("hands a pooled lease only to a request whose TTL etcd grants the same, most recent first", () => {
    const pool = new LeasePool();
    pool.put({ id: 1n, grantedTtl: 10, since: T0 });
    pool.put({ id: 2n, grantedTtl: 10, since: T0 });
    pool.put({ id: 3n, grantedTtl: 20, since: T0 });
    expect(pool.take(30, T0)).toBeUndefined();
    expect(pool.take(10, T0)?.id).toBe(2n);
    expect(pool.take(10, T0)?.id).toBe(1n);
    expect(pool.take(10, T0)).toBeUndefined();
    expect(pool.take(20, T0)?.id).toBe(3n);
  });

  it("maps a requested TTL to the one etcd granted for it", () => {
    const pool = new LeasePool();
    pool.put({ id: 1n, grantedTtl: 2, since: T0 });
    expect(pool.take(1, T0)).toBeUndefined();
    pool.granted(1, 2);
    expect(pool.take(1, T0)?.id).toBe(1n);
  });

  it("keeps a one-second margin: a lease with a second or less left is dropped, not handed out", () => {
    const pool = new LeasePool();
    pool.put({ id: 1n, grantedTtl: 10, since: T0 });
    expect(pool.take(10, T0 + 8_999)?.id).toBe(1n);
    pool.put({ id: 1n, grantedTtl: 10, since: T0 });
    expect(pool.take(10, T0 + 9_000)).toBeUndefined();
    expect(pool.size).toBe(0);
    // An older one behind a fresh one is still skipped over to the next.
    pool.put({ id: 2n, grantedTtl: 10, since: T0 + 5_000 });
    pool.put({ id: 3n, grantedTtl: 10, since: T0 });
    expect(pool.take(10, T0 + 9_500)?.id).toBe(2n);
  });

  it("sweeps leases idle past the window, returning only those that may still be alive", () => {
    const pool = new LeasePool(1024, 3_000);
    pool.put({ id: 1n, grantedTtl: 60, since: T0 }); // idle too long, alive: revoke
    pool.put({ id: 2n, grantedTtl: 2, since: T0 }); // idle too long, surely expired: drop
    pool.put({ id: 3n, grantedTtl: 60, since: T0 + 500 }); // idle exactly the window: keep
    pool.put({ id: 4n, grantedTtl: 3, since: T0 - 100 }); // expired at the sweep instant: drop
    expect(pool.sweep(T0 + 3_500).map((l) => l.id)).toEqual([1n]);
    expect(pool.size).toBe(1);
    expect(pool.take(60, T0 + 3_500)?.id).toBe(3n);
  });

  it("bounds each TTL's list, pushing out the oldest for the caller to revoke", () => {
    const pool = new LeasePool(2);
    expect(pool.put({ id: 1n, grantedTtl: 10, since: T0 })).toBeUndefined();
    expect(pool.put({ id: 2n, grantedTtl: 10, since: T0 })).toBeUndefined();
    expect(pool.put({ id: 3n, grantedTtl: 20, since: T0 })).toBeUndefined();
    expect(pool.put({ id: 4n, grantedTtl: 10, since: T0 })?.id).toBe(1n);
    expect(pool.size).toBe(3);
    expect(
      pool
        .drain()
        .map((l) => l.id)
        .sort(),
    ).toEqual([2n, 3n, 4n]);
    expect(pool.size).toBe(0);
  });
});

describe("the lease pool in the line engine (fake etcd)", () => {
  it("a released lease serves the next acquire with its TTL: a keep-alive instead of a grant", async () => {
    const { fake, locks } = fakeLines();
    const a = await locks.acquire("a", { ttl: 10, wait: 0 });
    await locks.release("a", a.grant.lease);
    fake.resetCalls();
    const b = await locks.acquire("b", { ttl: 10, wait: 0 });
    expect(leaseOf(b.grant.lease)).toBe(leaseOf(a.grant.lease));
    expect(fake.count("leaseGrant")).toBe(0);
    expect(fake.argsOf("leaseKeepAliveOnce")).toEqual([[leaseOf(a.grant.lease)]]);
    // Another TTL needs its own lease.
    const c = await locks.acquire("c", { ttl: 20, wait: 0 });
    expect(fake.count("leaseGrant")).toBe(1);
    expect(fake.lease(leaseOf(c.grant.lease))?.grantedTtl).toBe(20);
  });

  it("a TTL etcd raised is pooled under what it granted and found again by what was asked", async () => {
    const { fake, locks } = fakeLines();
    const a = await locks.acquire("a", { ttl: 1, wait: 0 });
    expect(a.grant.ttl).toBe(2);
    await locks.release("a", a.grant.lease);
    const b = await locks.acquire("b", { ttl: 1, wait: 0 });
    expect(leaseOf(b.grant.lease)).toBe(leaseOf(a.grant.lease));
    expect(fake.count("leaseGrant")).toBe(1);
  });

  it("a pooled lease with a second or less to live is passed over for a fresh one", async () => {
    const { fake, locks } = fakeLines();
    const a = await locks.acquire("a", { ttl: 2, wait: 0 });
    await locks.release("a", a.grant.lease);
    fake.advance(999);
    const b = await locks.acquire("b", { ttl: 2, wait: 0 });
    expect(leaseOf(b.grant.lease)).toBe(leaseOf(a.grant.lease));
    await locks.release("b", b.grant.lease);
    fake.advance(1_000);
    fake.resetCalls();
    const c = await locks.acquire("c", { ttl: 2, wait: 0 });
    expect(leaseOf(c.grant.lease)).not.toBe(leaseOf(a.grant.lease));
    expect(fake.count("leaseGrant")).toBe(1);
    expect(fake.count("leaseKeepAliveOnce")).toBe(0);
  });

  it("the idle sweep revokes a pooled lease nobody reused, and only after the window", async () => {
    const { fake, lines, locks } = fakeLines();
    const a = await locks.acquire("a", { ttl: 60, wait: 0 });
    await locks.release("a", a.grant.lease);
    const id = leaseOf(a.grant.lease);
    fake.advance(3_000);
    lines.sweepLeases();
    expect(fake.count("leaseRevoke")).toBe(0);
    // Sweeps run at most every 250 ms.
    fake.advance(249);
    lines.sweepLeases();
    expect(fake.count("leaseRevoke")).toBe(0);
    fake.advance(1);
    lines.sweepLeases();
    expect(fake.argsOf("leaseRevoke")).toEqual([[id]]);
    await settled();
    expect(fake.lease(id)).toBeUndefined();
  });

  it("close revokes every pooled lease", async () => {
    const { fake, locks } = fakeLines();
    const grants = await Promise.all(["a", "b"].map((n) => locks.acquire(n, { ttl: 30, wait: 0 })));
    await Promise.all(grants.map(({ grant }) => locks.release(grant.name, grant.lease)));
    await locks.close();
    for (const { grant } of grants) expect(fake.lease(leaseOf(grant.lease))).toBeUndefined();
  });
});
