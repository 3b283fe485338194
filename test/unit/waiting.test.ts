import { describe, expect, it, onTestFinished, vi } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { CallerGone, LockHeld, LockLost } from "../../src/lock/index.js";
import { decodeParticipant } from "../../src/lock/participant.js";
import type { Acquired, AcquireOptions, Ticket } from "../../src/lock/types.js";
import type { FakeEtcd } from "../support/fake-etcd.js";
import { grantOf, type TestLocks } from "../support/locks.js";
import {
  fakeLines,
  keyOf,
  leaseOf,
  lineIn,
  lockLine,
  rejection,
  settled,
  turnsUntil,
  untilWaiting,
} from "./support.js";

/**
 * The engine's waiting paths on a fake etcd: how a waiter leaves the line, what becomes
 * of a conversion (waiter → holder) whose outcome is unknown, and attempts of one
 * participant (idempotent retries, a ticket redeemed twice) waiting for the same place.
 */

const modes = [
  { worker: false, how: "Node strategies" },
  { worker: true, how: "Worker strategies" },
];

function ticketOf(a: Acquired): Ticket {
  if (!("ticket" in a)) throw new Error("expected a ticket, got a grant");
  return a.ticket;
}

/** The participant keys that wait (not holding) in line `name`. */
const waitersIn = (fake: FakeEtcd, name: string) =>
  lineIn(fake, name).filter((kv) => decodeParticipant(kv.value).h !== 1);

/**
 * A lock "n" held, and a waiter in line behind it whose conversion, once `release()`
 * gives it its turn, is applied by etcd but answered with an error (outcome unknown).
 * The holder is another instance's, so the waiter takes its turn itself (a release on
 * its own instance would hand it over: see handoff.test.ts).
 */
async function lostConversion(fake: FakeEtcd, locks: TestLocks, o: Partial<AcquireOptions> = {}) {
  const other = fakeLines({}, fake).locks;
  const holder = await other.acquire("n", { ttl: 30, wait: 0 });
  const waiter = rejection(locks.acquire("n", { ttl: 30, wait: 60, ...o }));
  await untilWaiting(fake, "n", 1);
  const key = waitersIn(fake, "n")[0]?.key;
  const converting = fake.nextCall("guardedWrite");
  fake.failNext("guardedWrite", { applied: true });
  return {
    key,
    waiter,
    /** Releases the holder; resolves with the conversion's put of the key once it is sent. */
    async release() {
      await other.release("n", holder.grant.lease);
      const put = (await converting)[0].put?.[0];
      if (!put) throw new Error("the conversion put nothing");
      return put;
    },
  };
}

