/**
 * JSON of etcd's HTTP/JSON gateway (`/v3/...`) to our types, with no I/O (requests are
 * in requests.ts).
 *
 * How the etcd 3.4 gateway encodes things (checked against a real etcd 3.4.23):
 * - keys and values are base64; every int64 (revisions, lease IDs, TTLs) is a JSON string;
 * - fields at their default value are omitted: a failed txn has no `succeeded`, an empty
 *   range no `kvs`, a key without lease no `lease`, an empty value no `value`, a PUT
 *   event no `type`, a keep-alive of a dead lease no `TTL`;
 * - errors are `{error, message, code}` (`code` = gRPC status) with an HTTP 4xx/5xx;
 * - streaming calls (`/v3/watch`, `/v3/lease/keepalive`) answer newline-delimited
 *   `{"result": {...}}` (or `{"error": {...}}`) objects.
 */

import type { RangeRead } from "../join.js";
import type { GetResult, KeyValue, LeaseTtl, RangeResult, ScanResult, WatchEvent } from "../types.js";

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
export const NOT_FOUND = 5;
export const FAILED_PRECONDITION = 9;
/** A revision compacted away, or one the member has not reached. */
export const OUT_OF_RANGE = 11;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;
const CANCELED = 1;

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

export type Json = Record<string, unknown>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Node's Buffer where there is one: the portable path below (needed on Workers, which
 * have no Buffer) costs about 1.6 µs per key or value against 0.35, and a lock cycle
 * encodes some ten of them.
 */
const NodeBuffer = (
  globalThis as {
    Buffer?: {
      from(s: string, enc: "utf8" | "base64"): { toString(enc: "base64" | "utf8"): string };
    };
  }
).Buffer;

export function encodeBase64(text: string): string {
  return NodeBuffer ? NodeBuffer.from(text, "utf8").toString("base64") : portableEncodeBase64(text);
}

/** Decodes base64 to UTF-8 text; omitted (`undefined`) means the empty string. */
export function decodeBase64(b64: string | undefined): string {
  if (!b64) return "";
  return NodeBuffer ? NodeBuffer.from(b64, "base64").toString("utf8") : portableDecodeBase64(b64);
}

/** `encodeBase64` without Buffer (Workers). */
export function portableEncodeBase64(text: string): string {
  const bytes = encoder.encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** `decodeBase64` without Buffer (Workers). */
export function portableDecodeBase64(b64: string): string {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return decoder.decode(bytes);
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

export function headerRevision(body: Json): number {
  return decodeNumber((body.header as RawHeader | undefined)?.revision);
}

function kvsOf(body: Json): RawKv[] {
  return Array.isArray(body.kvs) ? (body.kvs as RawKv[]) : [];
}

export function decodeRange(body: Json): RangeResult {
  return { revision: headerRevision(body), kvs: kvsOf(body).map(decodeKv), more: body.more === true };
}

export function decodeScan(body: Json): ScanResult {
  return { ...decodeRange(body), count: decodeNumber(body.count) };
}

export function decodeGet(body: Json): GetResult {
  const raw = kvsOf(body)[0];
  return { revision: headerRevision(body), ...(raw ? { kv: decodeKv(raw) } : {}) };
}

/** Response of `encodeJoinReads`' txn: its revision and its ranges. */
export function decodeJoinReads(body: Json): { revision: number; reads: RangeRead[] } {
  return { revision: headerRevision(body), reads: responsesOf(body).map((r) => decodeScan(r)) };
}

/** Response of `encodeKeyReads`' txn: its revision and each key's kv. */
export function decodeKeyReads(body: Json): { revision: number; reads: (KeyValue | undefined)[] } {
  return {
    revision: headerRevision(body),
    reads: responsesOf(body).map((r) => {
      const raw = kvsOf(r)[0];
      return raw ? decodeKv(raw) : undefined;
    }),
  };
}

/** A txn's range responses, in order. */
function responsesOf(body: Json): Json[] {
  const responses = Array.isArray(body.responses) ? (body.responses as Json[]) : [];
  return responses.map((r) => (r.response_range ?? {}) as Json);
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
  /** One message can carry several revisions' events (history delivered in a batch). */
  | { kind: "events"; events: WatchEvent[] }
  | { kind: "compacted" }
  | { kind: "canceled"; reason: string }
  /** A progress notice: keep waiting. */
  | { kind: "other" };

/** Classifies one `result` object of the `/v3/watch` stream (one watch). */
export function decodeWatchResult(result: Json): WatchMessage {
  if (result.canceled === true) {
    // A start revision older than the compaction point cancels the watch with the
    // compact revision set (the header then even lacks a revision).
    if (decodeInt64(result.compact_revision) > 0n) return { kind: "compacted" };
    return { kind: "canceled", reason: String(result.cancel_reason ?? "watch canceled") };
  }
  const events = Array.isArray(result.events) ? (result.events as Json[]) : [];
  if (events.length > 0) return { kind: "events", events: events.map(decodeEvent) };
  if (result.created === true) return { kind: "created" };
  return { kind: "other" };
}

/** A PUT event has no `type` (its value, 0, is the default); a DELETE's kv has key and revision only. */
function decodeEvent(e: Json): WatchEvent {
  const kv = (e.kv ?? {}) as RawKv;
  const prev = e.prev_kv ? { prev: decodeKv(e.prev_kv as RawKv) } : {};
  if (e.type === "DELETE")
    return { type: "delete", key: decodeBase64(kv.key), revision: decodeNumber(kv.mod_revision), ...prev };
  return { type: "put", kv: decodeKv(kv), ...prev };
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

/** The error of a stream line or a parsed body; `undefined` when it is not one. */
export function errorInfo(body: unknown): GatewayErrorInfo | undefined {
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

export function firstLine(text: string): string {
  return text.trimStart().split("\n", 1)[0] ?? "";
}

/** The member (or a proxy in front of it) cannot serve now: another member or a later try may. */
export function isUnavailable(status: number, code: number | undefined): boolean {
  // CANCELED is what the gateway answers while its etcd shuts down ("grpc: the client
  // connection is closing"): the member is going away, not the request being wrong.
  if (code === UNAVAILABLE || code === DEADLINE_EXCEEDED || code === RESOURCE_EXHAUSTED || code === CANCELED) {
    return true;
  }
  // No gRPC code: something in front of etcd (proxy, load balancer) answered.
  return code === undefined && (status === 502 || status === 503 || status === 504);
}

/**
 * etcd refused a request over the token it carried (`used`), and a fresh token may pass:
 * a token etcd no longer knows (simple tokens expire after 5 idle minutes and vanish when
 * auth is toggled), a JWT minted before the last auth change, or no token at all (`null`:
 * auth was off when we authenticated) now that auth is on.
 */
export function refusesToken(message: string, used: string | null | undefined): boolean {
  return (
    message.includes("invalid auth token") ||
    message.includes("revision of auth store is old") ||
    (used === null && message.includes("user name is empty"))
  );
}

/** The answer to /v3/auth/authenticate when etcd has auth off. */
export const isAuthNotEnabled = (message: string) => message.includes("authentication is not enabled");
