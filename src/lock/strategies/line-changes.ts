import type { EtcdClient } from "../../etcd/types.js";
import type { LineRange } from "./line-views.js";

/**
 * How a blocking read learns that its line changed. A read that answered at revision R
 * is followed by every change of the line at a revision after R; an etcd watch from
 * R + 1 delivers exactly those (history first, then live), so "changed after R" is the
 * first event such a watch reports. Saves a read per blocked reader per poll: readers
 * wait on a watch, and are answered once per change.
 */
export type ChangeOutcome =
  /** A key of the line was put or deleted at a revision after the one asked about. */
  | "changed"
  /** etcd compacted the history after that revision away: whether it changed is unknown. */
  | "unknown"
  /** The signal fired first (the wait is over, unchanged). */
  | "aborted";

export interface LineChanges {
  /**
   * Resolves as soon as a key of `range` was written or deleted at a revision after
   * `after`, or when `signal` fires. Rejects when etcd cannot be watched.
   */
  awaitChange(range: LineRange, after: number, signal: AbortSignal): Promise<ChangeOutcome>;
  /**
   * The answer for a reader whose wait just ended: `read` runs, or (Node) the callers of
   * one line share a read started after the last change its watch delivered.
   */
  share<T>(range: LineRange, read: () => Promise<T>): Promise<T>;
}

interface Reader {
  after: number;
  settle(o: ChangeOutcome): void;
  fail(err: unknown): void;
}

/** One watch of a line for every blocked reader of it in this instance. */
class LineChangeWatch {
  /** The watch reports every change at this revision or later. */
  private from: number;
  /** Revision of the latest change the watch reported (0: none yet). */
  private latest = 0;
  /** Counts the reports: a read started at the current count reflects every change reported. */
  epoch = 0;
  pending: { epoch: number; promise: Promise<unknown> } | undefined;
  private readonly readers = new Set<Reader>();
  private current = new AbortController();
  private ended = false;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly range: LineRange,
    after: number,
    private readonly onEnd: () => void,
  ) {
    this.from = after + 1;
    this.start();
  }

  get blocked(): number {
    return this.readers.size;
  }

  get closed(): boolean {
    return this.ended;
  }

  awaitChange(after: number, signal: AbortSignal): Promise<ChangeOutcome> {
    if (this.latest > after) return Promise.resolve("changed");
    if (signal.aborted) return Promise.resolve("aborted");
    // A reader from before the watch's start: the watch starts again from there, and
    // etcd replays the history in between (what was reported already changes nothing).
    if (after + 1 < this.from) {
      this.from = after + 1;
      this.start();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => reader.settle("aborted");
      const finish = () => {
        this.readers.delete(reader);
        signal.removeEventListener("abort", onAbort);
      };
      const reader: Reader = {
        after,
        settle: (o) => {
          finish();
          resolve(o);
        },
        fail: (err) => {
          finish();
          reject(err);
        },
      };
      this.readers.add(reader);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.current.abort();
    for (const r of [...this.readers]) r.settle("aborted");
    this.onEnd();
  }

  /** (Re)opens the watch from `from`; the one it replaces is stopped. */
  private start(): void {
    this.current.abort();
    const stop = new AbortController();
    this.current = stop;
    void this.etcd
      .watchRange(this.range.start, this.range.end, this.from, (revision) => this.changed(revision), stop.signal)
      .then(
        (end) => {
          if (stop.signal.aborted) return;
          // History after some reader's revision is gone: those readers are answered now,
          // and later ones get a new watch from their own revision.
          if (end === "compacted") for (const r of [...this.readers]) r.settle("unknown");
          this.close();
        },
        (err: unknown) => {
          if (stop.signal.aborted) return;
          for (const r of [...this.readers]) r.fail(err);
          this.close();
        },
      );
  }

  private changed(revision: number): void {
    if (revision > this.latest) this.latest = revision;
    this.epoch++;
    this.pending = undefined;
    for (const r of [...this.readers]) if (revision > r.after) r.settle("changed");
  }
}

/**
 * Node: one watch per line per instance, shared by all its blocked readers (1,000
 * readers of a lock cost one watch), and one read per change for all the readers it
 * woke. The watch is kept `lingerMs` after its last reader, so a reader looping on the
 * index it was answered with finds it still there.
 */
export class SharedLineChanges implements LineChanges {
  private readonly watches = new Map<string, LineChangeWatch>();
  private readonly idle = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(
    private readonly etcd: EtcdClient,
    private readonly lingerMs = 5_000,
  ) {}

  async awaitChange(range: LineRange, after: number, signal: AbortSignal): Promise<ChangeOutcome> {
    let watch = this.watches.get(range.start);
    if (!watch || watch.closed) {
      const created: LineChangeWatch = new LineChangeWatch(this.etcd, range, after, () => {
        if (this.watches.get(range.start) === created) this.watches.delete(range.start);
        clearTimeout(this.idle.get(range.start));
        this.idle.delete(range.start);
      });
      watch = created;
      this.watches.set(range.start, watch);
    }
    clearTimeout(this.idle.get(range.start));
    this.idle.delete(range.start);
    try {
      return await watch.awaitChange(after, signal);
    } finally {
      if (watch.blocked === 0 && !watch.closed) this.linger(range.start, watch);
    }
  }

  share<T>(range: LineRange, read: () => Promise<T>): Promise<T> {
    const watch = this.watches.get(range.start);
    if (!watch || watch.closed) return read();
    const pending = watch.pending;
    if (pending && pending.epoch === watch.epoch) return pending.promise as Promise<T>;
    const promise = read();
    const entry = { epoch: watch.epoch, promise };
    watch.pending = entry;
    const clear = () => {
      if (watch.pending === entry) watch.pending = undefined;
    };
    // A failed read is not kept for the next caller.
    promise.then(clear, clear);
    return promise;
  }

  private linger(start: string, watch: LineChangeWatch): void {
    clearTimeout(this.idle.get(start));
    const timer = setTimeout(() => {
      this.idle.delete(start);
      if (watch.blocked === 0) watch.close();
    }, this.lingerMs);
    (timer as { unref?: () => void }).unref?.();
    this.idle.set(start, timer);
  }
}

/**
 * Workers: a watch per blocked reader (I/O one request started cannot be awaited by
 * another there), from the reader's own revision, ended at the first change.
 */
export class ChangesPerReader implements LineChanges {
  constructor(private readonly etcd: EtcdClient) {}

  async awaitChange(range: LineRange, after: number, signal: AbortSignal): Promise<ChangeOutcome> {
    if (signal.aborted) return "aborted";
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let changed = false;
    try {
      const end = await this.etcd.watchRange(
        range.start,
        range.end,
        after + 1,
        () => {
          changed = true;
          stop.abort();
        },
        stop.signal,
      );
      if (changed) return "changed";
      return end === "compacted" ? "unknown" : "aborted";
    } finally {
      signal.removeEventListener("abort", onAbort);
      stop.abort();
    }
  }

  share<T>(_range: LineRange, read: () => Promise<T>): Promise<T> {
    return read();
  }
}
