import { describe, expect, it } from "vitest";
import { fakeLines, leaseOf } from "../unit/support.js";

/**
 * A renew reads the holder's key, then sends a keep-alive of its lease: etcd has no
 * keep-alive conditional on a key. When the grant is released in between and its lease is
 * pooled and taken by the next grant, the stale renew's keep-alive resets that next
 * grant's lease. For most grants that only means outliving their TTL by that stall; a
 * grant with a lock-delay would outlive its marker, and its expiry would then free the
 * name at once instead of after the delay. So a grant with a lock-delay never takes a
 * pooled lease.
 */
describe("a stale renew's keep-alive on a pooled lease", () => {
  it("never reaches a lock-delay grant: it takes a fresh lease, whose countdown nobody else resets", async () => {
    const { fake, locks } = fakeLines({ worker: false });
    const other = fakeLines({ worker: false }, fake).locks;
    const h = (await locks.acquire("n", { ttl: 30, wait: 0 })).grant;
    // A renew through another instance has read h's key; its keep-alive is held back.
    const keepAlive = fake.pauseNext("leaseKeepAliveOnce", { match: (id) => id === leaseOf(h.lease) });
    const renew = other.renew("n", h.lease).catch((err: unknown) => err);
    await keepAlive.reached;
    // h is released (its lease pooled); x asks for a lock-delay.
    await locks.release("n", h.lease);
    fake.advance(1_000);
    const x = (await locks.acquire("n", { ttl: 30, wait: 0, lockDelay: 5 })).grant;
    expect(leaseOf(x.lease)).not.toBe(leaseOf(h.lease));
    const xExpires = fake.lease(leaseOf(x.lease))?.expiresAt;
    keepAlive.release();
    await renew;
    // x's lease still ends when x's own countdown says, inside its marker's.
    expect(fake.lease(leaseOf(x.lease))?.expiresAt).toBe(xExpires);
  });

  it("a grant without a lock-delay still reuses the pooled lease (the pool saves two raft writes a cycle)", async () => {
    const { fake, locks } = fakeLines({ worker: false });
    const h = (await locks.acquire("n", { ttl: 30, wait: 0 })).grant;
    await locks.release("n", h.lease);
    fake.resetCalls();
    const x = (await locks.acquire("n", { ttl: 30, wait: 0 })).grant;
    expect(leaseOf(x.lease)).toBe(leaseOf(h.lease));
    expect(fake.count("leaseGrant")).toBe(0);
  });
});
