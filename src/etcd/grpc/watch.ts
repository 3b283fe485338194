/** One watch stream over etcd3's shared gRPC watch stream, for the shared watch loop. */

import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { Deadline, delay } from "../../timers.js";
import { EtcdUnavailableError, type GetResult, type WatchEnd } from "../types.js";
import type { OpenWatchStream, WatchCursor } from "../watch-loop.js";
import { translate } from "./codec.js";

type Outcome = WatchEnd | "broken" | { error: Error };

/** Opens watchers on `key`; `get` is the client's linearizable read (for the polling fallback). */
export function grpcWatchStream(
  client: Etcd3,
  get: (key: string) => Promise<GetResult>,
  key: string,
  timeoutMs: number,
): OpenWatchStream {
  return async (cursor, stop) => {
    const r = await watchConnection(client, key, cursor, stop, timeoutMs);
    if (typeof r === "string") return r;
    // etcd cancels a watch whose auth token expired. etcd3 re-authenticates unary calls
    // but not its shared watch stream, so the watch cannot be renewed here: fall back to
    // polling the key, which unary calls keep authenticated.
    if (/auth token|Unauthenticated/i.test(r.error.message)) return pollDeletes(get, key, cursor, stop);
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
  key: string,
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
    watcher = client.watch().key(key).startRevision(String(cursor.next)).only("delete").watcher();
    // A cancelled watcher stays attached until etcd confirms; it must not report then.
    watcher.on("delete", (kv: IKeyValue) => live && cursor.report(Number(kv.mod_revision)));
    // etcd cancels a single-key watch when its start revision was compacted (etcd 3.4
    // gives no reason then) or, with auth on, when its token is no longer valid.
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

/**
 * Reports DELETEs like a watch would, by reading the key every 250 ms: a DELETE is
 * reported (at the read's revision) when the key seen last is gone or was re-created.
 */
async function pollDeletes(
  get: (key: string) => Promise<GetResult>,
  key: string,
  cursor: WatchCursor,
  stop: AbortSignal,
): Promise<WatchEnd> {
  // Create revision of the key at the last read, undefined when it was absent. The
  // caller watches from right after a read that saw the key, so at first the key seen is
  // one created before `cursor.next`.
  let seen: number | undefined = cursor.next - 1;
  for (;;) {
    if (stop.aborted) return "aborted";
    const { kv, revision } = await get(key);
    if (stop.aborted) return "aborted";
    const created = kv?.createRevision;
    if (seen !== undefined && (created === undefined || created > seen)) cursor.report(revision);
    seen = created;
    await delay(250, stop);
  }
}
