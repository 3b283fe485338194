import { describe, expect, it, onTestFinished, vi } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { LeasePerWaiter, QUEUE_LEASE_TTL, SessionLease } from "../../src/lock/strategies/queue-leases.js";
import { FakeEtcd } from "../support/fake-etcd.js";
import { settled } from "./support.js";

/**
 * The short leases waiters' places are bound to. Both clocks move together here: the
 * strategies' timers (vi's fake timers) and etcd's lease deadlines (the fake's clock).
 */
function clocks() {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
  onTestFinished(() => {
    vi.useRealTimers();
  });
  const fake = new FakeEtcd();
  return {
    fake,
    /** Moves both clocks on by `ms`, in steps of 250 ms. */
    async advance(ms: number) {
      for (let t = 0; t < ms; t += 250) {
        await vi.advanceTimersByTimeAsync(250);
        fake.advance(250);
      }
    },
  };
}

const keepAlivesOf = (fake: FakeEtcd, id: bigint) =>
  fake.argsOf("leaseKeepAliveOnce").filter(([lease]) => lease === id).length;

describe("SessionLease (Node: one queue lease for the instance)", () => {
  it("many waiters share one lease, granted once with the queue TTL", async () => {
    const { fake } = clocks();
    const session = new SessionLease(fake);
    const taken = await Promise.all([session.take(), session.take(), session.take()]);
    expect(new Set(taken.map((l) => l.id)).size).toBe(1);
    expect(fake.argsOf("leaseGrant")).toEqual([[taken[0]?.id, QUEUE_LEASE_TTL]]);
  });

  it("is kept alive by one keep-alive per interval however many wait", async () => {
    const { fake, advance } = clocks();
    const session = new SessionLease(fake);
    const taken = await Promise.all(Array.from({ length: 5 }, () => session.take()));
    const id = taken[0]?.id ?? 0n;
    await advance(12_000);
    expect(fake.lease(id)).toBeDefined();
    // A keep-alive every TTL / 4: about 10 in 12 s for the instance, not 10 per waiter.
    expect(fake.count("leaseKeepAliveOnce")).toBe(keepAlivesOf(fake, id));
    expect(keepAlivesOf(fake, id)).toBeLessThanOrEqual(12_000 / ((QUEUE_LEASE_TTL * 1000) / 4));
  });

  it("a waiter that forsakes it retires it: new waiters get a new lease, the old one takes a stray key with it", async () => {
    const { fake, advance } = clocks();
    const session = new SessionLease(fake);
    const [a, b] = await Promise.all([session.take(), session.take()]);
    const old = a?.id ?? 0n;
    // A's delete had an unknown outcome: its key may still be there.
    fake.put("line#stray", "{}", old);
    a?.forsake();
    const c = await session.take();
    expect(c.id).not.toBe(old);
    const before = keepAlivesOf(fake, old);
    await advance(QUEUE_LEASE_TTL * 1000 + 1_000);
    expect(keepAlivesOf(fake, old)).toBe(before);
    expect(fake.lease(old)).toBeUndefined();
    expect(fake.peek("line#stray")).toBeUndefined();
    // The new session is kept alive; the old one's last user leaving changes nothing.
    b?.done();
    expect(fake.lease(c.id)).toBeDefined();
  });

  it("idle: revoked a while after its last waiter is done; a waiter arriving before that keeps it", async () => {
    const { fake, advance } = clocks();
    const session = new SessionLease(fake, 2_000);
    const a = await session.take();
    a.done();
    await advance(1_750);
    const b = await session.take();
    expect(b.id).toBe(a.id);
    b.done();
    b.done(); // a second call is a no-op, not a second waiter leaving
    await advance(1_750);
    expect(fake.argsOf("leaseRevoke")).toEqual([]);
    await advance(500);
    expect(fake.argsOf("leaseRevoke")).toEqual([[a.id]]);
    expect(fake.lease(a.id)).toBeUndefined();
    const c = await session.take();
    expect(c.id).not.toBe(a.id);
  });

  it("a keep-alive that finds the lease gone retires it", async () => {
    const { fake, advance } = clocks();
    const session = new SessionLease(fake);
    const a = await session.take();
    await fake.leaseRevoke(a.id);
    await advance(QUEUE_LEASE_TTL * 250);
    const b = await session.take();
    expect(b.id).not.toBe(a.id);
  });

  it("a grant that fails fails its takers, and the next take grants anew", async () => {
    const { fake } = clocks();
    const session = new SessionLease(fake);
    fake.failNext("leaseGrant");
    await expect(session.take()).rejects.toBeInstanceOf(EtcdUnavailableError);
    const a = await session.take();
    expect(fake.lease(a.id)).toBeDefined();
    expect(fake.count("leaseGrant")).toBe(2);
  });

  it("close revokes the lease", async () => {
    const { fake } = clocks();
    const session = new SessionLease(fake);
    const a = await session.take();
    await session.close();
    expect(fake.lease(a.id)).toBeUndefined();
  });
});

describe("LeasePerWaiter (Workers: a queue lease per waiter)", () => {
  it("each waiter has its own lease, kept alive by its own keep-alives", async () => {
    const { fake, advance } = clocks();
    const leases = new LeasePerWaiter(fake);
    const [a, b] = await Promise.all([leases.take(), leases.take()]);
    expect(a?.id).not.toBe(b?.id);
    await advance(12_000);
    expect(fake.lease(a?.id ?? 0n)).toBeDefined();
    expect(fake.lease(b?.id ?? 0n)).toBeDefined();
    expect(keepAlivesOf(fake, a?.id ?? 0n)).toBeGreaterThan(0);
  });

  it("is revoked when its waiter is done or forsakes it, and no longer kept alive", async () => {
    const { fake, advance } = clocks();
    const leases = new LeasePerWaiter(fake);
    const [a, b] = await Promise.all([leases.take(), leases.take()]);
    fake.put("line#a", "{}", a?.id);
    a?.done();
    b?.forsake();
    await settled();
    for (const l of [a, b]) expect(fake.lease(l?.id ?? 0n)).toBeUndefined();
    expect(fake.peek("line#a")).toBeUndefined();
    const before = fake.count("leaseKeepAliveOnce");
    await advance(5_000);
    expect(fake.count("leaseKeepAliveOnce")).toBe(before);
  });
});
