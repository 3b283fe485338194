/** One watch stream over the gateway's `/v3/watch`, for the shared watch loop. */

import { untilDeadline } from "../../timers.js";
import { EtcdUnavailableError, type WatchEnd } from "../types.js";
import type { OpenWatchStream, WatchCursor, WatchTarget } from "../watch-loop.js";
import {
  decodeGatewayError,
  decodeWatchResult,
  EtcdGatewayError,
  errorInfo,
  isUnavailable,
  type Json,
} from "./codec.js";
import { encodeWatch } from "./requests.js";
import { describeError, type GatewaySession, StaleTokenError, type Token } from "./session.js";

/** Opens watch streams on `target` with `fetch` (which can read a response as it arrives). */
export function gatewayWatchStream(
  session: GatewaySession,
  fetch: typeof globalThis.fetch,
  target: WatchTarget,
): OpenWatchStream {
  return (cursor, stop) => session.withToken((used) => watchOnce(session, fetch, target, cursor, stop, used));
}

/**
 * One watch connection from `cursor.next`. Establishing it (etcd's "created" answer) is
 * bounded by the call deadline; after that only `stop` ends it, or etcd or the network
 * breaking it ("broken": the loop opens it again).
 */
async function watchOnce(
  session: GatewaySession,
  fetch: typeof globalThis.fetch,
  target: WatchTarget,
  cursor: WatchCursor,
  stop: AbortSignal,
  used: Token,
): Promise<WatchEnd | "broken"> {
  if (stop.aborted) return "aborted";
  const deadline = untilDeadline(Date.now() + session.timeoutMs, stop);
  const signal = deadline.signal;
  let established = false;
  try {
    const init = {
      method: "POST",
      headers: session.headers(used),
      body: JSON.stringify(encodeWatch(target, cursor.next)),
      signal,
    };
    const { res, origin } = await session.rotate(
      async (ep) => ({ res: await fetch(`${ep.base}/v3/watch`, init), origin: ep.origin }),
      signal,
    );
    if (res.status !== 200 || !res.body) {
      const err = decodeGatewayError(res.status, await res.text());
      if (isUnavailable(res.status, err.code)) {
        throw new EtcdUnavailableError(`etcd at ${origin} is unavailable: ${err.message}`);
      }
      const refused = new EtcdGatewayError(`etcd watch failed: ${err.message}`, err.code, res.status);
      throw session.refusal(used, err.message, refused);
    }
    for await (const line of lines(res.body)) {
      const msg = JSON.parse(line) as Json;
      const streamErr = errorInfo(msg);
      if (streamErr) {
        // The member is going away: the stream broke.
        if (streamErr.code === undefined || isUnavailable(0, streamErr.code)) break;
        throw new EtcdGatewayError(`etcd watch failed: ${streamErr.message}`, streamErr.code, res.status);
      }
      const m = decodeWatchResult((msg.result ?? {}) as Json);
      if (m.kind === "events") {
        cursor.reportAll(m.events);
      } else if (m.kind === "compacted") {
        return "compacted";
      } else if (m.kind === "canceled") {
        // etcd reports a bad token on a watch as a cancellation, not as an HTTP error.
        const canceled = new EtcdGatewayError(`etcd canceled the watch: ${m.reason}`, undefined, res.status);
        throw session.refusal(used, m.reason, canceled);
      } else if (m.kind === "created" && !established) {
        established = true;
        deadline.stopClock();
      }
    }
    if (stop.aborted) return "aborted";
    if (established) return "broken";
    throw new EtcdUnavailableError(`etcd at ${origin} closed the watch stream before it was established`);
  } catch (err) {
    // The caller's stop wins over everything, then a refusal, then the deadline.
    if (stop.aborted) return "aborted";
    if (err instanceof EtcdGatewayError || err instanceof StaleTokenError) throw err;
    if (established) return "broken";
    if (deadline.expired) {
      throw new EtcdUnavailableError(
        `etcd did not establish the watch within ${session.timeoutMs} ms (${session.origins})`,
      );
    }
    if (err instanceof EtcdUnavailableError) throw err;
    throw new EtcdUnavailableError(`etcd watch failed: ${describeError(err)}`);
  } finally {
    deadline.done();
    deadline.abort();
  }
}

/** Splits a byte stream into non-empty lines. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) yield line;
        nl = buf.indexOf("\n");
      }
    }
    const rest = (buf + decoder.decode()).trim();
    if (rest) yield rest;
  } finally {
    // Closes the connection when the consumer stops early.
    reader.cancel().catch(() => {});
  }
}
