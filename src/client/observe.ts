/**
 * `observe`: the service's event stream (`GET /events`, Server-Sent Events) as an async
 * iterator that reconnects on its own, resuming with `Last-Event-ID` so that a dropped
 * connection loses no event. Plain fetch streaming, so it runs on Node, Workers, Deno,
 * Bun and in browsers.
 */
import { describe, LeaseholdError, problemError } from "./errors.js";
import { type SseEvent, SseParser } from "./sse.js";
import { backoff, sleep } from "./timing.js";

/**
 * A lock (or a semaphore permit) was granted, or its holder published a new value (same
 * `token`): `token` is the grant's fencing token.
 */
export interface HeldEvent {
  type: "held";
  /** The SSE event id: pass it as `after` to resume after this event. */
  id: string;
  /** The etcd revision of the change (the id as a number). */
  revision: number;
  kind: "lock" | "semaphore";
  name: string;
  token: number;
  owner?: string;
  /** The value the holder published (leader election: what the leader says). */
  value?: string;
  /** The TTL the grant was given, in seconds. */
  ttl: number;
}

/** A grant ended (released, expired or forced): `token` is the one that ended. */
export interface FreeEvent {
  type: "free";
  id: string;
  revision: number;
  kind: "lock" | "semaphore";
  name: string;
  token: number;
}

/**
 * The stream starts over from the current state: forget what you knew; a `held` event
 * for every current holder follows (at the same revision). `reason`: `start` (a new
 * stream), `compacted` (the history to resume from is gone: events were missed),
 * `ahead` (the resume point is newer than etcd's revision: another or a restored cluster).
 */
export interface ResetEvent {
  type: "reset";
  id: string;
  revision: number;
  reason: "start" | "compacted" | "ahead" | (string & {});
}

export type LeaseholdEvent = HeldEvent | FreeEvent | ResetEvent;

export interface ObserveOptions {
  /** Stops the stream: the iteration then ends (no rejection). */
  signal?: AbortSignal;
  /**
   * Resume after this event id (an earlier event's `id`). Default: a new stream, which
   * starts with a `reset` and the current holders.
   */
  after?: string;
  /** Only locks or only semaphores (default: both). */
  kind?: "lock" | "semaphore";
  /**
   * Ms with nothing at all from the service (no event, no heartbeat) after which the
   * connection counts as dead and is reopened. Default 45 000 (the service sends a
   * heartbeat more often).
   */
  idleMs?: number;
  /**
   * How long (ms) to keep reconnecting while the service can't be reached or answers
   * 429/5xx; then the iteration rejects with the last error. Default: forever. Refusals
   * that can't heal (401, 403, 400) reject at once.
   */
  retryMs?: number;
  /** Called before each reconnect with what ended the connection and the delay (ms) before the next try. */
  onRetry?: (error: LeaseholdError, delayMs: number) => void;
}

/** Opens one connection to the stream, sending `lastEventId` (when not empty) as `Last-Event-ID`. */
export type Connect = (lastEventId: string, signal: AbortSignal) => Promise<Response>;

/** What `observe` returns: an async iterator of events that also tells the last event id seen. */
export class EventStream implements AsyncIterableIterator<LeaseholdEvent> {
  readonly #controller = new AbortController();
  readonly #events: AsyncGenerator<LeaseholdEvent, undefined>;
  readonly #unlink: () => void;
  #lastEventId: string;

  constructor(connect: Connect, filter: (e: LeaseholdEvent) => boolean, o: ObserveOptions & { timeoutMs: number }) {
    this.#lastEventId = o.after ?? "";
    const outer = o.signal;
    const onAbort = () => this.#controller.abort(outer?.reason);
    if (outer?.aborted) onAbort();
    else outer?.addEventListener("abort", onAbort, { once: true });
    this.#unlink = () => outer?.removeEventListener("abort", onAbort);
    this.#events = this.#run(connect, filter, o);
  }

  /** The id of the last event the service sent (what a reconnect resumes after); "" before any. */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  next(): Promise<IteratorResult<LeaseholdEvent, undefined>> {
    return this.#events.next();
  }

