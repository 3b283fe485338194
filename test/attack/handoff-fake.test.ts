import { afterAll, describe, expect, it, onTestFinished, vi } from "vitest";
import type { GuardedWrite } from "../../src/etcd/types.js";
import { createLines, LockLost, ShuttingDown } from "../../src/lock/index.js";
import { decodeParticipant } from "../../src/lock/participant.js";
import type { FeedBatch, Grant, LineRef } from "../../src/lock/types.js";
import type { FakeEtcd } from "../support/fake-etcd.js";
import { heldWatches } from "../support/lagging.js";
import { watchLineRules } from "../support/line-rules.js";
import { grantOf, locksOver, type TestLocks } from "../support/locks.js";
import {
  fakeLines,
  keyOf,
  leaseOf,
  lineIn,
  lockLine,
  PREFIX,
  rangeOf,
  rejection,
  settled,
  turnsUntil,
  untilWaiting,
} from "../unit/support.js";
import { prng } from "../verify/model-histories.js";

/**
 * Attacks on local handoff (a release that makes this instance's next waiter the holder
 * in its own txn) on FakeEtcd, where a lagging instance's copy of a line, the pool of
 * another instance and the leases' clocks can be set up exactly.
 */

/** A handoff txn: a guarded write that deletes a holder and puts its successor. */
const isHandoff = (w: GuardedWrite) => (w.delete?.length ?? 0) > 0 && (w.put?.length ?? 0) > 0;
/** The handoff txns sent. */
const handoffs = (fake: FakeEtcd) => fake.argsOf("guardedWrite").filter(([w]) => isHandoff(w));
const holdersIn = (fake: FakeEtcd, name: string) =>
  lineIn(fake, name).filter((kv) => decodeParticipant(kv.value).h === 1);

/** Another instance on `fake` whose copies of lines can be made to lag (see heldWatches). */
function laggingInstance(fake: FakeEtcd) {
  const watches = heldWatches(fake);
  const lines = createLines(watches.client, { prefix: PREFIX, maxWaiters: 100 });
  return { lines, locks: locksOver(lines), hold: watches.hold, flush: watches.flush };
}

