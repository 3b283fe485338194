import { delay } from "../timers.js";
import { EtcdUnavailableError, type WatchEnd, type WatchEvent } from "./types.js";

/** What one watch covers: `key` alone (no `end`) or the keys in [key, end). */
export interface WatchTarget {
  key: string;
  end?: string;
  /** Ask etcd for DELETEs only (its NOPUT filter). */
  deletesOnly?: boolean;
  /** Ask etcd for each event's previous version of the key. */
  prevKv?: boolean;
}

/** The revision an event happened at (a PUT's mod revision is its revision). */
export const eventRevision = (e: WatchEvent): number => (e.type === "put" ? e.kv.modRevision : e.revision);

/**
 * Where a watch stands: every revision before `next` has been reported. A stream is
 * (re)opened from `next`, never from the revision in a "created" answer: that one is the
 * store's revision when etcd took the watch and can run ahead of history etcd has not
 * delivered yet, so resuming from it would skip events.
 */
export class WatchCursor {
  constructor(
    public next: number,
    private readonly onEvents: (revision: number, events: WatchEvent[]) => void,
    private readonly stop: AbortSignal,
  ) {}

  /**
   * One revision's events, all of them; nothing is reported once the watch was stopped,
   * nor a revision reported already.
   */
  report(revision: number, events: WatchEvent[]): void {
    if (this.stop.aborted || revision < this.next) return;
    this.next = revision + 1;
    this.onEvents(revision, events);
  }

  /**
   * Events in revision order, as one etcd watch response carries them: each revision's
   * reported together. etcd never splits one revision's events over two responses (it
   * batches history at revision boundaries, and fragments only when asked to).
   */
  reportAll(events: WatchEvent[]): void {
    let start = 0;
    for (let i = 1; i <= events.length; i++) {
      const revision = eventRevision(events[start] as WatchEvent);
      if (i < events.length && eventRevision(events[i] as WatchEvent) === revision) continue;
      this.report(revision, events.slice(start, i));
      start = i;
    }
  }
}

/**
 * How a transport opens one watch stream from `cursor.next` and reports each revision's
 * events through the cursor, in order. It resolves "broken" when a stream etcd had
 * established ended (a member restart, a proxy's idle timeout), "compacted" when etcd
 * canceled the watch because `cursor.next` was compacted away, and "aborted" once `stop`
 * fires. It rejects when the stream cannot be established within the call deadline
 * (EtcdUnavailableError) or etcd refuses the watch.
 */
export type OpenWatchStream = (cursor: WatchCursor, stop: AbortSignal) => Promise<WatchEnd | "broken">;

/** `watchDeletes`' callback over a watch of one key's DELETEs: one DELETE per revision at most. */
export function onDeletes(onDelete: (revision: number) => void): (revision: number, events: WatchEvent[]) => void {
  return (revision, events) => {
    if (events.some((e) => e.type === "delete")) onDelete(revision);
  };
}

/**
 * The watches a client has open, each kept alive across broken streams, so that closing
 * the client ends them all. One loop serves both transports and both kinds of watch
 * (`watchDeletes`, `watchRange`); each supplies only how to open one stream.
 */
export class WatchLoops {
  private readonly stops = new Set<() => void>();

  /** @param timeoutMs how long etcd may take to take a broken watch back */
  constructor(private readonly timeoutMs: number) {}

  /** The `EtcdClient.watchRange` contract (and so `watchDeletes`') over `open`. */
  async run(
    fromRevision: number,
    onEvents: (revision: number, events: WatchEvent[]) => void,
    signal: AbortSignal,
    open: OpenWatchStream,
  ): Promise<WatchEnd> {
    if (signal.aborted) return "aborted";
    const stop = new AbortController();
    const end = () => stop.abort();
    signal.addEventListener("abort", end, { once: true });
    this.stops.add(end);
    const cursor = new WatchCursor(fromRevision, onEvents, stop.signal);
    try {
      /** Once a stream broke: until when etcd may take to take the watch back. */
      let reopenBy: number | undefined;
      for (;;) {
        if (stop.signal.aborted) return "aborted";
        let r: WatchEnd | "broken";
        try {
          r = await open(cursor, stop.signal);
        } catch (err) {
          if (stop.signal.aborted) return "aborted";
          // A member restart or a proxy's idle timeout is not a failure of an established
          // watch: it is reopened until the deadline. A watch never established fails at once.
          if (!(err instanceof EtcdUnavailableError) || reopenBy === undefined || Date.now() >= reopenBy) throw err;
          await delay(Math.min(250, reopenBy - Date.now()), stop.signal);
          continue;
        }
        if (r !== "broken") return r;
        reopenBy = Date.now() + this.timeoutMs;
      }
    } finally {
      signal.removeEventListener("abort", end);
      this.stops.delete(end);
    }
  }

  /** Ends every open watch with "aborted". */
  close(): void {
    for (const end of [...this.stops]) end();
  }
}
