/**
 * leasehold/client: a fetch-based client for the leasehold HTTP API.
 *
 * No runtime dependencies and no Node APIs: it runs wherever `fetch`, `AbortController`
 * and `setTimeout` exist (Node 18+, Cloudflare Workers, Deno, Bun, browsers). The types
 * come from the server's own zod schemas through `import type`, so no server code is
 * loaded at run time.
 */
import type { z } from "@hono/zod-openapi";
import type {
  Grant as GrantSchema,
  LockHeldProblem as LockHeldProblemSchema,
  LockInfo as LockInfoSchema,
  LockList as LockListSchema,
  ProblemBody as ProblemSchema,
} from "../http/schemas.js";
import type { ProblemCode } from "../problems.js";

/** What acquire and renew return: `token` is the fencing token, `lease` the holder's secret. */
export type Grant = z.output<typeof GrantSchema>;
/** What anyone may see about a held lock (no lease). `ttl` is the remaining seconds. */
export type LockInfo = z.output<typeof LockInfoSchema>;
/** A page of held locks; `cursor` is present when more remain. */
export type LockList = z.output<typeof LockListSchema>;
/** Who holds a lock, as a 409 `lock-held` problem reports it. */
export type Holder = z.output<typeof LockHeldProblemSchema>["holder"];
/** An RFC 9457 problem body as the service sends it. */
export type Problem = z.output<typeof ProblemSchema> & { holder?: Holder; [extension: string]: unknown };

/**
 * Why a call failed: a problem `code` from the service, or one of the client's own:
 * `network-error` (no answer), `timeout` (no answer in time), `invalid-response`
 * (an answer that is not what the API promises), `lock-expired` (withLock saw no
 * successful renew before its own deadline).
 */
export type LeaseholdErrorCode =
  | ProblemCode
  | "network-error"
  | "timeout"
  | "invalid-response"
  | "lock-expired"
  | (string & {});

export class LeaseholdError extends Error {
  override name = "LeaseholdError";
  /** The problem's `code`, or a client-side code (see `LeaseholdErrorCode`). */
  readonly code: LeaseholdErrorCode;
  /** HTTP status; `0` when no HTTP answer was received. */
  readonly status: number;
  /** The problem body when the service sent one. */
  readonly problem: Problem | undefined;
  /** Seconds from `Retry-After`, when the answer had one. */
  readonly retryAfter: number | undefined;

  constructor(
    code: LeaseholdErrorCode,
    message: string,
    o: { status?: number; problem?: Problem; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.code = code;
    this.status = o.status ?? 0;
    this.problem = o.problem;
    this.retryAfter = o.retryAfter;
  }

  /** Worth retrying: no answer, a timeout, or the service asking to come back later. */
  get transient(): boolean {
    return this.code === "network-error" || this.code === "timeout" || [429, 502, 503, 504].includes(this.status);
  }
}

export const DEFAULT_URL = "http://127.0.0.1:8080";

export interface ClientOptions {
  /** Base URL of the service. Default: `LEASEHOLD_URL` where an environment exists, else `http://127.0.0.1:8080`. */
  url?: string;
  /** Sent as `Authorization: Bearer <apiKey>`. Default: `LEASEHOLD_API_KEY` where an environment exists. */
  apiKey?: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Deadline of each request in ms, on top of an acquire's `wait`. Default 15 000. */
  timeoutMs?: number;
}

export interface RequestOptions {
  /** Aborting it abandons the call; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
}

export interface AcquireOptions extends RequestOptions {
  /** Lease TTL in seconds (service default 30). */
  ttl?: number;
  /** Seconds to wait for a held lock (fractions allowed; default 0). */
  wait?: number;
  /** Free text shown to others. */
  owner?: string;
  /** Sent as `Idempotency-Key` on every attempt. Default: a random UUID per call. */
  idempotencyKey?: string;
  /**
   * How long (ms) to keep retrying, with jittered backoff, when there is no answer or the
   * service answers 429/502/503/504; counted after `wait`. Every retry carries the same
   * `Idempotency-Key`, so a retry after a lost response gets the same grant. 0 = one
   * attempt. Default 10 000.
   */
  retryMs?: number;
}

export interface ListOptions extends RequestOptions {
  prefix?: string;
  /** 1–1000 (service default 100). */
  limit?: number;
  cursor?: string;
}

export interface WithLockOptions extends Omit<AcquireOptions, "timeoutMs"> {
  /**
   * Safety margin in ms: the lock counts as lost at (send time of the last successful
   * acquire or renew) + ttl − margin. Default: ttl/10, at most 2 s.
   */
  marginMs?: number;
  /** `false` leaves the lock to expire on its own (one ttl after the last renew) instead of releasing it. */
  release?: boolean;
}

/** The lock as `withLock` hands it to your function. */
export interface HeldLock {
  readonly name: string;
  /** Fencing token: pass it with every write to the protected resource. */
  readonly token: number;
  readonly lease: string;
  /** The latest grant (renewals update `expiresAt`). */
  readonly grant: Grant;
  /** Fires when the lock is lost, or when the caller's `signal` fires; `reason` says why. */
  readonly signal: AbortSignal;
  /** Epoch ms (this machine's clock) until which the lock is known to be held. */
  readonly validUntil: number;
}

export class LeaseholdClient {
  readonly url: string;
  readonly #apiKey: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;

