/**
 * etcd over its HTTP/JSON gateway (`/v3/...`) with nothing but `fetch`, so it runs on
 * Cloudflare Workers (no gRPC there) as well as on Node.
 *
 * How the etcd 3.4 gateway encodes things (checked against a real etcd 3.4.23):
 * - keys and values are base64; every int64 (revisions, lease IDs, TTLs) is a JSON string;
 * - fields at their default value are omitted: a failed txn has no `succeeded`, an empty
 *   range no `kvs`, a key without lease no `lease`, an empty value no `value`, a PUT
 *   event no `type`, a keep-alive of a dead lease no `TTL`;
 * - errors are `{error, message, code}` (`code` = gRPC status) with an HTTP 4xx/5xx;
 * - streaming calls (`/v3/watch`, `/v3/lease/keepalive`) answer newline-delimited
 *   `{"result": {...}}` (or `{"error": {...}}`) objects.
 *
 * TLS: for `https://` endpoints the runtime's fetch does TLS with the platform's trust
 * store. The `tls` PEM options (private CA, client certificate) cannot be handed to
 * plain fetch, so this module ignores them: on Node, `src/node/gateway.ts` passes them to
 * the `fetch`, `post` and `duplex` it supplies; on Workers put etcd behind a publicly
 * trusted certificate (or use a Workers mTLS binding as the `fetch` option).
 */

import { delay } from "./delay.js";
import { type KeepAliveStream, keepAliveLanes } from "./keepalive-lanes.js";
import {
  type AllOrNothing,
  EtcdAuthError,
  type EtcdClient,
  type EtcdConnectionOptions,
  EtcdUnavailableError,
  type GetResult,
  type KeyValue,
  LeaseExistsError,
  LeaseNotFoundError,
  type LeaseTtl,
  type RangeResult,
  type WatchEnd,
} from "./types.js";

/** An etcd error that is not about reachability (bad request, auth failure, ...). */
export class EtcdGatewayError extends Error {
  override name = "EtcdGatewayError";
  constructor(
    message: string,
    /** gRPC status code reported by the gateway, when there was one. */
    readonly code: number | undefined,
    readonly status: number,
  ) {
    super(message);
  }
}

// gRPC status codes that matter here.
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;
const CANCELED = 1;

// ---------------------------------------------------------------------------------------
// Pure encoding / decoding helpers (exported for unit tests).

/** Raw JSON of an etcd `KeyValue` as the gateway sends it. */
export interface RawKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}

interface RawHeader {
  revision?: string;
}

type Json = Record<string, unknown>;

const encoder = new TextEncoder();

