import { describe, expect, it, onTestFinished, vi } from "vitest";
import { EtcdUnavailableError, prefixEnd } from "../../src/etcd/types.js";
import {
  type LineRange,
  LineView,
  LineViewPerWaiter,
  type LineWaits,
  SharedLineViews,
  type TurnOutcome,
} from "../../src/lock/strategies/line-views.js";
import { FakeEtcd } from "../support/fake-etcd.js";
import { settled, turnsUntil } from "./support.js";

/**
 * How waiters learn their turn: a copy of the line (one read, then a watch from the
 * revision after it) judged after every revision it applies.
 */

const HOLDS = JSON.stringify({ h: 1 });
const WAITS = JSON.stringify({ ttl: 30 });

function lineRange(name: string): LineRange {
  const start = `t/lock/${name}#`;
  return { start, end: prefixEnd(start) };
}

/** A participant key of the line. */
const k = (range: LineRange, id: string) => `${range.start}${id}`;

/** A wait for a turn whose outcome can be looked at while it is pending. */
function waitFor(waits: LineWaits | LineView, range: LineRange, key: string, limit: number, joined: number) {
  const ac = new AbortController();
  const state: { outcome?: TurnOutcome | Error } = {};
  const p =
    waits instanceof LineView
      ? waits.awaitTurn(key, limit, joined, ac.signal)
      : waits.awaitTurn(range, key, limit, joined, ac.signal);
  const done = p.then(
    (o) => {
      state.outcome = o;
    },
    (err: Error) => {
      state.outcome = err;
    },
  );
  return {
    state,
    done,
    leave: () => ac.abort(),
    turn: () => (state.outcome as { turn?: string } | undefined)?.turn,
  };
}

/** A line "n" on the fake: a holder `h`, and `mine` waiting behind it since `joined`. */
function heldLine(fake: FakeEtcd) {
  const range = lineRange("n");
  const h = k(range, "h");
  fake.put(h, HOLDS);
  const mine = k(range, "w");
  const joined = fake.put(mine, WAITS);
  return { range, h, mine, joined };
}

/** A LineView on the fake, closed after the test; `ended` counts its onEnd calls. */
function viewOf(fake: FakeEtcd, range: LineRange) {
  const counter = { ended: 0 };
  const view = new LineView(fake, range, () => counter.ended++);
  onTestFinished(() => view.close());
  return { view, counter };
}