describe("attacks on local handoff (FakeEtcd)", () => {
  it("a stale release never keeps alive the lease its grant had, now another grant's: that grant expires on time", async () => {
    // Instance B (no waiters) and instance A (its copies lag), on one etcd.
    const b = fakeLines();
    const { fake } = b;
    const a = laggingInstance(fake);
    // A grants H on "n"; a plain request waits behind it on A.
    const h = (await a.locks.acquire("n", { ttl: 30, wait: 0 })).grant;
    const lease = leaseOf(h.lease);
    const waiter = a.locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    a.hold();
    // H's release reaches B first (a client retrying a slow instance): B ends it and pools its lease.
    await b.locks.release("n", h.lease);
    // B's next grant of that TTL, on another lock, takes the pooled lease. (A grant with a
    // lock-delay would take a fresh one: see test/attack/stale-renew-lease.test.ts.)
    const x = (await b.locks.acquire("m", { ttl: 30, wait: 0 })).grant;
    expect(leaseOf(x.lease)).toBe(lease);
    const xExpires = fake.lease(lease)?.expiresAt ?? 0;
    fake.advance(3_000);
    // Now the first release reaches A: its grant is gone, whatever A's copy of "n" still shows.
    expect(await rejection(a.locks.release("n", h.lease))).toBeInstanceOf(LockLost);
    // Nothing A did touched X's lease: X's grant still ends when its TTL runs out unrenewed.
    expect(fake.lease(lease)?.expiresAt).toBe(xExpires);
    fake.advance(xExpires - fake.now());
    expect(lineIn(fake, "m")).toEqual([]);
    a.flush();
    await waiter.catch(() => {});
  });

  /** Lock "n" held on one instance, and a plain request of that instance waiting behind it. */
  async function heldWithWaiter(o: { shutdownSignal?: AbortSignal; holderSignal?: AbortSignal } = {}) {
    const f = fakeLines(o.shutdownSignal ? { shutdownSignal: o.shutdownSignal } : {});
    const holder = await f.locks.acquire("n", {
      ttl: 30,
      wait: 0,
      ...(o.holderSignal ? { signal: o.holderSignal } : {}),
    });
    const waiter = f.locks.acquire("n", { ttl: 30, wait: 60 });
    waiter.catch(() => {});
    await untilWaiting(f.fake, "n", 1);
    const place = lineIn(f.fake, "n")[1];
    if (!place) throw new Error("no waiter in line");
    return { ...f, holder: holder.grant, waiter, place, watch: await watchLineRules(f.fake, rangeOf("n"), 1) };
  }

  /**
   * After a race over one release: the released lease went to one grant at most (the next
   * grant of its TTL does not get the waiter's lease), and the lock never had two holders.
   */
  async function boundOnce(locks: TestLocks, grant: Grant, watch: Awaited<ReturnType<typeof watchLineRules>>) {
    const other = (await locks.acquire("p", { ttl: 30, wait: 0 })).grant;
    expect(leaseOf(other.lease)).not.toBe(leaseOf(grant.lease));
    await settled();
    expect(watch.most).toBe(1);
    expect(watch.broken).toEqual([]);
    watch.stop();
  }

  describe("one handle released twice at once on its instance", () => {
    it("the second release deletes while the handoff's txn is on its way: one 204, one LockLost, the lease bound once", async () => {
      const { fake, locks, holder, waiter, place, watch } = await heldWithWaiter();
      const txn = fake.pauseNext("guardedWrite", { match: isHandoff });
      const first = locks.release("n", holder.lease);
      await txn.reached;
      // The second finds no entry of its own (the first took it), reads the grant, and
      // finds the waiter claimed: a plain delete, which wins.
      await locks.release("n", holder.lease);
      txn.release();
      expect(await rejection(first)).toBeInstanceOf(LockLost);
      const { grant } = await waiter;
      expect(grant.token).toBe(place.createRevision);
      await boundOnce(locks, grant, watch);
    });

    it("the handoff applies first: the second release is LockLost, and the lease serves the waiter alone", async () => {
      const { fake, locks, holder, waiter, place, watch } = await heldWithWaiter();
      const txn = fake.pauseNext("guardedWrite", { match: isHandoff, applied: true });
      const first = locks.release("n", holder.lease);
      await txn.reached;
      expect(await rejection(locks.release("n", holder.lease))).toBeInstanceOf(LockLost);
      txn.release();
      await first;
      const { grant } = await waiter;
      expect(grant.token).toBe(place.createRevision);
      expect(leaseOf(grant.lease)).toBe(leaseOf(holder.lease));
      await boundOnce(locks, grant, watch);
    });
  });

  it("the handed lease ends right after the txn: the waiter joins again, and its instance still lets its session lease go once idle", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks, holder, waiter, place } = await heldWithWaiter();
    const session = place.lease;
    const reset = fake.pauseNext("leaseKeepAliveOnce", { match: (id) => id === leaseOf(holder.lease) });
    const released = locks.release("n", holder.lease);
    await reset.reached;
    await fake.leaseRevoke(leaseOf(holder.lease));
    reset.release();
    await released;
    const { grant } = await waiter;
    expect(grant.token).toBeGreaterThan(place.createRevision);
    await locks.release("n", grant.lease);
    // Nobody waits on this instance any more: its session lease is revoked once idle.
    expect(fake.lease(session)).toBeDefined();
    await vi.advanceTimersByTimeAsync(10_000);
    await turnsUntil(() => fake.lease(session) === undefined, "the idle session lease to be revoked");
  });

  describe("a copy of the line that lags behind etcd", () => {
    it("the local waiter it shows next left, and others joined since: the handoff is refused, and the turns go in join order", async () => {
      const b = fakeLines();
      const { fake } = b;
      const a = laggingInstance(fake);
      const rules = await watchLineRules(fake, rangeOf("n"), 1);
      const h = (await a.locks.acquire("n", { ttl: 30, wait: 0 })).grant;
      const first = a.locks.acquire("n", { ttl: 30, wait: 60 });
      await untilWaiting(fake, "n", 1);
      const early = lineIn(fake, "n")[1]?.key ?? "";
      a.hold();
      // Behind A's copy's back: a remote waiter joins, then a local one, and A's first
      // waiter's key goes (its queue lease ended, say).
      const remote = b.locks.acquire("n", { ttl: 30, wait: 60 });
      await untilWaiting(fake, "n", 2);
      const local = a.locks.acquire("n", { ttl: 30, wait: 60 });
      await untilWaiting(fake, "n", 3);
      fake.delete(early);
      const [r, l] = lineIn(fake, "n").slice(1);
      await a.locks.release("n", h.lease);
      // The handoff went to the waiter A's copy showed next, and etcd refused it.
      expect(handoffs(fake).map(([w]) => w.put?.[0]?.key)).toEqual([early]);
      const g1 = (await remote).grant;
      expect(g1.token).toBe(r?.createRevision);
      a.flush();
      await b.locks.release("n", g1.lease);
      const g2 = (await local).grant;
      expect(g2.token).toBe(l?.createRevision);
      // A's first waiter joined again, at the back.
      await a.locks.release("n", g2.lease);
      const g3 = (await first).grant;
      expect(g3.token).toBeGreaterThan(g2.token);
      await a.locks.release("n", g3.lease);
      await settled();
      expect(rules.broken).toEqual([]);
      rules.stop();
    });

    it("a semaphore whose permits changed hands through another instance: h1's release on A hands its permit to the first in line", async () => {
      const b = fakeLines();
      const { fake } = b;
      const a = laggingInstance(fake);
      const sem: LineRef = { kind: "semaphore", name: "s" };
      const rules = await watchLineRules(fake, rangeOf(sem.name, sem.kind), 2);
      const o = { ttl: 30, wait: 0, limit: 2 };
      const h1 = grantOf(await a.lines.acquire(sem, o)).grant;
      const h2 = grantOf(await a.lines.acquire(sem, o)).grant;
      const w1 = a.lines.acquire(sem, { ...o, wait: 60 });
      await untilWaiting(fake, "s", 1, "semaphore");
      a.hold();
      // Behind A's copy's back: h2 leaves through B (w1's turn, which A has not seen),
      // two of B's requests join, then one more of A's.
      await b.lines.release(sem, h2.lease);
      const r1 = b.lines.acquire(sem, { ...o, wait: 60 });
      await untilWaiting(fake, "s", 2, "semaphore");
      const r2 = b.lines.acquire(sem, { ...o, wait: 60 });
      await untilWaiting(fake, "s", 3, "semaphore");
      const w2 = a.lines.acquire(sem, { ...o, wait: 60 });
      await untilWaiting(fake, "s", 4, "semaphore");
      // A's copy shows h1 and h2 holding and w1 next: h1's permit goes to w1, and r1,
      // then first in line with a permit free, takes its own turn.
      await a.lines.release(sem, h1.lease);
      expect(handoffs(fake)).toHaveLength(1);
      const g1 = grantOf(await w1).grant;
      const g2 = grantOf(await r1).grant;
      a.flush();
      await a.lines.release(sem, g1.lease);
      const g3 = grantOf(await r2).grant;
      await b.lines.release(sem, g2.lease);
      const g4 = grantOf(await w2).grant;
      const tokens = [g1, g2, g3, g4].map((g) => g.token);
      expect(tokens).toEqual([...tokens].sort((x, y) => x - y));
      await Promise.all([b.lines.release(sem, g3.lease), a.lines.release(sem, g4.lease)]);
      await settled();
      expect(rules.broken).toEqual([]);
      rules.stop();
    });
  });

  describe("a force release of the same grant", () => {
    it("lands while the handoff's txn is on its way: the release is LockLost, the forced lease is never bound again, the waiter takes its own turn", async () => {
      const { fake, locks, holder, waiter, place } = await heldWithWaiter();
      const txn = fake.pauseNext("guardedWrite", { match: isHandoff });
      const released = locks.release("n", holder.lease);
      await txn.reached;
      await locks.forceRelease("n");
      expect(fake.lease(leaseOf(holder.lease))).toBeUndefined();
      txn.release();
      expect(await rejection(released)).toBeInstanceOf(LockLost);
      const { grant } = await waiter;
      expect(grant.token).toBe(place.createRevision);
      expect(leaseOf(grant.lease)).not.toBe(leaseOf(holder.lease));
      expect(fake.lease(leaseOf(grant.lease))?.keys).toEqual(new Set([place.key]));
    });

    it("by the released grant's token, after the handoff applied: nothing to force, the waiter keeps its grant", async () => {
      const { fake, locks, lines, holder, waiter, place } = await heldWithWaiter();
      const txn = fake.pauseNext("guardedWrite", { match: isHandoff, applied: true });
      const released = locks.release("n", holder.lease);
      await txn.reached;
      expect(await lines.forceRelease(lockLine("n"), holder.token)).toBeUndefined();
      txn.release();
      await released;
      const { grant } = await waiter;
      expect(holdersIn(fake, "n").map((kv) => kv.createRevision)).toEqual([place.createRevision]);
      expect((await locks.renew("n", grant.lease)).token).toBe(place.createRevision);
    });
  });

  it("a renew racing the release: the released handle is LockLost once the waiter holds, and renews nothing of the waiter's", async () => {
    const { fake, locks, holder, waiter } = await heldWithWaiter();
    const txn = fake.pauseNext("guardedWrite", { match: isHandoff, applied: true });
    const released = locks.release("n", holder.lease);
    await txn.reached;
    expect(await rejection(locks.renew("n", holder.lease))).toBeInstanceOf(LockLost);
    txn.release();
    await released;
    const { grant } = await waiter;
    expect(await rejection(locks.renew("n", holder.lease))).toBeInstanceOf(LockLost);
    expect((await locks.renew("n", grant.lease)).token).toBe(grant.token);
  });

  it("the holder's caller hung up before its answer: its grant is handed to the waiter here, and nobody holds it for nobody", async () => {
    const gone = new AbortController();
    const { fake, holder, waiter, place } = await heldWithWaiter({ holderSignal: gone.signal });
    gone.abort();
    const { grant } = await waiter;
    expect(grant.token).toBe(place.createRevision);
    expect(handoffs(fake)).toHaveLength(1);
    expect(lineIn(fake, "n").map((kv) => kv.key)).toEqual([place.key]);
    expect(fake.peek(keyOf("n", holder.lease))).toBeUndefined();
  });

  it("the instance shuts down while a handoff's txn that applies is on its way: the waiter is answered with the grant it holds", async () => {
    const shutdown = new AbortController();
    const { fake, locks, holder, waiter, place } = await heldWithWaiter({ shutdownSignal: shutdown.signal });
    const other = locks.acquire("n", { ttl: 30, wait: 60 });
    other.catch(() => {});
    await untilWaiting(fake, "n", 2);
    const txn = fake.pauseNext("guardedWrite", { match: isHandoff });
    const released = locks.release("n", holder.lease);
    await txn.reached;
    shutdown.abort();
    await settled();
    txn.release();
    await released;
    const { grant } = await waiter;
    expect(grant.token).toBe(place.createRevision);
    // The other waiter is let go, and leaves the line.
    expect(await rejection(other)).toBeInstanceOf(ShuttingDown);
    expect(lineIn(fake, "n").map((kv) => kv.createRevision)).toEqual([place.createRevision]);
    expect(locks.activeWaiters).toBe(0);
  });

  it("the events feed shows the released grant free before the waiter's held, in one revision", async () => {
    const { fake, lines, locks, holder, waiter, place } = await heldWithWaiter();
    const stop = new AbortController();
    const feed = await lines.openFeed({ kinds: ["lock"], prefix: "", within: [""], signal: stop.signal });
    const batches: FeedBatch[] = [];
    const ended = feed.run((b) => batches.push(b));
    await locks.release("n", holder.lease);
    await waiter;
    await turnsUntil(() => batches.length > 0, "the handoff's events");
    expect(batches).toEqual([
      {
        revision: fake.revision,
        events: [
          { event: "free", kind: "lock", name: "n", token: holder.token },
          { event: "held", kind: "lock", name: "n", token: place.createRevision, ttl: 30 },
        ],
      },
    ]);
    stop.abort();
    await ended;
  });
});

