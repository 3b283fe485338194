import { afterEach, describe, expect, it, vi } from "vitest";
import { EtcdGatewayError } from "../../src/etcd/gateway/codec.js";
import { EtcdUnavailableError, type WatchEnd, type WatchEvent } from "../../src/etcd/types.js";
import { WatchCursor, WatchLoops } from "../../src/etcd/watch-loop.js";

/**
 * Unit tests of the watch loop both transports share, with scripted streams: a stream
 * that breaks at a chosen moment, an etcd that stays away for a chosen time. The
 * transports' conformance suite runs the same contract against a real etcd.
 */
type Step = (cursor: WatchCursor, stop: AbortSignal) => Promise<WatchEnd | "broken">;

function scripted(steps: Step[], timeoutMs = 1_000) {
  const opens: number[] = [];
  const deletes: number[] = [];
  const loops = new WatchLoops(timeoutMs);
  const ac = new AbortController();
  const ended = loops.run(
    3,
    (revision) => deletes.push(revision),
    ac.signal,
    (cursor, stop) => {
      opens.push(cursor.next);
      const step = steps[opens.length - 1];
      if (!step) throw new Error(`no step scripted for open #${opens.length}`);
      return step(cursor, stop);
    },
  );
  ended.catch(() => {});
  return { opens, deletes, ended, loops, stop: () => ac.abort() };
}

/** Reports `revisions`, then ends as `end` says. */
const stream =
  (revisions: number[], end: WatchEnd | "broken"): Step =>
  async (cursor) => {
    for (const r of revisions) cursor.report(r, []);
    return end;
  };

/** Reports `revisions`, then stays open until stopped. */
const open =
  (revisions: number[] = []): Step =>
  (cursor, stop) => {
    for (const r of revisions) cursor.report(r, []);
    return new Promise((resolve) => stop.addEventListener("abort", () => resolve("aborted"), { once: true }));
  };

const refused =
  (message: string): Step =>
  () =>
    Promise.reject(new EtcdUnavailableError(message));

/** Lets the loop's pending promise callbacks run (no timers involved). */
const settle = () => new Promise<void>((r) => setImmediate(r));

afterEach(() => {
  vi.useRealTimers();
});

