import { describe, expect, it, onTestFinished, vi } from "vitest";
import { EtcdUnavailableError, type GuardedWrite } from "../../src/etcd/types.js";
import { CallerGone, LockHeld, LockLost, ShuttingDown } from "../../src/lock/index.js";
import { decodeParticipant } from "../../src/lock/participant.js";
import { LocalWaiters, NoLocalHandoff } from "../../src/lock/strategies/local-handoff.js";
import type { Acquired, Grant, LineRef } from "../../src/lock/types.js";
import type { FakeEtcd } from "../support/fake-etcd.js";
import { grantOf } from "../support/locks.js";
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
 * Local handoff on a fake etcd: a release whose next participant is a plain waiter of
 * the same instance makes it the holder in the releasing txn. Who is next (from the
 * instance's copy of the line), the claim that takes a waiter out before the txn, and
 * every way the txn or the waiter can go wrong meanwhile.
 */

const waitersIn = (fake: FakeEtcd, name: string, kind: LineRef["kind"] = "lock") =>
  lineIn(fake, name, kind).filter((kv) => decodeParticipant(kv.value).h !== 1);
const holdersIn = (fake: FakeEtcd, name: string, kind: LineRef["kind"] = "lock") =>
  lineIn(fake, name, kind).filter((kv) => decodeParticipant(kv.value).h === 1);
/** The handoff txns sent: guarded writes that delete a holder and put its successor. */
const handoffs = (fake: FakeEtcd) =>
  fake.argsOf("guardedWrite").filter(([w]: [GuardedWrite]) => (w.delete?.length ?? 0) > 0 && (w.put?.length ?? 0) > 0);
/** The `index`-th waiter's key as it joined (oldest first). */
function joined(fake: FakeEtcd, name: string, index = 0, kind: LineRef["kind"] = "lock") {
  const kv = waitersIn(fake, name, kind)[index];
  if (!kv) throw new Error(`no waiter ${index} in line ${name}`);
  return kv;
}

describe("the registry of this instance's waiters", () => {
  /** A registry entry's wake: the reasons it was called with. */
  const waker = () => {
    const reasons: unknown[] = [];
    return { reasons, wake: (reason: unknown) => reasons.push(reason) };
  };

  it("a claim takes the waiter out at once and wakes it; leaving then waits for the outcome", async () => {
    const reg = new LocalWaiters<string, string>();
    const w = waker();
    const here = reg.enter("line", "k", "w", w.wake) ?? expect.unreachable();
    expect(reg.claim("line", "k", () => false)).toBeUndefined();
    expect(w.reasons).toEqual([]);
    const claim = reg.claim("line", "k", (x) => x === "w") ?? expect.unreachable();
    expect(claim.waiter).toBe("w");
    expect(w.reasons).toHaveLength(1);
    // Taken out: neither another release nor the same key entering again finds it twice.
    expect(reg.claim("line", "k", () => true)).toBeUndefined();
    const outcome = here.leave();
    expect(outcome).toBeInstanceOf(Promise);
    claim.settle("granted");
    expect(await outcome).toBe("granted");
  });

  it("every claim wakes its waiter with one shared reason (no new exception per handoff)", () => {
    const reg = new LocalWaiters<string, string>();
    const [a, b] = [waker(), waker()];
    reg.enter("line", "a", "w", a.wake);
    reg.enter("line", "b", "w", b.wake);
    reg.claim("line", "a", () => true);
    reg.claim("line", "b", () => true);
    expect(a.reasons[0]).toBeInstanceOf(DOMException);
    expect((a.reasons[0] as DOMException).name).toBe("AbortError");
    expect(b.reasons[0]).toBe(a.reasons[0]);
  });

  it("a waiter that left first cannot be claimed; one key waits once per line", () => {
    const reg = new LocalWaiters<string, string>();
    const w = waker();
    const here = reg.enter("line", "k", "w", w.wake) ?? expect.unreachable();
    expect(reg.enter("line", "k", "again", w.wake)).toBeUndefined();
    expect(reg.enter("other", "k", "elsewhere", w.wake)).toBeDefined();
    expect(here.leave()).toBeUndefined();
    expect(reg.claim("line", "k", () => true)).toBeUndefined();
    expect(w.reasons).toEqual([]);
  });

  it("Workers register nobody", () => {
    const none = new NoLocalHandoff<string, string>();
    expect(none.enter()).toBeUndefined();
    expect(none.claim()).toBeUndefined();
  });
});

describe("local handoff on a fake etcd (Node strategies)", () => {
  /** Lock "n" held on `locks`, and a waiter of the same instance in line behind it. */
  async function heldWithWaiter(o: { signal?: AbortSignal; wait?: number; ttl?: number } = {}) {
    const f = fakeLines();
    const holder = await f.locks.acquire("n", { ttl: 30, wait: 0 });
    const waiter = f.locks.acquire("n", {
      ttl: o.ttl ?? 30,
      wait: o.wait ?? 60,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    waiter.catch(() => {});
    await untilWaiting(f.fake, "n", 1);
    return { ...f, holder: holder.grant, waiter, place: joined(f.fake, "n") };
  }

  it("the release makes the waiter the holder in its own txn: one write, the waiter's token its join revision, the lease reused", async () => {
    const { fake, locks, holder, waiter, place } = await heldWithWaiter();
    fake.resetCalls();
    const before = fake.revision;
    await locks.release("n", holder.lease);
    expect(fake.revision).toBe(before + 1);
    const { grant } = await waiter;
    expect(grant.token).toBe(place.createRevision);
    expect(leaseOf(grant.lease)).toBe(leaseOf(holder.lease));
    expect(fake.peek(place.key)).toMatchObject({ createRevision: place.createRevision, lease: leaseOf(grant.lease) });
    // One txn and the lease's reset: no delete of its own, no turn the waiter took itself.
    expect(fake.calls.map((c) => c.method)).toEqual(["guardedWrite", "leaseKeepAliveOnce"]);
    expect(handoffs(fake)).toEqual([
      [
        {
          unchanged: [
            { key: keyOf("n", holder.lease), modRevision: holder.token },
            { key: place.key, modRevision: place.modRevision },
          ],
          created: [{ key: "t/delay/lock/n", createRevision: 0 }],
          delete: [keyOf("n", holder.lease)],
          put: [{ key: place.key, value: expect.any(String), lease: leaseOf(holder.lease) }],
        },
      ],
    ]);
    expect(fake.revision).toBe(before + 1);
    // The grant is this instance's own: released with one guarded delete.
    fake.resetCalls();
    await locks.release("n", grant.lease);
    expect(fake.calls.map((c) => c.method)).toEqual(["deleteAllIfUnchanged"]);
    expect(lineIn(fake, "n")).toEqual([]);
    expect(locks.activeWaiters).toBe(0);
  });

  it("releases of different lines in one turn hand over in one txn (group commit), each waiter with its own token", async () => {
    const f = fakeLines();
    const { fake, locks } = f;
    const names = ["n", "m", "o"];
    const holders = await Promise.all(names.map((n) => locks.acquire(n, { ttl: 30, wait: 0 })));
    const waiters = names.map((n) => locks.acquire(n, { ttl: 30, wait: 60 }));
    for (const n of names) await untilWaiting(fake, n, 1);
    const places = names.map((n) => joined(fake, n));
    fake.resetCalls();
    const before = fake.revision;
    await Promise.all(names.map((n, i) => locks.release(n, holders[i]?.grant.lease ?? "")));
    const grants = await Promise.all(waiters);
    // One raft write for the three handoffs, each guarded by its own holder's and waiter's revisions.
    expect(fake.revision).toBe(before + 1);
    expect(fake.count("guardedWrite")).toBe(0);
    const [writes] = fake.argsOf("guardedWriteAll")[0] ?? expect.unreachable();
    expect(writes.map((w: GuardedWrite) => w.unchanged)).toEqual(
      names.map((n, i) => [
        { key: keyOf(n, holders[i]?.grant.lease ?? ""), modRevision: holders[i]?.grant.token },
        { key: places[i]?.key, modRevision: places[i]?.modRevision },
      ]),
    );
    expect(grants.map((g) => g.grant.token)).toEqual(places.map((p) => p.createRevision));
    expect(names.map((n) => holdersIn(fake, n).map((kv) => kv.key))).toEqual(places.map((p) => [p.key]));
    // Each grant is remembered at the shared txn's revision: released without a read.
    fake.resetCalls();
    await Promise.all(names.map((n, i) => locks.release(n, grants[i]?.grant.lease ?? "")));
    expect(fake.calls.map((c) => c.method)).toEqual(["deleteAllIfUnchanged"]);
    expect(names.flatMap((n) => lineIn(fake, n))).toEqual([]);
  });

  it("a waiter asking another TTL gets a lease from the pool, and the released one goes to the pool", async () => {
    const { fake, locks, holder, waiter } = await heldWithWaiter({ ttl: 10 });
    await locks.release("n", holder.lease);
    const { grant } = await waiter;
    expect(grant.ttl).toBe(10);
    expect(leaseOf(grant.lease)).not.toBe(leaseOf(holder.lease));
    expect(fake.lease(leaseOf(grant.lease))?.grantedTtl).toBe(10);
    // The released lease is pooled: the next 30 s grant takes it.
    await locks.release("n", grant.lease);
    const next = await locks.acquire("other", { ttl: 30, wait: 0 });
    expect(leaseOf(next.grant.lease)).toBe(leaseOf(holder.lease));
  });

  it("a remote waiter ahead is served first: no handoff past it, and the local one waits its turn", async () => {
    const a = fakeLines();
    const b = fakeLines({}, a.fake);
    const { fake } = a;
    const holder = await a.locks.acquire("n", { ttl: 30, wait: 0 });
    const remote = b.locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    const local = a.locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 2);
    const [first, second] = [joined(fake, "n", 0), joined(fake, "n", 1)];
    let localDone = false;
    void local.then(() => {
      localDone = true;
    });
    await a.locks.release("n", holder.grant.lease);
    const r = await remote;
    expect(r.grant.token).toBe(first.createRevision);
    expect(handoffs(fake)).toEqual([]);
    await settled();
    expect(localDone).toBe(false);
    // B has no waiter of its own in line: its release is a plain delete, and A's waiter takes its turn.
    await b.locks.release("n", r.grant.lease);
    expect((await local).grant.token).toBe(second.createRevision);
    expect(handoffs(fake)).toEqual([]);
  });

  it("a waiter whose key went behind the copy's back is never put back as a holder (the guard on its revision)", async () => {
    // A's waiter joined first; B's waits behind it. A's waiter's key goes (its queue lease
    // ended) and A releases before its copy of the line has seen that.
    const a = fakeLines();
    const b = fakeLines({}, a.fake);
    const { fake } = a;
    const holder = await a.locks.acquire("n", { ttl: 30, wait: 0 });
    const local = a.locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    const remote = b.locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 2);
    const [gone, behind] = [joined(fake, "n", 0), joined(fake, "n", 1)];
    fake.delete(gone.key);
    const released = a.locks.release("n", holder.grant.lease);
    await released;
    // The handoff was tried and refused by etcd; the grant ended with a plain delete.
    expect(handoffs(fake)).toHaveLength(1);
    expect((await remote).grant.token).toBe(behind.createRevision);
    // A's waiter found its place gone and joined again, behind B's: it waits.
    await turnsUntil(() => waitersIn(fake, "n").length === 1, "A's waiter to join again");
    expect(holdersIn(fake, "n").map((kv) => kv.createRevision)).toEqual([behind.createRevision]);
    expect(waitersIn(fake, "n")[0]?.createRevision).toBeGreaterThan(behind.createRevision);
    await b.locks.release("n", (await remote).grant.lease);
    expect((await local).grant.token).toBeGreaterThan(behind.createRevision);
  });

  /** Semaphore "s" of limit 2 held twice (h1, h2) on one instance, two of its waiters in line (w1, w2 as joined: p1, p2). */
  async function fullSemaphore() {
    const { fake, lines } = fakeLines();
    const sem: LineRef = { kind: "semaphore", name: "s" };
    const o = { ttl: 30, wait: 0, limit: 2 };
    const h1 = grantOf(await lines.acquire(sem, o)).grant;
    const h2 = grantOf(await lines.acquire(sem, o)).grant;
    const w1 = lines.acquire(sem, { ...o, wait: 60 });
    await untilWaiting(fake, "s", 1, "semaphore");
    const w2 = lines.acquire(sem, { ...o, wait: 60 });
    await untilWaiting(fake, "s", 2, "semaphore");
    const [p1, p2] = [joined(fake, "s", 0, "semaphore"), joined(fake, "s", 1, "semaphore")];
    return { fake, lines, sem, h1, h2, w1, w2, p1, p2 };
  }

  it("a semaphore of 2: each release hands its permit to the next waiter here, in join order", async () => {
    const { fake, lines, sem, h1, h2, w1, w2, p1, p2 } = await fullSemaphore();
    let before = fake.revision;
    await lines.release(sem, h2.lease);
    expect(fake.revision).toBe(before + 1);
    const g1 = grantOf(await w1).grant;
    expect(g1.token).toBe(p1.createRevision);
    before = fake.revision;
    await lines.release(sem, h1.lease);
    expect(fake.revision).toBe(before + 1);
    expect(grantOf(await w2).grant.token).toBe(p2.createRevision);
    expect(handoffs(fake)).toHaveLength(2);
    expect(holdersIn(fake, "s", "semaphore").map((kv) => kv.createRevision)).toEqual([
      p1.createRevision,
      p2.createRevision,
    ]);
  });

  it("a semaphore of 2 released twice at once: the second release finds the first waiter claimed and deletes plainly", async () => {
    const { fake, lines, sem, h1, h2, w1, w2, p1, p2 } = await fullSemaphore();
    // Never more than two holders, at any revision.
    let most = 0;
    const watch = new AbortController();
    onTestFinished(() => watch.abort());
    const seen = new Map<string, boolean>(holdersIn(fake, "s", "semaphore").map((kv) => [kv.key, true]));
    void fake.watchRange(
      "t/sem/s#",
      "t/sem/s$",
      fake.revision + 1,
      (_r, events) => {
        for (const e of events) {
          if (e.type === "delete") seen.delete(e.key);
          else if (decodeParticipant(e.kv.value).h === 1) seen.set(e.kv.key, true);
        }
        most = Math.max(most, seen.size);
      },
      watch.signal,
    );
    await Promise.all([lines.release(sem, h1.lease), lines.release(sem, h2.lease)]);
    const [g1, g2] = [grantOf(await w1).grant, grantOf(await w2).grant];
    expect([g1.token, g2.token]).toEqual([p1.createRevision, p2.createRevision]);
    expect(handoffs(fake)).toHaveLength(1);
    await settled();
    expect(most).toBe(2);
  });

  describe("the waiter gives up while the handoff's txn is in flight", () => {
    it("its caller hangs up and the txn applied: the grant is ended (handed on to the next waiter here), never held by nobody", async () => {
      const gone = new AbortController();
      const { fake, locks, holder, waiter } = await heldWithWaiter({ signal: gone.signal });
      const next = locks.acquire("n", { ttl: 30, wait: 60 });
      await untilWaiting(fake, "n", 2);
      const after = joined(fake, "n", 1);
      const txn = fake.pauseNext("guardedWrite");
      const released = locks.release("n", holder.lease);
      await txn.reached;
      gone.abort();
      await settled();
      txn.release();
      await released;
      expect(await rejection(waiter)).toBeInstanceOf(CallerGone);
      // Its abandoned grant ended as a release does: with a handoff to the next waiter.
      expect((await next).grant.token).toBe(after.createRevision);
      expect(lineIn(fake, "n").map((kv) => kv.createRevision)).toEqual([after.createRevision]);
      expect(handoffs(fake)).toHaveLength(2);
    });

    it("its caller hangs up and the txn failed: the release deletes plainly and the waiter leaves", async () => {
      const gone = new AbortController();
      const { fake, locks, holder, waiter, place } = await heldWithWaiter({ signal: gone.signal });
      const txn = fake.pauseNext("guardedWrite");
      const released = locks.release("n", holder.lease);
      await txn.reached;
      gone.abort();
      // Its key is gone meanwhile (its queue lease ended, say): the txn's guard fails.
      fake.delete(place.key);
      txn.release();
      await released;
      expect(await rejection(waiter)).toBeInstanceOf(CallerGone);
      expect(lineIn(fake, "n")).toEqual([]);
      expect(locks.activeWaiters).toBe(0);
    });

    it("its wait runs out and the txn applied: it is answered with the grant", async () => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
      onTestFinished(() => {
        vi.useRealTimers();
      });
      const { fake, locks, holder, waiter, place } = await heldWithWaiter({ wait: 5 });
      const txn = fake.pauseNext("guardedWrite");
      const released = locks.release("n", holder.lease);
      await txn.reached;
      await vi.advanceTimersByTimeAsync(5_000);
      txn.release();
      await released;
      expect((await waiter).grant.token).toBe(place.createRevision);
      expect(holdersIn(fake, "n").map((kv) => kv.createRevision)).toEqual([place.createRevision]);
    });

    it("its wait runs out and the txn failed: it is refused and leaves the line", async () => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
      onTestFinished(() => {
        vi.useRealTimers();
      });
      const { fake, locks, holder, waiter } = await heldWithWaiter({ wait: 5 });
      const txn = fake.pauseNext("guardedWrite");
      const released = locks.release("n", holder.lease);
      await txn.reached;
      // Its wait runs out by both clocks; etcd's also ends its queue lease (its keep-alive
      // timer did not run), and its key with it: the txn's guard fails.
      fake.advance(5_000);
      await vi.advanceTimersByTimeAsync(5_000);
      txn.release();
      await released;
      expect(await rejection(waiter)).toBeInstanceOf(LockHeld);
      expect(holdersIn(fake, "n")).toEqual([]);
    });

    it("the instance shuts down and the txn failed: the waiter is let go as shutting down", async () => {
      const shutdown = new AbortController();
      const { fake, locks } = fakeLines({ shutdownSignal: shutdown.signal });
      const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
      const waiter = rejection(locks.acquire("n", { ttl: 30, wait: 60 }));
      await untilWaiting(fake, "n", 1);
      const place = joined(fake, "n");
      const txn = fake.pauseNext("guardedWrite");
      const released = locks.release("n", holder.grant.lease);
      await txn.reached;
      shutdown.abort();
      fake.delete(place.key);
      txn.release();
      await released;
      expect(await waiter).toBeInstanceOf(ShuttingDown);
    });
  });

  describe("the release's txn", () => {
    it("fails on the holder's key (it expired): LockLost, as without a handoff, and the waiter takes its own turn", async () => {
      const { fake, locks, holder, waiter, place } = await heldWithWaiter();
      fake.delete(keyOf("n", holder.lease));
      expect(await rejection(locks.release("n", holder.lease))).toBeInstanceOf(LockLost);
      expect(handoffs(fake)).toHaveLength(1);
      expect((await waiter).grant.token).toBe(place.createRevision);
    });

    it("fails on the holder's key moved by another instance (a new value): retried as a plain release, which ends it", async () => {
      const { fake, locks, holder, waiter, place } = await heldWithWaiter();
      const other = fakeLines({}, fake).locks;
      await other.lines.renew(lockLine("n"), holder.lease, { value: "v2" });
      await locks.release("n", holder.lease);
      expect((await waiter).grant.token).toBe(place.createRevision);
      expect(holdersIn(fake, "n").map((kv) => kv.createRevision)).toEqual([place.createRevision]);
    });

    it("with an unknown outcome, applied: the release fails, the waiter fails, and its new key is ended", async () => {
      const { fake, locks, holder, waiter } = await heldWithWaiter();
      fake.failNext("guardedWrite", { applied: true });
      expect(await rejection(locks.release("n", holder.lease))).toBeInstanceOf(EtcdUnavailableError);
      expect(await rejection(waiter)).toBeInstanceOf(EtcdUnavailableError);
      // Its key, made the holder by the txn, was deleted at the revision the txn wrote;
      // the lease, bound to nothing then, revoked.
      expect(lineIn(fake, "n")).toEqual([]);
      await turnsUntil(() => fake.lease(leaseOf(holder.lease)) === undefined, "the lease to be revoked");
      expect(locks.activeWaiters).toBe(0);
    });

    it("with an unknown outcome, not applied: the release fails, the waiter fails and leaves, the grant still holds", async () => {
      const { fake, locks, holder, waiter } = await heldWithWaiter();
      fake.failNext("guardedWrite");
      expect(await rejection(locks.release("n", holder.lease))).toBeInstanceOf(EtcdUnavailableError);
      expect(await rejection(waiter)).toBeInstanceOf(EtcdUnavailableError);
      expect(lineIn(fake, "n").map((kv) => kv.createRevision)).toEqual([holder.token]);
      await locks.release("n", holder.lease);
      expect(lineIn(fake, "n")).toEqual([]);
    });

    it("applied, but its lease's reset has an unknown outcome: the grant ended; the waiter fails and its new key is ended", async () => {
      const { fake, locks, holder, waiter } = await heldWithWaiter();
      fake.failNext("leaseKeepAliveOnce", { match: (id) => id === leaseOf(holder.lease) });
      await locks.release("n", holder.lease);
      expect(await rejection(waiter)).toBeInstanceOf(EtcdUnavailableError);
      expect(lineIn(fake, "n")).toEqual([]);
    });

    it("applied, but the lease ended right after: the grant ended; the waiter finds its place gone and joins again", async () => {
      const { fake, locks, holder, waiter, place } = await heldWithWaiter();
      const reset = fake.pauseNext("leaseKeepAliveOnce", { match: (id) => id === leaseOf(holder.lease) });
      const released = locks.release("n", holder.lease);
      await reset.reached;
      await turnsUntil(() => fake.peek(place.key)?.lease === leaseOf(holder.lease), "the txn to apply");
      await fake.leaseRevoke(leaseOf(holder.lease));
      reset.release();
      await released;
      const { grant } = await waiter;
      expect(grant.token).toBeGreaterThan(place.createRevision);
      expect(holdersIn(fake, "n").map((kv) => kv.createRevision)).toEqual([grant.token]);
    });

    it("with a pooled lease that had died: no handoff; the grant is deleted and the waiter takes its own turn", async () => {
      const { fake, locks } = fakeLines();
      const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
      const waiter = locks.acquire("n", { ttl: 10, wait: 60 });
      await untilWaiting(fake, "n", 1);
      const place = joined(fake, "n");
      // A 10 s lease goes to the pool (a grant of it released), and ends there behind the pool's back.
      const prior = await locks.acquire("p", { ttl: 10, wait: 0 });
      await locks.release("p", prior.grant.lease);
      await fake.leaseRevoke(leaseOf(prior.grant.lease));
      const before = fake.revision;
      await locks.release("n", holder.grant.lease);
      const { grant } = await waiter;
      expect(grant.token).toBe(place.createRevision);
      expect(leaseOf(grant.lease)).not.toBe(leaseOf(prior.grant.lease));
      // The refused handoff wrote nothing: a delete, then the waiter's own turn.
      expect(fake.revision).toBe(before + 2);
    });
  });

  describe("the plain path", () => {
    /** Releases "n"'s holder with `waiting` in line; the release wrote no handoff, and the waiter is granted. */
    async function plain(f: ReturnType<typeof fakeLines>, holder: Grant, waiting: Promise<Acquired>): Promise<Grant> {
      await f.locks.release("n", holder.lease);
      const { grant } = grantOf(await waiting);
      expect(handoffs(f.fake)).toEqual([]);
      return grant;
    }

    it("for a ticket waiting in a redeem", async () => {
      const f = fakeLines();
      const line = lockLine("n");
      const o = { ttl: 30, wait: 0, limit: 1, queue: true };
      const holder = grantOf(await f.lines.acquire(line, o)).grant;
      const a = await f.lines.acquire(line, o);
      if (!("ticket" in a)) throw new Error("expected a ticket");
      const redeem = f.lines.redeem(line, a.ticket.ticket, { wait: 60 });
      await turnsUntil(() => f.lines.activeWaiters === 1, "the redeem to wait");
      await settled();
      await plain(f, holder, redeem);
    });

    it("for an idempotent waiter", async () => {
      const f = fakeLines();
      const holder = (await f.locks.acquire("n", { ttl: 30, wait: 0 })).grant;
      const waiting = f.lines.acquire(lockLine("n"), { ttl: 30, wait: 60, limit: 1, idempotencyKey: "k", caller: "a" });
      await untilWaiting(f.fake, "n", 1);
      await plain(f, holder, waiting);
    });

    it("for a waiter asking a lock-delay", async () => {
      const f = fakeLines();
      const holder = (await f.locks.acquire("n", { ttl: 30, wait: 0 })).grant;
      const waiting = f.lines.acquire(lockLine("n"), { ttl: 30, wait: 60, limit: 1, lockDelay: 1 });
      await untilWaiting(f.fake, "n", 1);
      await plain(f, holder, waiting);
    });

    it("for a releasing grant with a lock-delay marker", async () => {
      const f = fakeLines();
      const holder = (await f.locks.acquire("n", { ttl: 30, wait: 0, lockDelay: 1 })).grant;
      const waiting = f.lines.acquire(lockLine("n"), { ttl: 30, wait: 60, limit: 1 });
      await untilWaiting(f.fake, "n", 1);
      await plain(f, holder, waiting);
    });

    it("on Workers", async () => {
      const f = fakeLines({ worker: true });
      const holder = (await f.locks.acquire("n", { ttl: 30, wait: 0 })).grant;
      const waiting = f.lines.acquire(lockLine("n"), { ttl: 30, wait: 60, limit: 1 });
      await untilWaiting(f.fake, "n", 1);
      const before = f.fake.revision;
      await plain(f, holder, waiting);
      expect(f.fake.revision).toBe(before + 2);
    });
  });
});