describe.each(modes)("waiting in line on a fake etcd: $how", ({ worker }) => {
  it("a waiter whose wait runs out deletes its key guarded by the revision it joined at, and says its position", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = fakeLines({ worker });
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const first = locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    const second = rejection(locks.acquire("n", { ttl: 30, wait: 5 }));
    await untilWaiting(fake, "n", 2);
    const mine = waitersIn(fake, "n")[1];
    fake.resetCalls();
    // Only the wait's timer runs out: etcd's clock stays, so the queue lease stays alive.
    await vi.advanceTimersByTimeAsync(5_000);
    const refused = await second;
    expect(refused).toBeInstanceOf(LockHeld);
    expect(refused).toMatchObject({ position: 1, holder: { token: holder.grant.token } });
    expect(fake.argsOf("deleteAllIfUnchanged")).toEqual([[[{ key: mine?.key, modRevision: mine?.createRevision }]]]);
    expect(waitersIn(fake, "n")).toHaveLength(1);
    expect(locks.activeWaiters).toBe(1);
    await locks.release("n", holder.grant.lease);
    expect((await first).grant.token).toBeGreaterThan(holder.grant.token);
  });

  it("a waiter whose wait runs out while etcd fails the reads of its refusal still leaves the line", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = fakeLines({ worker });
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const waiter = rejection(locks.acquire("n", { ttl: 30, wait: 5 }));
    await untilWaiting(fake, "n", 1);
    // The position and the holder are read when the wait runs out: both reads fail.
    fake.failNext("scan");
    fake.failNext("scan");
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await waiter).toBeInstanceOf(EtcdUnavailableError);
    // Its place is gone: left there, the session lease (kept alive for every waiter of
    // the instance) would keep a place nobody waits on at the head of the line.
    expect(waitersIn(fake, "n")).toHaveLength(0);
    expect(locks.activeWaiters).toBe(0);
    await locks.release("n", holder.grant.lease);
  });

  it("a waiter whose caller hangs up leaves the line the same way", async () => {
    const { fake, locks } = fakeLines({ worker });
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const gone = new AbortController();
    const waiter = rejection(locks.acquire("n", { ttl: 30, wait: 60, signal: gone.signal }));
    await untilWaiting(fake, "n", 1);
    const mine = waitersIn(fake, "n")[0];
    fake.resetCalls();
    gone.abort();
    expect(await waiter).toBeInstanceOf(CallerGone);
    expect(fake.argsOf("deleteAllIfUnchanged")).toEqual([[[{ key: mine?.key, modRevision: mine?.createRevision }]]]);
    expect(lineIn(fake, "n").map((kv) => kv.createRevision)).toEqual([holder.grant.token]);
    expect(locks.activeWaiters).toBe(0);
  });

  it("a conversion whose outcome is unknown, without an Idempotency-Key, revokes the grant's lease: nobody holds the key", async () => {
    const { fake, locks } = fakeLines({ worker });
    const { waiter, release } = await lostConversion(fake, locks);
    const put = await release();
    expect(await waiter).toBeInstanceOf(EtcdUnavailableError);
    await settled();
    // The put applied: the key held on the grant's lease, which is revoked with it.
    expect(fake.argsOf("leaseRevoke")).toContainEqual([put.lease]);
    expect(fake.lease(put.lease)).toBeUndefined();
    expect(lineIn(fake, "n")).toEqual([]);
    expect((await locks.acquire("n", { ttl: 30, wait: 0 })).grant.name).toBe("n");
  });

  describe("with an Idempotency-Key", () => {
    const idem = { idempotencyKey: "k-1", caller: "api-key-a" };

    it("a conversion whose outcome is unknown is ended while unclaimed", async () => {
      const { fake, locks } = fakeLines({ worker });
      const { waiter, release } = await lostConversion(fake, locks, idem);
      const put = await release();
      expect(await waiter).toBeInstanceOf(EtcdUnavailableError);
      await turnsUntil(() => fake.lease(put.lease) === undefined, "the unclaimed grant's lease to be revoked");
      expect(lineIn(fake, "n")).toEqual([]);
    });

    it("a conversion whose outcome is unknown is left alone once a retry claimed it", async () => {
      const { fake, locks } = fakeLines({ worker });
      const { key, waiter, release } = await lostConversion(fake, locks, idem);
      // The clean-up reads the unclaimed grant, then lags behind the retry.
      const cleanUp = fake.pauseNext("get", { applied: true, match: (k) => k === key });
      const put = await release();
      expect(await waiter).toBeInstanceOf(EtcdUnavailableError);
      await cleanUp.reached;
      const retry = await locks.acquire("n", { ttl: 30, wait: 60, ...idem });
      expect(retry.replayed).toBe(true);
      expect(leaseOf(retry.grant.lease)).toBe(put.lease);
      cleanUp.release();
      await settled();
      await settled();
      expect(fake.argsOf("leaseRevoke")).not.toContainEqual([put.lease]);
      expect(lineIn(fake, "n").map((kv) => kv.key)).toEqual([key]);
      expect((await locks.renew("n", retry.grant.lease)).token).toBe(retry.grant.token);
      expect(await rejection(locks.acquire("n", { ttl: 30, wait: 0, caller: "api-key-b" }))).toBeInstanceOf(LockHeld);
    });

    it("a retry waiting beside its first attempt for one place: one conversion, the same grant to both", async () => {
      const { fake, locks } = fakeLines({ worker });
      const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
      const first = locks.acquire("n", { ttl: 30, wait: 60, ...idem });
      await untilWaiting(fake, "n", 1);
      const queueLease = waitersIn(fake, "n")[0]?.lease;
      const second = locks.acquire("n", { ttl: 30, wait: 60, ...idem });
      await turnsUntil(() => locks.activeWaiters === 2, "the retry to wait");
      await settled();
      fake.resetCalls();
      await locks.release("n", holder.grant.lease);
      const [a, b] = await Promise.all([first, second]);
      // The same grant: one handle, whose lease the key is bound to (not a second grant's).
      expect(a.grant).toEqual(b.grant);
      expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
      const kv = fake.peek(keyOf("n", a.grant.lease));
      expect(kv?.lease).toBe(leaseOf(a.grant.lease));
      expect((await locks.renew("n", b.grant.lease)).token).toBe(a.grant.token);
      expect(locks.activeWaiters).toBe(0);
      await settled();
      // Workers: the waiter's own queue lease went when its key left it (not kept alive forever).
      if (worker) expect(fake.lease(queueLease ?? 0n)).toBeUndefined();
    });
  });

  it("a ticket redeemed twice at once, both waiting: one conversion, the same grant to both", async () => {
    const { fake, lines } = fakeLines({ worker });
    const line = lockLine("n");
    const o = { ttl: 30, wait: 0, limit: 1, queue: true };
    const holder = grantOf(await lines.acquire(line, o));
    const { ticket } = ticketOf(await lines.acquire(line, o));
    const a = lines.redeem(line, ticket, { wait: 60 });
    const b = lines.redeem(line, ticket, { wait: 60 });
    await turnsUntil(() => lines.activeWaiters === 2, "both redeems to wait");
    await settled();
    await lines.release(line, holder.grant.lease);
    const [ga, gb] = (await Promise.all([a, b])).map(grantOf);
    expect(ga?.grant).toEqual(gb?.grant);
    const lease = leaseOf(ga?.grant.lease ?? "");
    expect(fake.peek(keyOf("n", ticket))?.lease).toBe(lease);
    expect((await lines.renew(line, ga?.grant.lease ?? "")).token).toBe(ga?.grant.token);
    // The ticket's own lease was only ever its key's: gone once the key holds.
    await settled();
    expect(fake.lease(leaseOf(ticket))).toBeUndefined();
  });

  it("a ticket's place that another redeem already converted is not ended as lost by a late one", async () => {
    const { lines } = fakeLines({ worker });
    const line = lockLine("n");
    const o = { ttl: 30, wait: 0, limit: 1, queue: true };
    const holder = grantOf(await lines.acquire(line, o));
    const { ticket } = ticketOf(await lines.acquire(line, o));
    await lines.release(line, holder.grant.lease);
    const first = grantOf(await lines.redeem(line, ticket, { wait: 0 }));
    const again = grantOf(await lines.redeem(line, ticket, { wait: 5 }));
    expect(again).toEqual({ grant: first.grant, replayed: true });
    await expect(lines.redeem(lockLine("other"), ticket, { wait: 0 })).rejects.toBeInstanceOf(LockLost);
  });
});

