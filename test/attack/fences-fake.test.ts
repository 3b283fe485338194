import { describe, expect, it, onTestFinished, vi } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { CallerGone, LockHeld, LockLost } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import { decodeParticipant } from "../../src/lock/participant.js";
import type { FakeEtcd } from "../support/fake-etcd.js";
import {
  fakeLines,
  keyOf,
  leaseOf,
  lineIn,
  lockLine,
  PREFIX,
  rejection,
  settled,
  turnsUntil,
} from "../unit/support.js";

const keys = new LineKeys(PREFIX);
const markerKey = (name: string) => keys.delayMarker(lockLine(name));

/** The lease of the last lock-delay marker made (granted with the grant's TTL plus the delay). */
function markerLeaseGranted(fake: FakeEtcd): bigint {
  const grants = fake.argsOf("leaseGrant").filter(([, ttl]) => ttl > 30);
  const last = grants.at(-1);
  if (!last) throw new Error("no marker lease was granted");
  return last[0];
}

/**
 * Lock-delay under faults a real etcd cannot be made to produce on cue (one of two calls
 * failing, a lease's countdown at a chosen moment): on FakeEtcd, its clock moved by hand.
 */
describe.each([
  { worker: false, how: "Node strategies" },
  { worker: true, how: "Worker strategies" },
])("lock-delay under faults: $how", ({ worker }) => {
  it("a marker a new etcd leader restarted at its full TTL after its grant ended keeps the lock back for the delay only", async () => {
    const { fake, locks } = fakeLines({ worker });
    await locks.acquire("l", { ttl: 10, wait: 0, lockDelay: 5 });
    const marker = fake.peek(markerKey("l"))?.lease ?? 0n;
    fake.advance(10_500);
    expect(await locks.inspect("l")).toBeUndefined();
    // What a new leader does to every lease: its countdown starts again from its full TTL (15 s).
    expect(await fake.leaseKeepAliveOnce(marker)).toBe(15);
    const refused = await rejection(locks.acquire("l", { ttl: 10, wait: 0 }));
    expect(refused).toBeInstanceOf(LockHeld);
    expect((refused as LockHeld).reason).toBe("lock-delay");
    expect((refused as LockHeld).retryAfter).toBeLessThanOrEqual(5);
    // The marker moved to a lease of just the delay; the restarted one is gone.
    await turnsUntil(() => fake.lease(marker) === undefined, "the restarted marker lease revoked");
    fake.advance(5_500);
    expect((await locks.acquire("l", { ttl: 10, wait: 0 })).grant.name).toBe("l");
  });

  it("a renew whose marker keep-alive fails does not extend the grant past its marker", async () => {
    const { fake, locks } = fakeLines({ worker });
    const { grant } = await locks.acquire("r", { ttl: 10, wait: 0, lockDelay: 5 });
    const marker = fake.peek(markerKey("r"))?.lease;
    expect(marker).toBeDefined();
    fake.advance(8_000);
    fake.failNext("leaseKeepAliveOnce", { match: (id) => id === marker });
    expect(await rejection(locks.renew("r", grant.lease))).toBeInstanceOf(EtcdUnavailableError);
    // Whatever the renew did, the marker is still the delay ahead of the grant...
    const held = fake.lease(leaseOf(grant.lease));
    const kept = fake.lease(marker ?? 0n);
    expect(held && kept && kept.expiresAt - held.expiresAt).toBeGreaterThanOrEqual(5_000);
    // ...so once the grant has expired, the lock is kept back.
    fake.advance((held?.expiresAt ?? 0) - fake.now());
    expect(await locks.inspect("r")).toBeUndefined();
    const refused = await rejection(locks.acquire("r", { ttl: 10, wait: 0 }));
    expect(refused).toBeInstanceOf(LockHeld);
    expect((refused as LockHeld).reason).toBe("lock-delay");
  });

  it("a renew that keeps the marker alive as its grant expires leaves the lock kept back for the delay, not ttl + delay", async () => {
    const { fake, locks } = fakeLines({ worker });
    const { grant } = await locks.acquire("e", { ttl: 10, wait: 0, lockDelay: 5 });
    const marker = fake.peek(markerKey("e"))?.lease;
    // The renew read the grant; it expires before the keep-alives go out.
    const keeping = fake.pauseNext("leaseKeepAliveOnce", { match: (id) => id === marker });
    const renewing = rejection(locks.renew("e", grant.lease));
    await keeping.reached;
    fake.advance(10_000);
    keeping.release();
    expect(await renewing).toBeInstanceOf(LockLost);
    await settled();
    const kept = fake.peek(markerKey("e"));
    const lease = fake.lease(kept?.lease ?? 0n);
    expect(lease && lease.expiresAt - fake.now()).toBeLessThanOrEqual(5_000);
    expect(lease && lease.expiresAt - fake.now()).toBeGreaterThanOrEqual(4_000);
    // The lease the grant made for its marker is bound to nothing now.
    expect(fake.lease(marker ?? 0n)).toBeUndefined();
    expect(((await rejection(locks.acquire("e", { ttl: 10, wait: 0 }))) as LockHeld).reason).toBe("lock-delay");
    fake.advance(5_000);
    await locks.acquire("e", { ttl: 10, wait: 0 });
  });

  it("a join of unknown outcome is cleaned up with its marker: the lock is free at once, no marker lease is left", async () => {
    for (const idempotencyKey of [undefined, "k"]) {
      const { fake, locks } = fakeLines({ worker });
      fake.failNext("joinAll", { applied: true });
      const o = { ttl: 10, wait: 0, lockDelay: 30, ...(idempotencyKey ? { idempotencyKey } : {}) };
      expect(await rejection(locks.acquire("u", o))).toBeInstanceOf(EtcdUnavailableError);
      const marker = markerLeaseGranted(fake);
      await turnsUntil(() => fake.lease(marker) === undefined, "the marker's lease revoked");
      expect(fake.peek(markerKey("u"))).toBeUndefined();
      await locks.acquire("u", { ttl: 10, wait: 0 });
    }
  });

  it("an answer nobody received ends its grant with its marker: free at once, the marker lease revoked", async () => {
    const { fake, locks } = fakeLines({ worker });
    const gone = new AbortController();
    const joining = fake.pauseNext("joinAll", { applied: true });
    const acquiring = rejection(locks.acquire("a", { ttl: 10, wait: 0, lockDelay: 30, signal: gone.signal }));
    await joining.reached;
    gone.abort();
    joining.release();
    expect(await acquiring).toBeInstanceOf(CallerGone);
    const marker = markerLeaseGranted(fake);
    await turnsUntil(() => fake.lease(marker) === undefined && !fake.peek(markerKey("a")), "the marker gone");
    await locks.acquire("a", { ttl: 10, wait: 0 });
  });

  it("a waiter whose turn comes in the delay keeps its place, and leaves the line when its caller hangs up", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = fakeLines({ worker });
    await locks.acquire("w", { ttl: 10, wait: 0, lockDelay: 20 });
    fake.advance(10_000);
    expect(await locks.inspect("w")).toBeUndefined();
    const gone = new AbortController();
    const waiter = rejection(locks.acquire("w", { ttl: 10, wait: 60, signal: gone.signal }));
    // Its turn came (first in line) and was kept back by the marker: it waits the marker out.
    await turnsUntil(() => fake.count("leaseTimeToLive") > 0, "the waiter to wait out the marker");
    expect(lineIn(fake, "w")).toHaveLength(1);
    gone.abort();
    expect(await waiter).toBeInstanceOf(CallerGone);
    expect(lineIn(fake, "w")).toEqual([]);
    // Nobody was granted it meanwhile; the delay still runs.
    const refused = await rejection(locks.acquire("w", { ttl: 10, wait: 0 }));
    expect((refused as LockHeld).reason).toBe("lock-delay");
    fake.advance(20_000);
    await locks.acquire("w", { ttl: 10, wait: 0 });
  });

  it("a turn refused by a marker that is gone by the time it is read is taken again at once", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = fakeLines({ worker });
    await locks.acquire("g", { ttl: 10, wait: 0, lockDelay: 3 });
    fake.advance(10_000);
    // The waiter's turn txn fails on the marker; the marker's lease runs out before the
    // waiter reads what kept it back.
    const reading = fake.pauseNext("get", { match: (key) => key === markerKey("g") });
    let granted = false;
    const waiter = locks.acquire("g", { ttl: 10, wait: 60 }).then((g) => {
      granted = true;
      return g;
    });
    await reading.reached;
    fake.advance(3_000);
    expect(fake.peek(markerKey("g"))).toBeUndefined();
    reading.release();
    // No timer moves: the waiter must not wait for a change of its line that never comes.
    await turnsUntil(() => granted, "the waiter granted");
    expect((await waiter).grant.token).toBeGreaterThan(0);
  });

  it("one batch of joins: the delayed line and the held one are refused each as it is, the free one is granted", async () => {
    const { fake, locks } = fakeLines({ worker });
    await locks.acquire("d", { ttl: 10, wait: 0, lockDelay: 30 });
    const held = await locks.acquire("h", { ttl: 60, wait: 0, lockDelay: 30 });
    fake.advance(10_000);
    fake.resetCalls();
    const [d, h, f] = await Promise.allSettled([
      locks.acquire("d", { ttl: 10, wait: 0 }),
      locks.acquire("h", { ttl: 10, wait: 0 }),
      locks.acquire("f", { ttl: 10, wait: 0, lockDelay: 5 }),
    ]);
    expect(d.status === "rejected" && (d.reason as LockHeld).reason).toBe("lock-delay");
    expect(h.status === "rejected" && (h.reason as LockHeld).holder?.token).toBe(held.grant.token);
    expect(f.status).toBe("fulfilled");
    if (!worker) expect(fake.argsOf("joinAll").some(([items]) => items.length === 3)).toBe(true);
    expect(fake.count("joinAll")).toBeLessThanOrEqual(worker ? 3 : 2);
  });

  it("a lockDelay acquire retried after its answer was lost: whatever the retry gets, its release frees the lock", async () => {
    const { fake, locks } = fakeLines({ worker });
    const o = { ttl: 10, wait: 0, lockDelay: 30, idempotencyKey: "lost" };
    fake.failNext("joinAll", { applied: true });
    expect(await rejection(locks.acquire("i", o))).toBeInstanceOf(EtcdUnavailableError);
    const again = await locks.acquire("i", o);
    const marker = fake.peek(markerKey("i"));
    const held = fake.peek(keyOf("i", again.grant.lease));
    expect(marker?.lease.toString(16)).toBe(decodeParticipant(held?.value ?? "").dl);
    await settled();
    expect(fake.peek(markerKey("i"))).toEqual(marker);
    await locks.release("i", again.grant.lease);
    await turnsUntil(() => fake.lease(marker?.lease ?? 0n) === undefined, "the marker's lease revoked");
    expect(fake.peek(markerKey("i"))).toBeUndefined();
    await locks.acquire("i", { ttl: 10, wait: 0 });
  });

  it("a ticket left after its grant (the redeem's answer lost) frees the lock at once", async () => {
    const { fake, lines, locks } = fakeLines({ worker });
    const line = lockLine("t");
    const first = await locks.acquire("t", { ttl: 10, wait: 0 });
    const taken = await lines.acquire(line, { ttl: 10, wait: 0, limit: 1, queue: true, ticketTtl: 30, lockDelay: 30 });
    if (!("ticket" in taken)) throw new Error("expected a ticket");
    await locks.release("t", first.grant.lease);
    const redeemed = await lines.redeem(line, taken.ticket.ticket, { wait: 5 });
    expect("grant" in redeemed).toBe(true);
    const marker = fake.peek(markerKey("t"));
    expect(marker).toBeDefined();
    await lines.leave(line, taken.ticket.ticket);
    await turnsUntil(() => fake.lease(marker?.lease ?? 0n) === undefined, "the marker's lease revoked");
    expect(fake.peek(markerKey("t"))).toBeUndefined();
    await locks.acquire("t", { ttl: 10, wait: 0 });
  });
});