describe("a waiter whose join raced the line changing hands to holders of another limit (FakeEtcd)", () => {
  it.each([
    { where: "the waiter's instance", handedOver: 1 },
    { where: "another instance", handedOver: 0 },
  ])("waits them out, never holding beside them; C released on $where", async ({ handedOver }) => {
    const a = fakeLines();
    const { fake } = a;
    const b = fakeLines({}, fake);
    const sem: LineRef = { kind: "semaphore", name: "s" };
    const o = { ttl: 30, wait: 0, limit: 2 };
    const h1 = grantOf(await a.lines.acquire(sem, o)).grant;
    const h2 = grantOf(await a.lines.acquire(sem, o)).grant;
    // W read the line (full, of limit 2) and is about to join it, waiting.
    const join = fake.pauseNext("createAllIfAbsent");
    let granted = false;
    const w = a.lines.acquire(sem, { ...o, wait: 60 }).then((r) => {
      granted = true;
      return grantOf(r).grant;
    });
    await join.reached;
    // Meanwhile the line empties and C takes it alone, as a semaphore of 1.
    await a.lines.release(sem, h1.lease);
    await a.lines.release(sem, h2.lease);
    const releaser = handedOver ? a : b;
    const c = grantOf(await releaser.lines.acquire(sem, { ...o, limit: 1 })).grant;
    join.release();
    await untilWaiting(fake, "s", 1, "semaphore");
    for (let i = 0; i < 20; i++) await settled();
    // C was granted as the only holder: W does not join it.
    expect(granted).toBe(false);
    expect(lineIn(fake, "s", "semaphore").filter((kv) => decodeParticipant(kv.value).h === 1)).toHaveLength(1);
    await releaser.lines.release(sem, c.lease);
    const grant = await w;
    expect(grant.limit).toBe(2);
    expect(grant.token).toBeGreaterThan(c.token);
    expect(handoffs(fake)).toHaveLength(handedOver);
  });
});