  constructor(o: ClientOptions = {}) {
    this.url = (o.url ?? env("LEASEHOLD_URL") ?? DEFAULT_URL).replace(/\/+$/, "");
    this.#apiKey = o.apiKey ?? env("LEASEHOLD_API_KEY");
    this.#fetch = o.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = o.timeoutMs ?? 15_000;
  }

  /** Takes the lock (waiting up to `wait` s), retrying transient failures with one Idempotency-Key. */
  async acquire(name: string, o: AcquireOptions = {}): Promise<Grant> {
    return (await this.acquireTimed(name, o)).grant;
  }

  /**
   * `acquire`, also telling the earliest time (epoch ms) the grant's lease can have
   * started: the send time of the attempt that created it. Count expiry from there.
   */
  async acquireTimed(name: string, o: AcquireOptions = {}): Promise<{ grant: Grant; since: number }> {
    const key = o.idempotencyKey ?? (await randomUUID());
    const start = Date.now();
    const waitEnd = start + (o.wait ?? 0) * 1000;
    const giveUpAt = waitEnd + (o.retryMs ?? 10_000);
    let firstSent: number | undefined;
    for (let attempt = 0; ; attempt++) {
      const sent = Date.now();
      firstSent ??= sent;
      const wait = o.wait === undefined ? undefined : Math.max(0, waitEnd - sent) / 1000;
      try {
        const res = await this.#call("POST", lockPath(name), {
          ...(o.signal ? { signal: o.signal } : {}),
          timeoutMs: (o.timeoutMs ?? this.#timeoutMs) + (wait ?? 0) * 1000,
          headers: { "idempotency-key": key },
          json: defined({ ttl: o.ttl, owner: o.owner, wait: wait === undefined ? undefined : round3(wait) }),
        });
        const grant = asGrant(res.body);
        // 201: created by this attempt. 200: a replay of an earlier attempt's grant.
        return { grant, since: res.status === 200 ? firstSent : sent };
      } catch (err) {
        if (!(err instanceof LeaseholdError && (err.transient || err.code === "invalid-response"))) throw err;
        const delay = backoff(attempt, 2_000, err.retryAfter);
        if (Date.now() + delay > giveUpAt) throw err;
        await sleep(delay, o.signal);
      }
    }
  }

  /** Resets the lease to its granted TTL. Same token; 410 `lock-lost` when it is no longer yours. */
  async renew(name: string, lease: string, o: RequestOptions = {}): Promise<Grant> {
    const res = await this.#call("PUT", `${lockPath(name)}/renew`, { ...o, json: { lease } });
    return asGrant(res.body);
  }

  /** Releases the lock; 410 `lock-lost` when it is no longer yours. */
  async release(name: string, lease: string, o: RequestOptions = {}): Promise<void> {
    await this.#call("DELETE", lockPath(name), { ...o, json: { lease } });
  }