describe("LineView (a copy of one line)", () => {
  it("is one read, oldest first, and one watch from the revision after it", async () => {
    const fake = new FakeEtcd();
    const range = lineRange("n");
    const rev = fake.put(k(range, "h"), HOLDS);
    viewOf(fake, range);
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    expect(fake.argsOf("scan")).toEqual([[range.start, range.end, { byCreate: true }]]);
    expect(fake.argsOf("watchRange").map(([s, e, from]) => [s, e, from])).toEqual([[range.start, range.end, rev + 1]]);
  });

  it("joins go to the back, a conversion stays in place, a delete leaves", async () => {
    const fake = new FakeEtcd();
    const range = lineRange("n");
    const [h, w1, w2] = ["h", "w1", "w2"].map((id) => k(range, id)) as [string, string, string];
    fake.put(h, HOLDS);
    const j1 = fake.put(w1, WAITS);
    const j2 = fake.put(w2, WAITS);
    const { view } = viewOf(fake, range);
    const first = waitFor(view, range, w1, 1, j1);
    const second = waitFor(view, range, w2, 1, j2);
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    expect([view.position(w1, 0), view.position(w2, 0)]).toEqual([0, 1]);
    expect(first.turn()).toBeUndefined();
    fake.delete(h);
    await first.done;
    expect(first.state.outcome).toMatchObject({ turn: "hold", member: { kv: { key: w1 } } });
    // w1 holds now, put again in place: w2 is still behind a holder, not first in line.
    fake.put(w1, HOLDS);
    const w3 = k(range, "w3");
    fake.put(w3, WAITS);
    await settled();
    expect(second.turn()).toBeUndefined();
    expect([view.position(w2, 0), view.position(w3, 0)]).toEqual([0, 1]);
    // The copy is at etcd's revision now; one older than what the asker has seen (a
    // later revision) does not answer: etcd is asked instead.
    expect(view.position(w3, fake.revision)).toBe(1);
    expect(view.position(w3, fake.revision + 1)).toBeUndefined();
    fake.delete(w1);
    await second.done;
    expect(second.state.outcome).toMatchObject({ turn: "hold", member: { kv: { key: w2, createRevision: j2 } } });
    expect(view.position(w1, 0)).toBeUndefined();
  });

  it("a waiter is told to hold only among the first limit, with everyone ahead of it holding", async () => {
    const fake = new FakeEtcd();
    const range = lineRange("sem");
    const ids = ["w0", "w1", "w2"].map((id) => k(range, id)) as [string, string, string];
    // A semaphore's participants carry its limit: a holder of another limit is waited out.
    const [waits2, holds2] = [JSON.stringify({ ttl: 30, limit: 2 }), JSON.stringify({ h: 1, limit: 2 })];
    const joined = ids.map((key) => fake.put(key, waits2));
    const { view } = viewOf(fake, range);
    const waits = ids.map((key, i) => waitFor(view, range, key, 2, joined[i] ?? 0));
    await (waits[0] as ReturnType<typeof waitFor>).done;
    await settled();
    // w1 is among the first two, but w0 ahead of it has not taken its permit yet.
    expect(waits.map((w) => w.turn())).toEqual(["hold", undefined, undefined]);
    fake.put(ids[0], holds2);
    await (waits[1] as ReturnType<typeof waitFor>).done;
    await settled();
    // Two holders (or about to): the third waits for one of them to leave.
    expect(waits.map((w) => w.turn())).toEqual(["hold", "hold", undefined]);
    fake.put(ids[1], holds2);
    fake.delete(ids[0]);
    await (waits[2] as ReturnType<typeof waitFor>).done;
    expect(waits[2]?.turn()).toBe("hold");
  });

  it("a revision judges only the waits it can have settled: its deleted keys' and the front's, not every waiter's", async () => {
    const fake = new FakeEtcd();
    const range = lineRange("long");
    const h = k(range, "h");
    fake.put(h, HOLDS);
    const ids = Array.from({ length: 100 }, (_, i) => k(range, `w${String(i).padStart(3, "0")}`));
    const joined = ids.map((key) => fake.put(key, WAITS));
    const { view } = viewOf(fake, range);
    const waits = ids.map((key, i) => waitFor(view, range, key, 1, joined[i] ?? 0));
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    await settled();
    const judge = vi.spyOn(LineView.prototype as unknown as { judge(): void }, "judge");
    onTestFinished(() => judge.mockRestore());
    // A waiter far back leaves: only its own wait is told (gone), and the front's judged.
    const back = 60;
    fake.delete(ids[back] ?? "");
    await waits[back]?.done;
    expect(waits[back]?.turn()).toBe("gone");
    expect(judge.mock.calls.length).toBeLessThanOrEqual(3);
    judge.mockClear();
    // The holder leaves: the first waiter's turn; the others stay waiting.
    fake.delete(h);
    await waits[0]?.done;
    await settled();
    expect(waits[0]?.turn()).toBe("hold");
    expect(waits.filter((w) => w.turn() === undefined)).toHaveLength(98);
    expect(judge.mock.calls.length).toBeLessThanOrEqual(3);
    for (const w of waits) w.leave();
  });

  it("a key is judged gone only once the copy has reached the revision it joined at", async () => {
    const fake = new FakeEtcd();
    const range = lineRange("n");
    fake.put(k(range, "h"), HOLDS);
    // The copy is read before the waiter's key is written...
    const read = fake.pauseNext("scan", { applied: true });
    const { view } = viewOf(fake, range);
    await read.reached;
    const mine = k(range, "w");
    const joined = fake.put(mine, WAITS);
    const w = waitFor(view, range, mine, 1, joined);
    read.release();
    // ...so it does not have the key yet: that is no reason to think it left.
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    await settled();
    expect(w.turn()).toBeUndefined();
    expect(view.position(mine, 0)).toBe(0);
    fake.delete(mine);
    await w.done;
    expect(w.state.outcome).toEqual({ turn: "gone" });
  });

  it("several waits for one key are each told (attempts of one participant)", async () => {
    const fake = new FakeEtcd();
    const { range, h, mine, joined } = heldLine(fake);
    const { view } = viewOf(fake, range);
    const both = [waitFor(view, range, mine, 1, joined), waitFor(view, range, mine, 1, joined)];
    await settled();
    expect(view.waiting).toBe(2);
    fake.delete(h);
    await Promise.all(both.map((w) => w.done));
    expect(both.map((w) => w.turn())).toEqual(["hold", "hold"]);
  });

  it("reads the line again when the history its watch needs was compacted", async () => {
    const fake = new FakeEtcd();
    const { range, h, mine, joined } = heldLine(fake);
    const read = fake.pauseNext("scan", { applied: true });
    const { view } = viewOf(fake, range);
    const w = waitFor(view, range, mine, 1, joined);
    await read.reached;
    // While the copy's read is on its way, the holder leaves and etcd compacts past it.
    fake.delete(h);
    fake.put("elsewhere", "x");
    fake.compact(fake.revision);
    read.release();
    await w.done;
    expect(w.turn()).toBe("hold");
    expect(fake.count("scan")).toBe(2);
    const watches = fake.argsOf("watchRange").map(([, , from]) => from);
    expect(watches).toEqual([joined + 1, fake.revision + 1]);
  });

  it("a watch that fails rejects its waiters, and the copy ends", async () => {
    const fake = new FakeEtcd();
    const { range, mine, joined } = heldLine(fake);
    const { view, counter } = viewOf(fake, range);
    const w = waitFor(view, range, mine, 1, joined);
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    const broken = new EtcdUnavailableError("watch broke");
    fake.endWatches(broken);
    await w.done;
    expect(w.state.outcome).toBe(broken);
    expect(view.closed).toBe(true);
    expect(view.waiting).toBe(0);
    expect(counter.ended).toBe(1);
  });

  it("a wait ends at once when its signal fires", async () => {
    const fake = new FakeEtcd();
    const { range, mine, joined } = heldLine(fake);
    const { view } = viewOf(fake, range);
    const w = waitFor(view, range, mine, 1, joined);
    w.leave();
    await w.done;
    expect(w.state.outcome).toEqual({ turn: "aborted" });
    expect(view.waiting).toBe(0);
  });
});