describe("random runs across three instances whose copies lag (FakeEtcd)", () => {
  let [ran, handedOver] = [0, 0];
  afterAll(() => {
    // The runs exercised the mechanism they attack.
    if (ran > 0) expect(handedOver).toBeGreaterThan(10);
  });

  const runs = [1, 2, 3, 4, 5, 6].flatMap((seed) => [1, 2, 3].map((limit) => ({ seed, limit })));
  it.each(runs)(
    "seed $seed, limit $limit: the line's rules hold at every revision, every grant received is released, none is left held",
    async ({ seed, limit }) => {
      const { fake } = fakeLines();
      const instances = [laggingInstance(fake), laggingInstance(fake), laggingInstance(fake)];
      const line: LineRef = limit === 1 ? lockLine("r") : { kind: "semaphore", name: "r" };
      const rules = await watchLineRules(fake, rangeOf(line.name, line.kind), limit);
      const random = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
      const turns = async (most: number) => {
        for (let n = Math.floor(random() * most); n > 0; n--) await settled();
      };
      // Instances fall behind on their watches and catch up, at random.
      let running = true;
      const chaos = (async () => {
        while (running) {
          const i = pick(instances);
          if (random() < 0.5) i.hold();
          else i.flush();
          await settled();
        }
        for (const i of instances) i.flush();
      })();
      const failures: unknown[] = [];
      const client = async () => {
        for (let round = 0; round < 5; round++) {
          const here = pick(instances);
          // Some callers hang up: while waiting, or once granted (their answer never sent).
          const gone = random() < 0.15 ? new AbortController() : undefined;
          const acquired = here.lines.acquire(line, {
            ttl: random() < 0.8 ? 30 : 20,
            wait: 60,
            limit,
            ...(gone ? { signal: gone.signal } : {}),
          });
          if (gone) {
            await turns(20);
            gone.abort();
            await acquired.catch(() => {});
            continue;
          }
          const { grant } = grantOf(await acquired);
          await turns(6);
          // Mostly released where it was granted (no read), else through another instance.
          const there = random() < 0.7 ? here : pick(instances);
          await there.lines.release(line, grant.lease).catch((err: unknown) => failures.push(err));
        }
      };
      await Promise.all(Array.from({ length: 6 }, client));
      running = false;
      await chaos;
      await turnsUntil(() => lineIn(fake, "r", line.kind).length === 0, "the line to empty");
      rules.stop();
      expect(failures).toEqual([]);
      expect(rules.broken).toEqual([]);
      expect(instances.map((i) => i.lines.activeWaiters)).toEqual([0, 0, 0]);
      handedOver += handoffs(fake).length;
      ran++;
    },
  );
});