  /** Who holds the lock, or `undefined` when nobody does. */
  async inspect(name: string, o: RequestOptions = {}): Promise<LockInfo | undefined> {
    try {
      return (await this.#call("GET", lockPath(name), o)).body as LockInfo;
    } catch (err) {
      if (err instanceof LeaseholdError && err.code === "lock-not-found") return undefined;
      throw err;
    }
  }

  /** One page of held locks in name order. */
  async list(o: ListOptions = {}): Promise<LockList> {
    const query = new URLSearchParams(
      defined({ prefix: o.prefix, limit: o.limit === undefined ? undefined : String(o.limit), cursor: o.cursor }),
    ).toString();
    return (await this.#call("GET", `/locks${query ? `?${query}` : ""}`, o)).body as LockList;
  }

  /**
   * Runs `fn` while holding the lock: acquires (retrying transient failures), renews
   * every ttl/3, fires `lock.signal` when the lock is lost (a renew answered 410, or no
   * successful renew before this client's own deadline), releases when `fn` settles and
   * returns its result. Rejects without calling `fn` when the lock cannot be had
   * (`lock-held` after `wait`, …). A lost lock does not change `fn`'s outcome: make `fn`
   * honour the signal.
   */
  async withLock<T>(name: string, fn: (lock: HeldLock) => T | PromiseLike<T>, o: WithLockOptions = {}): Promise<T> {
    o.signal?.throwIfAborted();
    const { grant, since } = await this.acquireTimed(name, o);
    const holding = new Holding(this, grant, since, o);
    try {
      o.signal?.throwIfAborted();
      await holding.confirm();
      holding.start();
      return await fn(holding.lock);
    } finally {
      await holding.end();
    }
  }

  async #call(
    method: string,
    path: string,
    o: RequestOptions & { json?: unknown; headers?: Record<string, string> },
  ): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = {
      accept: "application/json",
      ...(this.#apiKey ? { authorization: `Bearer ${this.#apiKey}` } : {}),
      ...(o.json !== undefined ? { "content-type": "application/json" } : {}),
      ...o.headers,
    };
    const controller = new AbortController();
    const timeoutMs = o.timeoutMs ?? this.#timeoutMs;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const unlink = follow(o.signal, controller);
    try {
      let res: Response;
      let text: string;
      try {
        res = await this.#fetch(this.url + path, {
          method,
          headers,
          signal: controller.signal,
          ...(o.json !== undefined ? { body: JSON.stringify(o.json) } : {}),
        });
        text = await res.text();
      } catch (err) {
        if (o.signal?.aborted) throw o.signal.reason;
        if (timedOut) {
          throw new LeaseholdError("timeout", `${method} ${path}: no answer from ${this.url} within ${timeoutMs} ms`);
        }
        throw new LeaseholdError("network-error", `${method} ${path}: ${this.url} did not answer: ${describe(err)}`, {
          cause: err,
        });
      }
      const body = parseJson(text);
      if (res.ok) {
        if (res.status !== 204 && body === undefined) {
          throw new LeaseholdError("invalid-response", `${method} ${path}: ${res.status} without a JSON body`, {
            status: res.status,
          });
        }
        return { status: res.status, body };
      }
      throw problemError(method, path, res, body);
    } finally {
      clearTimeout(timer);
      unlink();
    }
  }
}

/** A client for `o.url` (or `LEASEHOLD_URL`), sending `o.apiKey` (or `LEASEHOLD_API_KEY`). */
export function createClient(o: ClientOptions = {}): LeaseholdClient {
  return new LeaseholdClient(o);
}

/** `withLock` on a client made from the same options (see `LeaseholdClient.withLock`). */
export function withLock<T>(
  name: string,
  fn: (lock: HeldLock) => T | PromiseLike<T>,
  o: WithLockOptions & ClientOptions = {},
): Promise<T> {
  return new LeaseholdClient(o).withLock(name, fn, o);
}

/** The renew loop and loss detection behind `withLock`. Never lets a rejection escape. */
class Holding {
  readonly #client: LeaseholdClient;
  readonly #o: WithLockOptions;
  readonly #controller = new AbortController();
  readonly #unlink: () => void;
  #grant: Grant;
  /** Epoch ms after which the lock counts as lost. */
  #deadline = 0;
  /** Epoch ms of the send time of the last successful acquire/renew. */
  #since: number;
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #inflight: AbortController | undefined;
  #failures = 0;
  #lost = false;
  #ended = false;
  readonly lock: HeldLock;

