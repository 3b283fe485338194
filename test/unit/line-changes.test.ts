import { describe, expect, it } from "vitest";
import { createLines, TooManyWaiters, workerStrategies } from "../../src/lock/index.js";
import { ChangesPerReader, type LineChanges, SharedLineChanges } from "../../src/lock/strategies/line-changes.js";
import { FakeEtcd } from "../support/fake-etcd.js";

/** Lets queued microtasks (watch deliveries) run. */
const flush = () => new Promise<void>((r) => setImmediate(r));
const range = { start: "l/a#", end: "l/a$" };

/** Settles to its outcome, or "pending" while it has not settled (after deliveries ran). */
function track<T>(p: Promise<T>) {
  let state: T | "pending" = "pending";
  void p.then((v) => {
    state = v;
  });
  return {
    get state() {
      return state;
    },
  };
}

describe.each([
  { how: "one watch per line (Node)", make: (f: FakeEtcd): LineChanges => new SharedLineChanges(f, 50) },
  { how: "a watch per reader (Workers)", make: (f: FakeEtcd): LineChanges => new ChangesPerReader(f) },
])("blocking reads: $how", ({ make }) => {
  it("a change after the reader's revision wakes it; one at or before it does not", async () => {
    const fake = new FakeEtcd();
    const changes = make(fake);
    fake.put("l/a#1", "x");
    const after = fake.revision;
    fake.put("other", "y");
    const stop = new AbortController();
    const r = track(changes.awaitChange(range, after, stop.signal));
    await flush();
    expect(r.state).toBe("pending");
    fake.put("l/a#2", "z");
    await flush();
    expect(r.state).toBe("changed");
  });

  it("a reader from an older revision is answered at once when the line changed since, a delete included", async () => {
    const fake = new FakeEtcd();
    const changes = make(fake);
    fake.put("l/a#1", "x");
    const old = fake.revision;
    fake.delete("l/a#1");
    // A reader that started the watch later, from a newer revision.
    const stop = new AbortController();
    const newer = track(changes.awaitChange(range, fake.revision, stop.signal));
    await flush();
    expect(newer.state).toBe("pending");
    const older = track(changes.awaitChange(range, old, stop.signal));
    await flush();
    expect(older.state).toBe("changed");
    expect(newer.state).toBe("pending");
    stop.abort();
    await flush();
    expect(newer.state).toBe("aborted");
  });

  it("history compacted after the reader's revision: unknown (it is answered at once)", async () => {
    const fake = new FakeEtcd();
    const changes = make(fake);
    fake.put("l/a#1", "x");
    const old = fake.revision;
    fake.put("other", "y");
    fake.put("other", "z");
    // History before the last revision goes: the revision after the reader's with it.
    fake.compact(fake.revision);
    const r = track(changes.awaitChange(range, old, new AbortController().signal));
    await flush();
    expect(r.state).toBe("unknown");
  });
});

describe("SharedLineChanges", () => {
  it("readers of one line share one watch, and one read per change", async () => {
    const fake = new FakeEtcd();
    const changes = new SharedLineChanges(fake, 50);
    const stop = new AbortController();
    const after = fake.revision;
    const woken = Array.from({ length: 20 }, () => changes.awaitChange(range, after, stop.signal));
    await flush();
    expect(fake.openWatches()).toBe(1);
    fake.put("l/a#1", "x");
    expect(await Promise.all(woken)).toEqual(Array(20).fill("changed"));
    let reads = 0;
    const read = async () => {
      reads++;
      await flush();
      return reads;
    };
    const answers = await Promise.all(Array.from({ length: 20 }, () => changes.share(range, read)));
    expect(new Set(answers)).toEqual(new Set([1]));
    // After the next change, a new read.
    fake.put("l/a#2", "x");
    await flush();
    expect(await changes.share(range, read)).toBe(2);
  });

  it("the watch outlives its last reader briefly, then ends", async () => {
    const fake = new FakeEtcd();
    const changes = new SharedLineChanges(fake, 20);
    const stop = new AbortController();
    const r = changes.awaitChange(range, fake.revision, stop.signal);
    await flush();
    stop.abort();
    expect(await r).toBe("aborted");
    expect(fake.openWatches()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(fake.openWatches()).toBe(0);
  });
});

describe("blocking reads in the engine", () => {
  it("are capped like waiters, apart from them: past maxWaiters, TooManyWaiters; a free place serves again", async () => {
    const fake = new FakeEtcd();
    const lines = createLines(fake, { prefix: "t/", maxWaiters: 1, strategies: workerStrategies });
    const line = { kind: "lock" as const, name: "a" };
    const { index } = await lines.read(line);
    const stop = new AbortController();
    const blocked = lines.read(line, { after: index, wait: 30, signal: stop.signal });
    await flush();
    expect(lines.activeReads).toBe(1);
    const refused = lines.read(line, { after: index, wait: 30 });
    await expect(refused).rejects.toBeInstanceOf(TooManyWaiters);
    await expect(refused).rejects.toThrow(/blocking reads/);
    // A plain read is never blocked, so never refused.
    expect((await lines.read(line)).index).toBe(index);
    fake.put("t/lock/a#1", JSON.stringify({ h: 1, ttl: 5 }));
    expect((await blocked).index).toBeGreaterThan(index);
    expect(lines.activeReads).toBe(0);
  });
});