export function encodeBase64(text: string): string {
  const bytes = encoder.encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Decodes base64 to UTF-8 text; omitted (`undefined`) means the empty string. */
export function decodeBase64(b64: string | undefined): string {
  if (!b64) return "";
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/**
 * An int64 from the gateway: a decimal string, never parsed through `Number` (lease IDs
 * exceed 2^53). Omitted means 0. Small int32 fields arrive as JSON numbers.
 */
export function decodeInt64(v: unknown): bigint {
  if (v === undefined || v === null) return 0n;
  if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  throw new Error("etcd gateway: malformed int64 in a response");
}

/** An int64 that must fit a JS number (revisions, TTLs). */
export function decodeNumber(v: unknown): number {
  const n = decodeInt64(v);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new Error("etcd gateway: an int64 in a response does not fit a number");
  }
  return Number(n);
}

/** A lease ID as the gateway wants it: a decimal int64 string. */
export function encodeLeaseId(id: bigint): string {
  // The messages never include the ID: a lease ID is a lock holder's secret.
  if (BigInt.asIntN(64, id) !== id) throw new RangeError("lease ID is not an int64");
  return id.toString();
}

export function decodeKv(raw: RawKv): KeyValue {
  return {
    key: decodeBase64(raw.key),
    value: decodeBase64(raw.value),
    createRevision: decodeNumber(raw.create_revision),
    modRevision: decodeNumber(raw.mod_revision),
    lease: decodeInt64(raw.lease),
  };
}

function headerRevision(body: Json): number {
  return decodeNumber((body.header as RawHeader | undefined)?.revision);
}

function kvsOf(body: Json): RawKv[] {
  return Array.isArray(body.kvs) ? (body.kvs as RawKv[]) : [];
}

export function decodeRange(body: Json): RangeResult {
  return { revision: headerRevision(body), kvs: kvsOf(body).map(decodeKv), more: body.more === true };
}

export function decodeGet(body: Json): GetResult {
  const raw = kvsOf(body)[0];
  return { revision: headerRevision(body), ...(raw ? { kv: decodeKv(raw) } : {}) };
}

/** Response of an all-or-nothing txn whose failure branch ranges each key in turn. */
export function decodeAllOrNothing(body: Json): AllOrNothing {
  const revision = headerRevision(body);
  if (body.succeeded === true) return { applied: true, revision };
  const responses = Array.isArray(body.responses) ? (body.responses as Json[]) : [];
  const kvs = responses.map((r) => {
    const raw = kvsOf((r.response_range ?? {}) as Json)[0];
    return raw ? decodeKv(raw) : undefined;
  });
  return { applied: false, revision, kvs };
}

/** Granted TTL from a LeaseGrant response. */
export function decodeGrant(body: Json): number {
  return decodeNumber(body.TTL);
}

/** TTL from one keep-alive `result`; omitted (= 0) when the lease is gone. */
export function decodeKeepAlive(result: Json): number {
  return Math.max(0, decodeNumber(result.TTL));
}

/** etcd answers TTL "-1" (and no grantedTTL) for a lease that does not exist. */
export function decodeTimeToLive(body: Json): LeaseTtl {
  const ttl = decodeNumber(body.TTL);
  if (ttl < 0) return { ttl: -1, grantedTtl: 0 };
  return { ttl, grantedTtl: decodeNumber(body.grantedTTL) };
}

export type WatchMessage =
  | { kind: "created" }
  /** One message can carry several events (history delivered in a batch). */
  | { kind: "deleted"; revisions: number[] }
  | { kind: "compacted" }
  | { kind: "canceled"; reason: string }
  /** Events without a DELETE (or a progress notice): keep waiting. */
  | { kind: "other" };

/** Classifies one `result` object of the `/v3/watch` stream (one watched key). */
export function decodeWatchResult(result: Json): WatchMessage {
  if (result.canceled === true) {
    // A start revision older than the compaction point cancels the watch with the
    // compact revision set (the header then even lacks a revision).
    if (decodeInt64(result.compact_revision) > 0n) return { kind: "compacted" };
    return { kind: "canceled", reason: String(result.cancel_reason ?? "watch canceled") };
  }
  const events = Array.isArray(result.events) ? (result.events as Json[]) : [];
  const revisions = events
    .filter((e) => e.type === "DELETE")
    .map((e) => decodeNumber((e.kv as Json | undefined)?.mod_revision));
  if (revisions.length > 0) return { kind: "deleted", revisions };
  if (result.created === true) return { kind: "created" };
  return { kind: "other" };
}

export interface GatewayErrorInfo {
  code: number | undefined;
  message: string;
}

/**
 * The error of a failed call: `{error, message, code}` for unary calls, or
 * `{"error": {grpc_code, http_code, message}}` inside a stream. Anything else (a proxy's
 * HTML page, an empty body) becomes the HTTP status.
 */
export function decodeGatewayError(status: number, text: string): GatewayErrorInfo {
  let body: unknown;
  try {
    body = JSON.parse(firstLine(text));
  } catch {
    return { code: undefined, message: `HTTP ${status}` };
  }
  return errorInfo(body) ?? { code: undefined, message: `HTTP ${status}` };
}

function errorInfo(body: unknown): GatewayErrorInfo | undefined {
  if (typeof body !== "object" || body === null || !("error" in body)) return undefined;
  const b = body as Json;
  const inner = typeof b.error === "object" && b.error !== null ? (b.error as Json) : b;
  const code = inner.code ?? inner.grpc_code;
  const message = inner.message ?? inner.error;
  return {
    code: typeof code === "number" ? code : undefined,
    message: typeof message === "string" && message ? message : "unknown etcd error",
  };
}

function firstLine(text: string): string {
  return text.trimStart().split("\n", 1)[0] ?? "";
}

function isUnavailable(status: number, code: number | undefined): boolean {
  // CANCELED is what the gateway answers while its etcd shuts down ("grpc: the client
  // connection is closing"): the member is going away, not the request being wrong.
  if (code === UNAVAILABLE || code === DEADLINE_EXCEEDED || code === RESOURCE_EXHAUSTED || code === CANCELED) {
    return true;
  }
  // No gRPC code: something in front of etcd (proxy, load balancer) answered.
  return code === undefined && (status === 502 || status === 503 || status === 504);
}

// A token etcd no longer knows (simple tokens expire after 5 idle minutes and vanish when
// auth is toggled), or a JWT minted before the last auth change: both mean authenticate again.
const isInvalidToken = (message: string) =>
  message.includes("invalid auth token") || message.includes("revision of auth store is old");
// Sent by etcd when auth is on and the request carries no token at all.
const isUserEmpty = (message: string) => message.includes("user name is empty");
const isAuthNotEnabled = (message: string) => message.includes("authentication is not enabled");

// ---------------------------------------------------------------------------------------
// The client.

interface Reply {
  status: number;
  text: string;
  origin: string;
  /** An earlier attempt of this call failed mid-flight: a write may have applied already. */
  retried: boolean;
}

/** One unary POST: the answer's status and its whole body as text. */
export type GatewayPost = (
  url: string,
  init: { headers: Record<string, string>; body: string; signal: AbortSignal },
) => Promise<{ status: number; text: string }>;

/**
 * A POST whose request body stays open, so one gateway stream carries many messages:
 * `write` sends one, each line of the answer goes to `onLine`, and `onClosed` runs once
 * when the stream ends or breaks. Resolves once etcd has taken the stream (status 200),
 * or with a refusal's status and body; rejects when the endpoint cannot be reached within
 * `timeoutMs`. Node has one (src/node/gateway.ts); fetch cannot send while it receives.
 */
export type GatewayDuplex = (
  url: string,
  headers: Record<string, string>,
  onLine: (line: string) => void,
  onClosed: (err: Error) => void,
  timeoutMs: number,
) => Promise<{ status: 200; stream: { write(text: string): void; end(): void } } | { status: number; text: string }>;

export interface GatewayOptions extends EtcdConnectionOptions {
  /** For watch streams, and for unary calls unless `post` is given; default the runtime's `fetch`. */
  fetch?: typeof fetch;
  /**
   * For unary calls; default `fetch`. Node passes a leaner client with a connection pool
   * of its own, so watch streams (which hold their connection while they run) never take
   * the unary calls' connections.
   */
  post?: GatewayPost;
  /** Keep-alives over a few long-lived streams instead of one request each (see GatewayDuplex). */
  duplex?: GatewayDuplex;
}

/** A keep-alive stream broke because etcd no longer took its token: worth one retry. */
class StaleTokenError extends EtcdUnavailableError {}

export function createGatewayEtcd(opts: GatewayOptions): EtcdClient {
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const post: GatewayPost =
    opts.post ??
    (async (url, init) => {
      const res = await doFetch(url, { method: "POST", ...init });
      return { status: res.status, text: await res.text() };
    });
  const timeoutMs = opts.timeoutMs;
  if (opts.endpoints.length === 0) throw new Error("etcd gateway: no endpoints");
  const endpoints = opts.endpoints.map((e) => {
    const url = new URL(e);
    if (url.username || url.password) {
      throw new Error("etcd gateway: credentials in an endpoint URL are not supported; use username/password");
    }
    return { base: url.href.replace(/\/+$/, ""), origin: url.origin };
  });
  const origins = endpoints.map((e) => e.origin).join(", ");
  /** Index of the endpoint that answered last; calls start there. */
  let current = 0;
  let closed = false;
  const openWatches = new Set<() => void>();

  const useAuth = opts.username !== undefined && opts.username !== "";
  /** Simple/JWT token from /v3/auth/authenticate; `null` = etcd has auth disabled. */
  let token: string | null | undefined;
  let authenticating: Promise<string | null> | undefined;

  const unavailable = (msg: string) => new EtcdUnavailableError(msg);

  const describeError = (err: unknown): string => {
    const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return cause.message || (typeof code === "string" ? code : cause.name);
    }
    return String(cause);
  };

  /**
   * POSTs to the endpoints in order, starting at the last good one, moving on after a
   * network failure (also one while reading a unary body). `signal` bounds the whole
   * thing, all endpoints together. Streams come back unread.
   */
  async function send(
    path: string,
    body: unknown,
    signal: AbortSignal,
    authToken: string | null | undefined,
    stream: true,
  ): Promise<{ res: Response; origin: string }>;
  async function send(
    path: string,
    body: unknown,
    signal: AbortSignal,
    authToken: string | null | undefined,
    stream: false,
  ): Promise<Reply>;
  async function send(
    path: string,
    body: unknown,
    signal: AbortSignal,
    authToken: string | null | undefined,
    stream: boolean,
  ): Promise<Reply | { res: Response; origin: string }> {
    if (closed) throw unavailable("etcd client is closed");
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (authToken) headers.authorization = authToken;
    const payload = JSON.stringify(body);
    const errors: string[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const index = (current + i) % endpoints.length;
      const ep = endpoints[index] as (typeof endpoints)[number];
      try {
        if (stream) {
          const res = await doFetch(`${ep.base}${path}`, { method: "POST", headers, body: payload, signal });
          current = index;
          return { res, origin: ep.origin };
        }
        const { status, text } = await post(`${ep.base}${path}`, { headers, body: payload, signal });
        current = index;
        return { status, text, origin: ep.origin, retried: i > 0 };
      } catch (err) {
        if (signal.aborted) {
          if (stream) throw err;
          throw unavailable(`etcd did not answer within ${timeoutMs} ms (${origins})`);
        }
        errors.push(`${ep.origin}: ${describeError(err)}`);
      }
    }
    throw unavailable(`cannot reach etcd (${errors.join("; ")})`);
  }

  // Shared by concurrent callers, so it has its own deadline rather than one caller's signal.
  const authenticate = (): Promise<string | null> => {
    authenticating ??= (async () => {
      try {
        const reply = await send(
          "/v3/auth/authenticate",
          { name: opts.username, password: opts.password ?? "" },
          AbortSignal.timeout(timeoutMs),
          undefined,
          false,
        );
        if (reply.status === 200) {
          const t = (JSON.parse(reply.text) as Json).token;
          if (typeof t !== "string" || !t) throw new Error("etcd gateway: authenticate returned no token");
          token = t;
          return t;
        }
        const err = decodeGatewayError(reply.status, reply.text);
        if (isUnavailable(reply.status, err.code)) throw unavailable(`etcd at ${reply.origin}: ${err.message}`);
        if (isAuthNotEnabled(err.message)) {
          token = null;
          return null;
        }
        throw new EtcdAuthError(`etcd authentication failed: ${err.message}`);
      } finally {
        authenticating = undefined;
      }
    })();
    return authenticating;
  };

  const tokenFor = async (): Promise<string | null | undefined> => {
    if (!useAuth) return undefined;
    if (token !== undefined) return token;
    return authenticate();
  };

  /** Drops `used` so the next call authenticates again; true when a retry makes sense. */
  const dropToken = (used: string | null | undefined, message: string): boolean => {
    if (!useAuth) return false;
    if (!(isInvalidToken(message) || (used === null && isUserEmpty(message)))) return false;
    if (token === used) token = undefined;
    return true;
  };

  /**
   * A unary call: resolves with the parsed 200 body (for streaming endpoints, the first
   * line's `result`), or rejects with EtcdUnavailableError / EtcdGatewayError. Errors
   * the caller wants to handle itself (by gRPC code) come back as `{ error }`.
   */
  const call = async (
    path: string,
    body: unknown,
    handled: number[] = [],
    stream = false,
  ): Promise<{ ok: Json; retried: boolean } | { error: GatewayErrorInfo; retried: boolean }> => {
    // Not AbortSignal.timeout: its timer keeps each call's signal, and what listens to
    // it, reachable for the whole deadline, so every call left garbage in the old
    // generation; this timer goes when the call ends.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    try {
      return await callUntil(path, body, handled, stream, deadline.signal);
    } finally {
      clearTimeout(timer);
    }
  };

  const callUntil = async (
    path: string,
    body: unknown,
    handled: number[],
    stream: boolean,
    signal: AbortSignal,
  ): Promise<{ ok: Json; retried: boolean } | { error: GatewayErrorInfo; retried: boolean }> => {
    let reauthenticated = false;
    let retried = false;
    for (;;) {
      const used = await tokenFor();
      const reply = await send(path, body, signal, used, false);
      retried ||= reply.retried;
      let err: GatewayErrorInfo;
      if (reply.status === 200) {
        let parsed: Json;
        try {
          parsed = JSON.parse(stream ? firstLine(reply.text) : reply.text) as Json;
        } catch {
          throw unavailable(`etcd at ${reply.origin} sent a malformed answer to ${path}`);
        }
        if (!stream) return { ok: parsed, retried };
        const streamErr = errorInfo(parsed);
        if (!streamErr) return { ok: (parsed.result ?? {}) as Json, retried };
        err = streamErr;
      } else {
        err = decodeGatewayError(reply.status, reply.text);
      }
      if (isUnavailable(reply.status, err.code)) {
        throw unavailable(`etcd at ${reply.origin} is unavailable: ${err.message}`);
      }
      if (!reauthenticated && dropToken(used, err.message)) {
        reauthenticated = true;
        continue;
      }
      if (err.code !== undefined && handled.includes(err.code)) return { error: err, retried };
      throw new EtcdGatewayError(`etcd ${path} failed: ${err.message}`, err.code, reply.status);
    }
  };

  /**
   * Opens one keep-alive stream on the first endpoint that takes it, starting at the last
   * good one. etcd checks the token when the stream opens; an error line later (token
   * gone, member stopping) breaks the stream, and the lane opens a new one on next use.
   */
  const openKeepAliveStream = async (
    duplex: GatewayDuplex,
    events: { reply(id: string, ttl: number): void; broken(err: Error): void },
  ): Promise<KeepAliveStream> => {
    if (closed) throw unavailable("etcd client is closed");
    const errors: string[] = [];
    let reauthenticated = false;
    for (let i = 0; i < endpoints.length; i++) {
      const index = (current + i) % endpoints.length;
      const ep = endpoints[index] as (typeof endpoints)[number];
      const used = await tokenFor();
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (used) headers.authorization = used;
      const onLine = (line: string) => {
        let parsed: Json;
        try {
          parsed = JSON.parse(line) as Json;
        } catch {
          events.broken(unavailable(`etcd at ${ep.origin} sent a malformed keep-alive answer`));
          return;
        }
        const err = errorInfo(parsed);
        if (!err) {
          const result = (parsed.result ?? {}) as Json;
          events.reply(String(result.ID), decodeKeepAlive(result));
        } else if (dropToken(used, err.message)) {
          events.broken(new StaleTokenError(`etcd at ${ep.origin}: ${err.message}`));
        } else {
          events.broken(unavailable(`etcd at ${ep.origin} broke the keep-alive stream: ${err.message}`));
        }
      };
      const onClosed = (err: Error) => events.broken(unavailable(`etcd at ${ep.origin}: ${err.message}`));
      let opened: Awaited<ReturnType<GatewayDuplex>>;
      try {
        opened = await duplex(`${ep.base}/v3/lease/keepalive`, headers, onLine, onClosed, timeoutMs);
      } catch (err) {
        errors.push(`${ep.origin}: ${describeError(err)}`);
        continue;
      }
      if (opened.status === 200 && "stream" in opened) {
        current = index;
        return { write: (id) => opened.stream.write(`{"ID":"${id}"}\n`), end: () => opened.stream.end() };
      }
      const text = "text" in opened ? opened.text : "";
      const err = decodeGatewayError(opened.status, text);
      if (isUnavailable(opened.status, err.code)) {
        errors.push(`${ep.origin}: ${err.message}`);
        continue;
      }
      if (!reauthenticated && dropToken(used, err.message)) {
        reauthenticated = true;
        i--;
        continue;
      }
      throw new EtcdGatewayError(`etcd /v3/lease/keepalive failed: ${err.message}`, err.code, opened.status);
    }
    throw unavailable(`cannot reach etcd (${errors.join("; ")})`);
  };

  const keepAliveStreams = opts.duplex
    ? keepAliveLanes((events) => openKeepAliveStream(opts.duplex as GatewayDuplex, events))
    : undefined;

  /** One keep-alive over a long-lived stream, within one deadline (retried once after a token change). */
  const keepAliveOverStream = async (lanes: NonNullable<typeof keepAliveStreams>, id: bigint): Promise<number> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(unavailable(`etcd did not answer a keep-alive within ${timeoutMs} ms (${origins})`)),
        timeoutMs,
      );
    });
    try {
      for (let attempt = 0; ; attempt++) {
        const sent = lanes.send(id);
        try {
          return await Promise.race([sent.reply, deadline]);
        } catch (err) {
          if (!(err instanceof StaleTokenError) || attempt > 0) throw err;
        } finally {
          sent.forget();
        }
      }
    } finally {
      clearTimeout(timer);
    }
  };

  const mustOk = async (path: string, body: unknown): Promise<Json> => {
    const r = await call(path, body);
    if ("error" in r) throw new EtcdGatewayError(r.error.message, r.error.code, 0);
    return r.ok;
  };

  const leaseTimeToLive = async (id: bigint): Promise<LeaseTtl> => {
    const r = await call("/v3/lease/timetolive", { ID: encodeLeaseId(id) }, [NOT_FOUND]);
    return "error" in r ? { ttl: -1, grantedTtl: 0 } : decodeTimeToLive(r.ok);
  };

  /**
   * One watch connection; calls `onDelete` for each DELETE. Resolves with the end,
   * "reauth" when etcd rejected the token (retry once with a fresh one), or "again" when an
   * established stream ended (open it again). Establishing is bounded by the deadline;
   * after "created" only `stopped` is.
   */
  const watchOnce = async (
    request: unknown,
    onDelete: (revision: number) => void,
    stopped: () => boolean,
    setConnection: (ac: AbortController) => void,
    mayReauth: boolean,
  ): Promise<WatchEnd | "reauth" | "again"> => {
    const ac = new AbortController();
    setConnection(ac);
    if (stopped()) return "aborted";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    let established = false;
    try {
      const used = await tokenFor();
      const { res, origin } = await send("/v3/watch", request, ac.signal, used, true);
      if (res.status !== 200 || !res.body) {
        const err = decodeGatewayError(res.status, await res.text());
        if (isUnavailable(res.status, err.code)) throw unavailable(`etcd at ${origin} is unavailable: ${err.message}`);
        if (mayReauth && dropToken(used, err.message)) return "reauth";
        throw new EtcdGatewayError(`etcd watch failed: ${err.message}`, err.code, res.status);
      }
      for await (const line of lines(res.body)) {
        const msg = JSON.parse(line) as Json;
        const streamErr = errorInfo(msg);
        if (streamErr) {
          if (streamErr.code === undefined || isUnavailable(0, streamErr.code)) break;
          throw new EtcdGatewayError(`etcd watch failed: ${streamErr.message}`, streamErr.code, res.status);
        }
        const m = decodeWatchResult((msg.result ?? {}) as Json);
        if (m.kind === "deleted") {
          for (const revision of m.revisions) if (!stopped()) onDelete(revision);
        } else if (m.kind === "compacted") {
          return "compacted";
        } else if (m.kind === "canceled") {
          // etcd reports a bad token on a watch as a cancellation, not as an HTTP error.
          if (mayReauth && dropToken(used, m.reason)) return "reauth";
          throw new EtcdGatewayError(`etcd canceled the watch: ${m.reason}`, undefined, res.status);
        } else if (m.kind === "created" && !established) {
          established = true;
          clearTimeout(timer);
        }
      }
      if (stopped()) return "aborted";
      if (established) return "again";
      throw unavailable(`etcd at ${origin} closed the watch stream before it was established`);
    } catch (err) {
      // The caller's abort wins over everything, then the deadline.
      if (stopped()) return "aborted";
      if (err instanceof EtcdGatewayError) throw err;
      if (established) return "again";
      if (timedOut) throw unavailable(`etcd did not establish the watch within ${timeoutMs} ms (${origins})`);
      if (err instanceof EtcdUnavailableError) throw err;
      throw unavailable(`etcd watch failed: ${describeError(err)}`);
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
  };

  const watchDeletes = async (
    key: string,
    fromRevision: number,
    onDelete: (revision: number) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd> => {
    if (signal.aborted) return "aborted";
    if (closed) throw unavailable("etcd client is closed");
    let stopped = false;
    let connection: AbortController | undefined;
    const stop = () => {
      stopped = true;
      connection?.abort();
    };
    signal.addEventListener("abort", stop, { once: true });
    openWatches.add(stop);
    // Every DELETE before `next` has been reported. A stream is reopened from there, not
    // from the revision in a "created" header: that one can run ahead of history etcd has
    // not delivered yet.
    let next = fromRevision;
    const report = (revision: number) => {
      next = revision + 1;
      onDelete(revision);
    };
    const setConnection = (ac: AbortController) => {
      connection = ac;
    };
    try {
      let reauthenticated = false;
      /** While reopening a broken stream: until when etcd may take to come back. */
      let reopenBy: number | undefined;
      for (;;) {
        const request = {
          create_request: { key: encodeBase64(key), start_revision: String(next), filters: ["NOPUT"] },
        };
        let r: WatchEnd | "reauth" | "again";
        try {
          r = await watchOnce(request, report, () => stopped, setConnection, !reauthenticated);
        } catch (err) {
          // A member restart or a proxy's idle timeout is not a failure of the watch.
          if (!(err instanceof EtcdUnavailableError) || reopenBy === undefined || Date.now() >= reopenBy) throw err;
          const ac = new AbortController();
          setConnection(ac);
          if (!stopped) await delay(Math.min(250, reopenBy - Date.now()), ac.signal);
          continue;
        }
        if (r === "reauth") reauthenticated = true;
        else if (r === "again") {
          reauthenticated = false;
          reopenBy = Date.now() + timeoutMs;
        } else return r;
      }
    } finally {
      signal.removeEventListener("abort", stop);
      openWatches.delete(stop);
    }
  };

  return {
    async get(key) {
      // No `serializable`: the default range is linearizable.
      return decodeGet(await mustOk("/v3/kv/range", { key: encodeBase64(key) }));
    },

    async range(start, end, limit) {
      return decodeRange(
        await mustOk("/v3/kv/range", {
          key: encodeBase64(start),
          range_end: encodeBase64(end),
          ...(limit > 0 ? { limit: String(limit) } : {}),
        }),
      );
    },

    async leaseGrant(id, ttlSeconds) {
      if (!Number.isSafeInteger(ttlSeconds)) throw new RangeError(`lease TTL must be an integer, got ${ttlSeconds}`);
      const r = await call("/v3/lease/grant", { ID: encodeLeaseId(id), TTL: String(ttlSeconds) }, [
        FAILED_PRECONDITION,
      ]);
      if (!("error" in r)) return decodeGrant(r.ok);
      if (r.retried) {
        // An earlier attempt broke off after sending, so this lease is most likely the one
        // that attempt granted (IDs are random 64-bit numbers): report it as granted.
        const ttl = await leaseTimeToLive(id);
        if (ttl.ttl >= 0) return ttl.grantedTtl;
      }
      throw new LeaseExistsError("etcd lease ID already in use");
    },

    async leaseKeepAliveOnce(id) {
      if (keepAliveStreams) return keepAliveOverStream(keepAliveStreams, id);
      const r = await call("/v3/lease/keepalive", { ID: encodeLeaseId(id) }, [NOT_FOUND], true);
      return "error" in r ? 0 : decodeKeepAlive(r.ok);
    },

    async leaseRevoke(id) {
      const r = await call("/v3/lease/revoke", { ID: encodeLeaseId(id) }, [NOT_FOUND]);
      return !("error" in r);
    },

    leaseTimeToLive,

    async createAllIfAbsent(items) {
      const keys = items.map((i) => encodeBase64(i.key));
      const r = await call(
        "/v3/kv/txn",
        {
          // create_revision == 0 means the key does not exist. Spelled out in full although
          // EQUAL and "0" are defaults: etcd reads an omitted target value as 0 as well.
          compare: keys.map((key) => ({ key, target: "CREATE", result: "EQUAL", create_revision: "0" })),
          success: items.map((i, n) => ({
            request_put: {
              key: keys[n],
              value: encodeBase64(i.value),
              ...(i.lease ? { lease: encodeLeaseId(i.lease) } : {}),
            },
          })),
          failure: keys.map((key) => ({ request_range: { key } })),
        },
        [NOT_FOUND],
      );
      if ("error" in r) throw new LeaseNotFoundError(`etcd txn: ${r.error.message}`);
      const res = decodeAllOrNothing(r.ok);
      // A broken-off earlier attempt applied the txn: nobody else holds these lease IDs.
      if (!res.applied && r.retried && items.every((i, n) => i.lease !== 0n && res.kvs[n]?.lease === i.lease)) {
        return { applied: true, revision: res.kvs[0]?.createRevision ?? res.revision };
      }
      return res;
    },

    async deleteAllIfUnchanged(items) {
      const keys = items.map((i) => encodeBase64(i.key));
      const r = await call("/v3/kv/txn", {
        compare: items.map((i, n) => ({
          key: keys[n],
          target: "MOD",
          result: "EQUAL",
          mod_revision: String(i.modRevision),
        })),
        success: keys.map((key) => ({ request_delete_range: { key } })),
        failure: keys.map((key) => ({ request_range: { key } })),
      });
      if ("error" in r) throw new EtcdGatewayError(r.error.message, r.error.code, 0);
      const res = decodeAllOrNothing(r.ok);
      // A broken-off earlier attempt may have deleted them already.
      if (!res.applied && r.retried && res.kvs.every((kv) => kv === undefined))
        return { applied: true, revision: res.revision };
      return res;
    },

    watchDeletes,

    async ping() {
      const status = await mustOk("/v3/maintenance/status", {});
      if (decodeInt64(status.leader) === 0n) throw unavailable(`etcd (${origins}) has no leader`);
    },

    async close() {
      closed = true;
      keepAliveStreams?.close();
      for (const stop of [...openWatches]) stop();
    },
  };
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
