import { delay } from "../timers.js";
import { EtcdUnavailableError, type WatchEnd } from "./types.js";

/**
 * Where a `watchDeletes` stands: every DELETE before `next` has been reported. A stream is
 * (re)opened from `next`, never from the revision in a "created" answer: that one is the
 * store's revision when etcd took the watch and can run ahead of history etcd has not
 * delivered yet, so resuming from it would skip DELETEs.
 */
export class WatchCursor {
  constructor(
    public next: number,
    private readonly onDelete: (revision: number) => void,
    private readonly stop: AbortSignal,
  ) {}

  /** One DELETE of the key; nothing is reported once the watch was stopped. */
  report(revision: number): void {
    if (this.stop.aborted) return;
    this.next = revision + 1;
    this.onDelete(revision);
  }
}

/**
 * How a transport opens one watch stream on the key from `cursor.next` and reports each
 * DELETE through `cursor.report`, in order. It resolves "broken" when a stream etcd had
 * established ended (a member restart, a proxy's idle timeout), "compacted" when etcd
 * canceled the watch because `cursor.next` was compacted away, and "aborted" once `stop`
 * fires. It rejects when the stream cannot be established within the call deadline
 * (EtcdUnavailableError) or etcd refuses the watch.
 */
export type OpenWatchStream = (cursor: WatchCursor, stop: AbortSignal) => Promise<WatchEnd | "broken">;

/**
 * The watches a client has open, each kept alive across broken streams, so that closing
 * the client ends them all. One loop serves both transports; each supplies only how to
 * open one stream.
 */
export class WatchLoops {
  private readonly stops = new Set<() => void>();

  /** @param timeoutMs how long etcd may take to take a broken watch back */
  constructor(private readonly timeoutMs: number) {}

  /** The `EtcdClient.watchDeletes` contract over `open`. */
  async run(
    fromRevision: number,
    onDelete: (revision: number) => void,
    signal: AbortSignal,
    open: OpenWatchStream,
  ): Promise<WatchEnd> {
    if (signal.aborted) return "aborted";
    const stop = new AbortController();
    const end = () => stop.abort();
    signal.addEventListener("abort", end, { once: true });
    this.stops.add(end);
    const cursor = new WatchCursor(fromRevision, onDelete, stop.signal);
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