describe("waiting in line on a fake etcd: Worker strategies (a copy of the line per waiter)", () => {
  const idem = { idempotencyKey: "k-1", caller: "api-key-a" };

  it("a retry waiting for a place that left, re-reading after a compaction, never takes a new key of the same ID for it", async () => {
    const { fake, locks } = fakeLines({ worker: true });
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const gone = new AbortController();
    const first = rejection(locks.acquire("n", { ttl: 30, wait: 60, ...idem, signal: gone.signal }));
    await untilWaiting(fake, "n", 1);
    // The retry waits for the first attempt's place; its copy of the line is read, then lags.
    const read = fake.pauseNext("scan", { applied: true });
    const retry = locks.acquire("n", { ttl: 30, wait: 60, ...idem });
    await read.reached;
    // The first attempt leaves; a third one joins anew, with the same key ID, and is granted.
    gone.abort();
    expect(await first).toBeInstanceOf(CallerGone);
    const third = locks.acquire("n", { ttl: 30, wait: 60, ...idem });
    await untilWaiting(fake, "n", 1);
    await locks.release("n", holder.grant.lease);
    const granted = await third;
    // History the lagging copy needs is compacted: it reads the line again, finding the new key.
    fake.compact(fake.revision);
    read.release();
    const late = await retry;
    expect(late.grant).toEqual(granted.grant);
    expect((await locks.renew("n", late.grant.lease)).token).toBe(granted.grant.token);
  });
});

describe("waiting in line on a fake etcd: Node strategies (one queue lease for the instance)", () => {
  it("a waiter whose place went with an expired session lease joins again on a new one", async () => {
    // No keep-alive tick runs on its own: the session lease ends only when etcd's clock passes its TTL.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = fakeLines();
    const holder = await locks.acquire("n", { ttl: 60, wait: 0 });
    const waiter = locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    const session = waitersIn(fake, "n")[0]?.lease ?? 0n;
    // An etcd outage outlasts the queue lease's TTL: the waiter's key goes with the lease,
    // and the waiter learns it (from its copy of the line) before any keep-alive does.
    fake.advance(5_000);
    expect(fake.lease(session)).toBeUndefined();
    await untilWaiting(fake, "n", 1);
    const again = waitersIn(fake, "n")[0];
    expect(again?.lease).not.toBe(session);
    await locks.release("n", holder.grant.lease);
    expect((await waiter).grant.token).toBe(again?.createRevision);
  });
});

describe("a crowd arriving at once on a held lock (Node strategies)", () => {
  it("only the first acquire sends a blind join; the rest read the line while it is in flight and wait without a lease of their own", async () => {
    const { fake, locks } = fakeLines();
    const other = fakeLines({}, fake).locks;
    const holder = await other.acquire("n", { ttl: 30, wait: 0 });
    fake.resetCalls();
    const crowd = Array.from({ length: 20 }, () => locks.acquire("n", { ttl: 30, wait: 60 }));
    await untilWaiting(fake, "n", 20);
    // One lease for the first one's join, one for the waiters' session: not one per waiter.
    expect(fake.count("leaseGrant")).toBe(2);
    expect(fake.count("joinAll")).toBe(1);
    await other.release("n", holder.grant.lease);
    // Granted in join order, each released as soon as it is granted.
    await Promise.all(crowd.map(async (acquired) => locks.release("n", (await acquired).grant.lease)));
    expect(lineIn(fake, "n")).toEqual([]);
  });
});