describe("watch loop", () => {
  it("reopens a broken stream from the last DELETE + 1: each DELETE reported once, in order", async () => {
    const w = scripted([stream([5, 7], "broken"), stream([], "broken"), stream([9], "broken"), open([12])]);
    await settle();
    expect(w.opens).toEqual([3, 8, 8, 10]);
    expect(w.deletes).toEqual([5, 7, 9, 12]);
    w.stop();
    expect(await w.ended).toBe("aborted");
  });

  it("ends with compacted when the revision to resume from was compacted", async () => {
    const w = scripted([stream([5], "broken"), stream([], "compacted")]);
    expect(await w.ended).toBe("compacted");
    expect(w.opens).toEqual([3, 6]);
    expect(w.deletes).toEqual([5]);
  });

  it("fails at once when the first stream cannot be established", async () => {
    const w = scripted([refused("etcd did not establish the watch")]);
    await expect(w.ended).rejects.toThrow(EtcdUnavailableError);
    expect(w.opens).toEqual([3]);
  });

  it("fails at once when etcd refuses a reopened watch (not a reachability failure)", async () => {
    const w = scripted([
      stream([5], "broken"),
      () => Promise.reject(new EtcdGatewayError("permission denied", 7, 403)),
    ]);
    await expect(w.ended).rejects.toThrow(EtcdGatewayError);
    expect(w.opens).toEqual([3, 6]);
  });

  it("after a break, tries again every 250 ms until one call deadline has passed, then fails", async () => {
    vi.useFakeTimers();
    const w = scripted(
      [stream([5], "broken"), ...Array.from({ length: 5 }, (_, i) => refused(`down #${i}`)), open()],
      1_000,
    );
    const outcome = w.ended.then(
      () => "resolved",
      (err: unknown) => err,
    );
    await vi.advanceTimersByTimeAsync(999);
    // Opened at 0 (broke), then 0, 250, 500 and 750 ms: all refused, the deadline not yet reached.
    expect(w.opens).toEqual([3, 6, 6, 6, 6]);
    expect(await Promise.race([outcome, Promise.resolve("pending")])).toBe("pending");
    await vi.advanceTimersByTimeAsync(1);
    const err = await outcome;
    expect(err).toBeInstanceOf(EtcdUnavailableError);
    expect((err as Error).message).toBe("down #4");
    expect(w.opens).toHaveLength(6);
  });

  it("a stream that comes back within the deadline carries on from where it stood", async () => {
    vi.useFakeTimers();
    const w = scripted([stream([5], "broken"), refused("down"), refused("down"), open([9])]);
    await vi.advanceTimersByTimeAsync(500);
    expect(w.opens).toEqual([3, 6, 6, 6]);
    expect(w.deletes).toEqual([5, 9]);
    // A later break gets a deadline of its own.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await Promise.race([w.ended, Promise.resolve("pending")])).toBe("pending");
    w.stop();
    expect(await w.ended).toBe("aborted");
  });

  it("reports nothing once stopped, and ends with aborted even when the stream fails meanwhile", async () => {
    let late: (() => void) | undefined;
    const w = scripted([
      (cursor, stop) =>
        new Promise((_, reject) => {
          cursor.report(5, []);
          late = () => {
            cursor.report(6, []);
            reject(new Error("connection reset"));
          };
          stop.addEventListener("abort", () => late?.(), { once: true });
        }),
    ]);
    await settle();
    w.stop();
    expect(await w.ended).toBe("aborted");
    expect(w.deletes).toEqual([5]);
  });

  it("does not open a stream for a signal that already fired", async () => {
    const loops = new WatchLoops(1_000);
    const ac = new AbortController();
    ac.abort();
    const opened = vi.fn();
    expect(await loops.run(1, () => {}, ac.signal, opened)).toBe("aborted");
    expect(opened).not.toHaveBeenCalled();
  });

  it("close() ends every open watch with aborted", async () => {
    const a = scripted([open([5])]);
    const loops = a.loops;
    const ac = new AbortController();
    const b = loops.run(1, () => {}, ac.signal, open());
    await settle();
    loops.close();
    expect(await a.ended).toBe("aborted");
    expect(await b).toBe("aborted");
  });

  it("while waiting to reopen, a stop ends the wait at once", async () => {
    vi.useFakeTimers();
    const w = scripted([stream([5], "broken"), refused("down"), open()]);
    await vi.advanceTimersByTimeAsync(0);
    expect(w.opens).toEqual([3, 6]);
    w.stop();
    await vi.advanceTimersByTimeAsync(0);
    expect(await w.ended).toBe("aborted");
    expect(w.opens).toEqual([3, 6]);
  });
});

describe("watch cursor", () => {
  const put = (key: string, revision: number): WatchEvent => ({
    type: "put",
    kv: { key, value: "", createRevision: revision, modRevision: revision, lease: 0n },
  });
  const del = (key: string, revision: number): WatchEvent => ({ type: "delete", key, revision });

  it("reports each revision's events together, in order, and each revision once", () => {
    const got: [number, WatchEvent[]][] = [];
    const cursor = new WatchCursor(5, (revision, events) => got.push([revision, events]), new AbortController().signal);
    cursor.reportAll([put("a", 5), put("b", 5), del("a", 7)]);
    // Revisions already reported (or before the start) are not reported again.
    cursor.reportAll([del("b", 7), put("c", 8)]);
    cursor.report(4, [del("x", 4)]);
    expect(got).toEqual([
      [5, [put("a", 5), put("b", 5)]],
      [7, [del("a", 7)]],
      [8, [put("c", 8)]],
    ]);
    expect(cursor.next).toBe(9);
  });
});