/** A line with a holder and `n` waiters, and their join revisions. */
function busyLine(fake: FakeEtcd, name: string, n: number) {
  const range = lineRange(name);
  const holder = k(range, "h");
  fake.put(holder, HOLDS);
  const waiters = Array.from({ length: n }, (_, i) => {
    const key = k(range, `w${i}`);
    return { key, joined: fake.put(key, WAITS) };
  });
  return { range, holder, waiters };
}

describe("SharedLineViews (Node: one copy of a line per instance)", () => {
  it("one read and one watch per line, however many wait in it", async () => {
    const fake = new FakeEtcd();
    const waits = new SharedLineViews(fake);
    const a = busyLine(fake, "a", 5);
    const b = busyLine(fake, "b", 2);
    const all = [a, b].flatMap((l) => l.waiters.map((w) => waitFor(waits, l.range, w.key, 1, w.joined)));
    await turnsUntil(() => fake.count("watchRange") === 2, "the watches");
    await settled();
    expect(fake.argsOf("scan").map(([start]) => start)).toEqual([a.range.start, b.range.start]);
    expect(fake.argsOf("watchRange").map(([start]) => start)).toEqual([a.range.start, b.range.start]);
    expect(waits.watching(a.range.start)).toBe(true);
    expect(waits.position(a.range.start, a.waiters[3]?.key ?? "", 0)).toBe(3);
    for (const w of all) w.leave();
  });

  it("only the waiter whose turn came is woken, one per holder that leaves", async () => {
    const fake = new FakeEtcd();
    const waits = new SharedLineViews(fake);
    const { range, holder, waiters } = busyLine(fake, "n", 4);
    const pending = waiters.map((w) => waitFor(waits, range, w.key, 1, w.joined));
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    fake.delete(holder);
    await pending[0]?.done;
    await settled();
    expect(pending.map((w) => w.turn())).toEqual(["hold", undefined, undefined, undefined]);
    // It takes the lock and gives it back: the next one, and only it, is woken.
    fake.put(waiters[0]?.key ?? "", HOLDS);
    fake.delete(waiters[0]?.key ?? "");
    await pending[1]?.done;
    await settled();
    expect(pending.map((w) => w.turn())).toEqual(["hold", "hold", undefined, undefined]);
    expect(fake.count("scan")).toBe(1);
    for (const w of pending) w.leave();
  });

  it("the copy lingers after its last waiter, for the next one to use, then closes", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const fake = new FakeEtcd();
    const waits = new SharedLineViews(fake, 1_000);
    const { range, holder, waiters } = busyLine(fake, "n", 3);
    const first = waitFor(waits, range, waiters[0]?.key ?? "", 1, waiters[0]?.joined ?? 0);
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    fake.delete(holder);
    await first.done;
    expect(waits.watching(range.start)).toBe(false);
    await vi.advanceTimersByTimeAsync(999);
    expect(fake.openWatches(range.start)).toBe(1);
    // The next waiter within the linger finds the copy: no second read.
    const second = waitFor(waits, range, waiters[1]?.key ?? "", 1, waiters[1]?.joined ?? 0);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(fake.count("scan")).toBe(1);
    second.leave();
    await second.done;
    await vi.advanceTimersByTimeAsync(999);
    expect(fake.openWatches(range.start)).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await turnsUntil(() => fake.openWatches(range.start) === 0, "the lingering watch to close");
    // After that, a waiter makes a new copy.
    const third = waitFor(waits, range, waiters[2]?.key ?? "", 1, waiters[2]?.joined ?? 0);
    await turnsUntil(() => fake.count("scan") === 2, "a new read");
    third.leave();
  });

  it("a copy whose watch failed is replaced by a new one for the next waiter", async () => {
    const fake = new FakeEtcd();
    const waits = new SharedLineViews(fake);
    const { range, waiters } = busyLine(fake, "n", 2);
    const first = waitFor(waits, range, waiters[0]?.key ?? "", 1, waiters[0]?.joined ?? 0);
    await turnsUntil(() => fake.openWatches(range.start) === 1, "the watch");
    fake.endWatches(new EtcdUnavailableError("watch broke"));
    await first.done;
    expect(first.state.outcome).toBeInstanceOf(EtcdUnavailableError);
    const second = waitFor(waits, range, waiters[1]?.key ?? "", 1, waiters[1]?.joined ?? 0);
    await turnsUntil(() => fake.openWatches(range.start) === 1, "a new watch");
    expect(fake.count("scan")).toBe(2);
    second.leave();
  });
});

describe("LineViewPerWaiter (Workers: a copy of the line per waiter)", () => {
  it("each waiter reads and watches the line itself, and its watch ends with its wait", async () => {
    const fake = new FakeEtcd();
    const waits = new LineViewPerWaiter(fake);
    const { range, holder, waiters } = busyLine(fake, "n", 3);
    const pending = waiters.map((w) => waitFor(waits, range, w.key, 1, w.joined));
    await turnsUntil(() => fake.openWatches(range.start) === 3, "three watches");
    expect(fake.count("scan")).toBe(3);
    expect(waits.watching()).toBe(false);
    expect(waits.position()).toBeUndefined();
    fake.delete(holder);
    await pending[0]?.done;
    expect(pending[0]?.turn()).toBe("hold");
    await turnsUntil(() => fake.openWatches(range.start) === 2, "the first waiter's watch to end");
    for (const w of pending.slice(1)) w.leave();
    await Promise.all(pending.map((w) => w.done));
    await turnsUntil(() => fake.openWatches(range.start) === 0, "every watch to end");
  });
});
