/** One watch stream over etcd3's shared gRPC watch stream, for the shared watch loop. */

import type { Etcd3, IWatchResponse, Watcher } from "etcd3";
import { Deadline } from "../../timers.js";
import { EtcdUnavailableError, type WatchEnd } from "../types.js";
import type { OpenWatchStream, WatchCursor, WatchTarget } from "../watch-loop.js";
import { toEvent, translate } from "./codec.js";

type Outcome = WatchEnd | "broken" | { error: Error };

/**
 * etcd3 runs all of a client's watches on one gRPC stream, which carries the auth token
 * it was opened with. etcd checks that token each time a watch is added, and once it no
 * longer takes it (a simple token expires after minutes without use; turning auth off
 * and on drops every token) it cancels every new watch. etcd3 renews the token of unary
 * calls, not the stream's; worse, a watch refused that way leaves etcd3's queue of
 * watches to attach stuck, so no later watch of the client is ever established. The
 * way out is a new stream, opened with a token that etcd takes.
 */
export class WatchStreamRenewal {
  /** Counts the streams opened by `renew`, so that one refused stream is renewed once. */
  private generation = 0;

  /** @param reauthenticate a unary read of `key` (etcd3 renews a stale token on those) */
  constructor(
    private readonly client: Etcd3,
    private readonly reauthenticate: (key: string) => Promise<unknown>,
  ) {}

  get current(): number {
    return this.generation;
  }

  /**
   * The stream of `generation` had its token refused: a fresh token first, then a new
   * stream (unless one was opened since). Watches established on the old stream see it
   * break, and the loop reopens them from where they stood. `false` when this etcd3 has
   * no way to do it.
   */
  async renew(generation: number, key: string): Promise<boolean> {
    await this.reauthenticate(key);
    if (generation !== this.generation) return true;
    // etcd3 has no public way to reopen the stream. Its own handler of a failed stream
    // does exactly that: cancels it, tells the watches, and opens a new one.
    const manager = (this.client as unknown as { watchManager?: { handleError?: (err: Error) => void } }).watchManager;
    if (typeof manager?.handleError !== "function") return false;
    this.generation++;
    manager.handleError(new Error("etcd refused the watch stream's auth token"));
    return true;
  }
}

/** Opens watchers on `target`, on the client's shared stream (renewed by `renewal`). */
export function grpcWatchStream(
  client: Etcd3,
  renewal: WatchStreamRenewal,
  target: WatchTarget,
  timeoutMs: number,
): OpenWatchStream {
  /** When this watch last had its stream renewed: a refusal right after means the fresh token was refused too. */
  let renewedAt = Number.NEGATIVE_INFINITY;
  return async (cursor, stop) => {
    const generation = renewal.current;
    const r = await watchConnection(client, target, cursor, stop, timeoutMs);
    if (typeof r === "string") return r;
    const stale = /auth token|Unauthenticated/i.test(r.error.message);
    if (stale && Date.now() - renewedAt > timeoutMs && (await renewal.renew(generation, target.key))) {
      renewedAt = Date.now();
      return "broken";
    }
    throw translate(r.error, "watch");
  };
}

/**
 * One etcd3 watcher from `cursor.next`. Settles "broken" when the shared watch stream
 * drops after the watcher was established: etcd3 would re-attach it by itself, but from
 * the revision of its "created" response, which skips history not delivered yet; the
 * loop reopens it from the cursor instead.
 */
async function watchConnection(
  client: Etcd3,
  target: WatchTarget,
  cursor: WatchCursor,
  stop: AbortSignal,
  timeoutMs: number,
): Promise<Outcome> {
  if (stop.aborted) return "aborted";
  let settle: (o: Outcome) => void = () => {};
  const outcome = new Promise<Outcome>((resolve) => {
    settle = resolve;
  });
  const onAbort = () => settle("aborted");
  stop.addEventListener("abort", onAbort, { once: true });
  let watcher: Watcher | undefined;
  let live = true;
  let connected = false;
  let canceled = false;
  try {
    const builder = client.watch();
    if (target.end === undefined) builder.key(target.key);
    else builder.inRange({ start: target.key, end: target.end });
    if (target.deletesOnly) builder.only("delete");
    if (target.prevKv) builder.withPreviousKV();
    watcher = builder.startRevision(String(cursor.next)).watcher();
    // The whole response, so that one revision's events are reported together. A
    // cancelled watcher stays attached until etcd confirms; it must not report then.
    watcher.on("data", (res: IWatchResponse) => live && cursor.reportAll(res.events.map(toEvent)));
    // etcd cancels a watch when its start revision was compacted (etcd 3.4 gives no
    // reason then) or, with auth on, when its token is no longer valid.
    watcher.on("error", (err: Error) => {
      canceled = true;
      settle(/auth|permission/i.test(err.message) ? { error: err } : "compacted");
    });
    // Before the watcher is established etcd3 retries the stream itself; the deadline decides.
    watcher.on("disconnected", () => connected && settle("broken"));
    const established = new Promise<"connected">((resolve) =>
      watcher?.once("connected", () => {
        connected = true;
        resolve("connected");
      }),
    );
    const deadline = new Deadline(Date.now() + timeoutMs);
    try {
      await deadline.race(
        Promise.race([established, outcome]),
        () => new EtcdUnavailableError(`etcd watch was not established within ${timeoutMs} ms`),
      );
    } finally {
      deadline.done();
    }
    return await outcome;
  } finally {
    live = false;
    stop.removeEventListener("abort", onAbort);
    // Cancelling talks to etcd; never make the caller wait for it. A watch etcd has
    // canceled itself must not be canceled again: etcd would confirm that, and etcd3
    // throws on a reply for a watcher it has already dropped.
    if (!canceled) watcher?.cancel().catch(() => {});
  }
}