  /** Closes the connection and ends the iteration (what `break` in a for-await loop calls). */
  async return(): Promise<IteratorResult<LeaseholdEvent, undefined>> {
    this.#controller.abort();
    return this.#events.return(undefined);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async *#run(
    connect: Connect,
    filter: (e: LeaseholdEvent) => boolean,
    o: ObserveOptions & { timeoutMs: number },
  ): AsyncGenerator<LeaseholdEvent, undefined> {
    const signal = this.#controller.signal;
    const idleMs = o.idleMs ?? 45_000;
    let failures = 0;
    let failingSince: number | undefined;
    let serverRetryMs: number | undefined;
    try {
      while (!signal.aborted) {
        let error: LeaseholdError;
        const queue: LeaseholdEvent[] = [];
        // The events of one etcd revision arrive together and only the last carries the id:
        // they are held back until it comes, so a resume never splits a revision.
        let group: SseEvent[] = [];
        const parser = new SseParser(this.#lastEventId, {
          event: (e) => {
            group.push(e);
            if (!e.hasId) return;
            for (const member of group) {
              const event = toEvent(member.event, e.id, member.data);
              if (event && filter(event)) queue.push(event);
            }
            group = [];
          },
          retry: (ms) => {
            serverRetryMs = ms;
          },
        });
        const connection = new AbortController();
        const stop = () => connection.abort();
        signal.addEventListener("abort", stop, { once: true });
        let timer: ReturnType<typeof setTimeout> | undefined;
        let timedOut = false;
        const arm = (ms: number) => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            timedOut = true;
            connection.abort();
          }, ms);
        };
        let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
        try {
          arm(o.timeoutMs);
          let res: Response;
          try {
            res = await connect(this.#lastEventId, connection.signal);
          } catch (err) {
            throw timedOut
              ? new LeaseholdError("timeout", `GET /events: no answer within ${o.timeoutMs} ms`)
              : new LeaseholdError("network-error", `GET /events: the service did not answer: ${describe(err)}`, {
                  cause: err,
                });
          }
          if (!res.ok) {
            const text = await res.text().catch(() => "");
            throw problemError("GET", "/events", res, parseJson(text));
          }
          const type = res.headers.get("content-type") ?? "";
          if (!type.startsWith("text/event-stream") || !res.body) {
            await res.body?.cancel().catch(() => {});
            throw new LeaseholdError(
              "invalid-response",
              `GET /events: answered ${type || "no content type"}, not an event stream`,
              {
                status: res.status,
              },
            );
          }
          reader = res.body.getReader();
          const decoder = new TextDecoder();
          for (;;) {
            arm(idleMs);
            let chunk: ReadableStreamReadResult<Uint8Array>;
            try {
              chunk = await reader.read();
            } catch (err) {
              throw timedOut
                ? new LeaseholdError("timeout", `GET /events: nothing from the service for ${idleMs} ms`)
                : new LeaseholdError("network-error", `GET /events: the stream broke: ${describe(err)}`, {
                    cause: err,
                  });
            }
            clearTimeout(timer);
            if (chunk.done) break;
            // Anything at all (a heartbeat included) shows the connection works.
            failures = 0;
            failingSince = undefined;
            parser.push(decoder.decode(chunk.value, { stream: true }));
            // Only ids of whole events count: a reconnect resumes after the last event dispatched.
            while (queue.length > 0) {
              const event = queue.shift() as LeaseholdEvent;
              this.#lastEventId = event.id;
              yield event;
            }
            this.#lastEventId = parser.lastEventId || this.#lastEventId;
          }
          error = new LeaseholdError("network-error", "GET /events: the service ended the stream");
        } catch (err) {
          if (signal.aborted) return undefined;
          if (!(err instanceof LeaseholdError)) throw err;
          if (!(err.transient || err.code === "network-error")) throw err;
          error = err;
        } finally {
          clearTimeout(timer);
          signal.removeEventListener("abort", stop);
          connection.abort();
          reader?.cancel().catch(() => {});
        }
        failingSince ??= Date.now();
        const delay =
          error.retryAfter !== undefined
            ? backoff(0, 0, error.retryAfter)
            : Math.max(serverRetryMs ?? 0, backoff(failures++, 5_000));
        if (o.retryMs !== undefined && Date.now() + delay - failingSince > o.retryMs) throw error;
        o.onRetry?.(error, delay);
        try {
          await sleep(delay, signal);
        } catch {
          return undefined;
        }
      }
      return undefined;
    } finally {
      this.#unlink();
    }
  }
}

/** The typed event for one SSE event; `undefined` for kinds this client does not know. */
function toEvent(kind: string, id: string, data: string): LeaseholdEvent | undefined {
  if (kind !== "held" && kind !== "free" && kind !== "reset") return undefined;
  const body = parseJson(data);
  const fields = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const revision = Number(id);
  // type, id and revision first (and never overridden by the data), for readable JSON.
  const own = { type: kind, id, revision };
  if (kind === "reset") return { ...own, reason: "", ...fields, ...own } as unknown as ResetEvent;
  if (typeof fields.name !== "string" || typeof fields.token !== "number") return undefined;
  return { ...own, kind: "lock", ...fields, ...own } as unknown as HeldEvent | FreeEvent;
}

function parseJson(text: string): unknown {
  try {
    return text.trim() === "" ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}