  constructor(client: LeaseholdClient, grant: Grant, since: number, o: WithLockOptions) {
    this.#client = client;
    this.#o = o;
    this.#grant = grant;
    this.#since = since;
    this.#setDeadline();
    // The caller's signal ends the work too (its reason passes through).
    this.#unlink = follow(o.signal, this.#controller);
    const self = this;
    this.lock = {
      name: grant.name,
      token: grant.token,
      lease: grant.lease,
      get grant() {
        return self.#grant;
      },
      signal: this.#controller.signal,
      get validUntil() {
        return self.#deadline;
      },
    };
  }

  get #ttlMs(): number {
    return this.#grant.ttl * 1000;
  }

  #setDeadline() {
    const margin = this.#o.marginMs ?? Math.min(2_000, this.#ttlMs / 10);
    this.#deadline = this.#since + this.#ttlMs - margin;
  }

  /**
   * When the acquire took long (it waited, or it was a replay of an earlier attempt's
   * grant) the deadline counted from its send time is near or past: renew once before
   * `fn` runs, so `fn` starts with a full, confirmed TTL.
   */
  async confirm(): Promise<void> {
    if (Date.now() < this.#since + this.#ttlMs / 3) return;
    const giveUpAt = Date.now() + (this.#o.retryMs ?? 10_000);
    for (let attempt = 0; ; attempt++) {
      const sent = Date.now();
      try {
        this.#renewed(
          await this.#client.renew(this.lock.name, this.lock.lease, { signal: this.#controller.signal }),
          sent,
        );
        return;
      } catch (err) {
        if (!(err instanceof LeaseholdError && err.transient)) throw err;
        const delay = backoff(attempt, 1_000, err.retryAfter);
        if (Date.now() + delay > giveUpAt) throw err;
        await sleep(delay, this.#controller.signal);
      }
    }
  }

  start() {
    this.#armDeadline();
    this.#scheduleRenew(this.#since + this.#ttlMs / 3);
  }

  /** Stops renewing and releases (best effort; never throws). */
  async end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#stopTimers();
    this.#unlink();
    // A 410 said the lock is someone else's (or gone): nothing to release.
    const reason: unknown = this.#lost ? this.#controller.signal.reason : undefined;
    if (this.#o.release === false || (reason instanceof LeaseholdError && reason.code === "lock-lost")) return;
    try {
      await this.#client.release(this.lock.name, this.lock.lease, { timeoutMs: 5_000 });
    } catch {
      // Already gone (410), or the service is unreachable: the lease expires on its own.
    }
  }

  #renewed(grant: Grant, sent: number) {
    this.#grant = grant;
    this.#since = sent;
    this.#failures = 0;
    this.#setDeadline();
  }

  #armDeadline() {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(
      () =>
        this.#lose(
          new LeaseholdError(
            "lock-expired",
            `lock ${this.lock.name}: no successful renew before this client's deadline; the lock may have expired`,
          ),
        ),
      Math.max(0, this.#deadline - Date.now()),
    );
  }

  #scheduleRenew(at: number) {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => void this.#renew(), Math.max(0, at - Date.now()));
  }

  async #renew(): Promise<void> {
    if (this.#lost || this.#ended) return;
    // A renew answered after the deadline is no use: the lock already counts as lost.
    const request = new AbortController();
    this.#inflight = request;
    const cutoff = setTimeout(() => request.abort(), Math.max(0, this.#deadline - Date.now()));
    const sent = Date.now();
    try {
      const grant = await this.#client.renew(this.lock.name, this.lock.lease, { signal: request.signal });
      if (this.#lost || this.#ended) return;
      this.#renewed(grant, sent);
      this.#armDeadline();
      this.#scheduleRenew(sent + this.#ttlMs / 3);
    } catch (err) {
      if (this.#lost || this.#ended) return;
      if (err instanceof LeaseholdError && !err.transient) {
        // 410: someone else's now (or expired). Other refusals (401, 403, 400) won't heal either.
        this.#lose(err);
        return;
      }
      // No answer or 503: try again soon; the deadline timer decides when it is too late.
      this.#scheduleRenew(Date.now() + backoff(this.#failures++, this.#ttlMs / 6));
    } finally {
      clearTimeout(cutoff);
      if (this.#inflight === request) this.#inflight = undefined;
    }
  }

  #lose(reason: LeaseholdError) {
    if (this.#lost || this.#ended) return;
    this.#lost = true;
    this.#stopTimers();
    this.#controller.abort(reason);
  }

  #stopTimers() {
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#deadlineTimer);
    this.#inflight?.abort();
  }
}

function lockPath(name: string): string {
  // Names use A–Z a–z 0–9 . _ - : ~ @, all legal in a path segment; anything else is
  // escaped so that the service (not a misrouted URL) rejects it with a 400.
  return `/locks/${name.replace(/[^A-Za-z0-9._\-:~@]/gu, (c) => encodeURIComponent(c))}`;
}

function asGrant(body: unknown): Grant {
  const g = body as Partial<Grant> | undefined;
  if (typeof g?.token !== "number" || typeof g.lease !== "string" || typeof g.ttl !== "number") {
    throw new LeaseholdError("invalid-response", "the service's answer is not a grant");
  }
  return g as Grant;
}

function problemError(method: string, path: string, res: Response, body: unknown): LeaseholdError {
  const problem =
    typeof body === "object" && body !== null && typeof (body as Problem).code === "string"
      ? (body as Problem)
      : undefined;
  const retryAfter = Number(res.headers.get("retry-after") ?? Number.NaN);
  const code = problem?.code ?? (res.status === 503 ? "backend-unavailable" : `http-${res.status}`);
  const detail = problem?.detail ?? (res.statusText || "no problem details");
  return new LeaseholdError(code, `${method} ${path}: ${res.status} ${code}: ${detail}`, {
    status: res.status,
    ...(problem ? { problem } : {}),
    ...(Number.isFinite(retryAfter) && retryAfter >= 0 ? { retryAfter } : {}),
  });
}

/**
 * Delay before retry number `attempt` (0-based): `Retry-After` when the service gave
 * one, else exponential from 100 ms up to `capMs`; either way with jitter, so callers
 * that failed together do not come back together.
 */
function backoff(attempt: number, capMs: number, retryAfterS?: number): number {
  if (retryAfterS !== undefined) return retryAfterS * 1000 + Math.random() * 250;
  const ceiling = Math.min(capMs, 100 * 2 ** attempt);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Aborts `target` when `source` fires (with its reason); returns the unlink. */
function follow(source: AbortSignal | undefined, target: AbortController): () => void {
  if (!source) return () => {};
  if (source.aborted) {
    target.abort(source.reason);
    return () => {};
  }
  const onAbort = () => target.abort(source.reason);
  source.addEventListener("abort", onAbort, { once: true });
  return () => source.removeEventListener("abort", onAbort);
}

function parseJson(text: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}

function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** An environment variable where the runtime has them (Node, Bun, Deno); never throws. */
function env(name: string): string | undefined {
  try {
    const value = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
    return value === "" ? undefined : value;
  } catch {
    return undefined;
  }
}

/** A random UUID for Idempotency-Key: Web Crypto everywhere; Node 18 keeps it in node:crypto. */
async function randomUUID(): Promise<string> {
  const webCrypto = (globalThis as { crypto?: Crypto }).crypto;
  if (typeof webCrypto?.randomUUID === "function") return webCrypto.randomUUID();
  if (typeof webCrypto?.getRandomValues === "function") {
    const b = webCrypto.getRandomValues(new Uint8Array(16));
    b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
    b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  // Node 18 without --experimental-global-webcrypto. A computed specifier keeps bundlers
  // for other runtimes from trying to include it; they never reach this line.
  const specifier = "node:crypto";
  const nodeCrypto = (await import(/* @vite-ignore */ specifier)) as { randomUUID(): string };
  return nodeCrypto.randomUUID();
}
