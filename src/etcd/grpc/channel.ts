/**
 * etcd's gRPC API over Node's own HTTP/2 client, for the unary calls and the keep-alive
 * streams the service makes on every grant: one HTTP/2 stream each, the message framed
 * as gRPC frames it, and nothing else on the way.
 *
 * Why not etcd3's client (grpc-js) for these: at one request at a time, a lock cycle is
 * two txns and a keep-alive, and grpc-js's layers around each call (interceptors, the
 * resolving, retrying, load-balancing and subchannel calls, the filters, metadata
 * conversions, etcd3's connection pool and policies) cost about as much CPU as the
 * HTTP/2 stream itself; a call over plain HTTP/2 costs half, and answers about 0.2 ms
 * sooner (BENCHMARKS.md). Watches stay on etcd3.
 *
 * The messages are encoded and decoded by the same protobuf definitions and options as
 * etcd3's (its own rpc.proto, loaded by @grpc/proto-loader), so requests and answers have
 * the same shapes as before; errors are etcd3's error classes (castGrpcError), so callers
 * translate them as before. What etcd3 did around a call is kept: each call carries a
 * deadline (`grpc-timeout`, and a local timer that cancels the stream); with several
 * endpoints each call goes to a random member, and a member that could not be reached
 * is skipped for a second; the auth token is fetched once and fetched again when etcd
 * refuses it. Beyond etcd3: a member that stops answering (paused, or cut off with its
 * connection still open) is found by a ping once a call misses its deadline, and skipped
 * too, and comes back only once a ping is answered again; a request that never reached
 * its member (no connection, or a stream refused by a member going away) goes on to the
 * next one, within the same deadline. Nothing that may have reached etcd is sent again.
 */

import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type Http2Session,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from "node:http2";
import { createRequire } from "node:module";
import { loadSync } from "@grpc/proto-loader";
import { castGrpcError } from "etcd3";
import { Deadline } from "../../timers.js";
import { isAuthNotEnabled, refusesToken } from "../gateway/codec.js";
import { EtcdUnavailableError } from "../types.js";
import { isConnectionFailure } from "./codec.js";
import {
  decodeLeaseKeepAliveResponse,
  decodeRangeResponse,
  decodeTxnResponse,
  encodeLeaseKeepAliveRequest,
  encodeRangeRequest,
  encodeTxnRequest,
} from "./proto.js";

/** A gRPC method: its path and its messages' codec. */
export interface Method<Req, Res> {
  path: string;
  encode(req: Req): Buffer;
  decode(buf: Buffer): Res;
}

/** A method with etcd3's codec, both ways (the tests check the hand codec against it). */
// biome-ignore lint/suspicious/noExplicitAny: the request and answer types are etcd3's, given at each use
type GenericMethod = Method<any, any> & { decodeRequest(b: Buffer): unknown; encodeResponse(r: unknown): Buffer };

/**
 * The methods of etcd's services the service calls, each with etcd3's codec: its own
 * rpc.proto through @grpc/proto-loader with its options (so the messages have etcd3's
 * shapes).
 */
export function genericMethods() {
  const proto = createRequire(import.meta.url).resolve("etcd3/proto/rpc.proto");
  const def = loadSync(proto, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const method = (service: string, name: string): GenericMethod => {
    const m = (def[`etcdserverpb.${service}`] as Record<string, unknown>)[name] as {
      path: string;
      requestSerialize(req: unknown): Buffer;
      requestDeserialize(buf: Buffer): unknown;
      responseSerialize(res: unknown): Buffer;
      responseDeserialize(buf: Buffer): unknown;
    };
    return {
      path: m.path,
      encode: (r) => m.requestSerialize(r),
      decode: (b) => m.responseDeserialize(b),
      decodeRequest: (b) => m.requestDeserialize(b),
      encodeResponse: (r) => m.responseSerialize(r),
    };
  };
  return {
    range: method("KV", "Range"),
    txn: method("KV", "Txn"),
    leaseGrant: method("Lease", "LeaseGrant"),
    leaseRevoke: method("Lease", "LeaseRevoke"),
    leaseTimeToLive: method("Lease", "LeaseTimeToLive"),
    leaseKeepAlive: method("Lease", "LeaseKeepAlive"),
    status: method("Maintenance", "Status"),
    authenticate: method("Auth", "Authenticate"),
  };
}

/** `genericMethods`, with the messages of every grant and release (proto.ts) encoded and decoded by hand. */
export function etcdMethods() {
  const generic = genericMethods();
  return {
    ...generic,
    range: { path: generic.range.path, encode: encodeRangeRequest, decode: decodeRangeResponse },
    txn: { path: generic.txn.path, encode: encodeTxnRequest, decode: decodeTxnResponse },
    leaseKeepAlive: {
      path: generic.leaseKeepAlive.path,
      encode: encodeLeaseKeepAliveRequest,
      decode: decodeLeaseKeepAliveResponse,
    },
  };
}

export interface ChannelOptions {
  endpoints: string[];
  timeoutMs: number;
  tls?: { ca?: string; cert?: string; key?: string };
  username?: string;
  password?: string;
  /** Streams a connection opens before it is replaced (tests set a small one). */
  streamsPerConnection?: number;
}

const STATUS_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];
const UNKNOWN = 2;
const RESOURCE_EXHAUSTED = 8;
const INTERNAL = 13;
const UNAVAILABLE = 14;

/** The largest answer taken, as grpc-js's default (4 MiB). */
const MAX_MESSAGE = 4 * 1024 * 1024;

/**
 * A call's failure as grpc-js reports one (`code`, `details`, "14 UNAVAILABLE: ..."),
 * cast to etcd3's error classes: what the transport's callers already translate.
 */
export function grpcError(code: number, details: string): Error {
  const err = Object.assign(new Error(`${code} ${STATUS_NAMES[code] ?? "UNKNOWN"}: ${details}`), { code, details });
  return castGrpcError(err);
}

/** `message` with the 5-byte gRPC prefix (not compressed, length). */
function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** Splits gRPC frames out of a stream's DATA, across chunk boundaries. */
export class FrameReader {
  private buffered: Buffer | undefined;

  /** The messages complete so far; throws a grpcError on a frame it cannot take. */
  push(chunk: Buffer): Buffer[] {
    let buf = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    const out: Buffer[] = [];
    while (buf.length >= 5) {
      if (buf[0] !== 0) throw grpcError(INTERNAL, "etcd sent a compressed message, which was not asked for");
      const length = buf.readUInt32BE(1);
      if (length > MAX_MESSAGE) {
        throw grpcError(RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs. ${MAX_MESSAGE})`);
      }
      if (buf.length < 5 + length) break;
      out.push(buf.subarray(5, 5 + length));
      buf = buf.subarray(5 + length);
    }
    this.buffered = buf.length > 0 ? buf : undefined;
    return out;
  }
}

/** The gRPC status of an answer: from its trailers, or from its headers when it had no body. */
function statusOf(headers: IncomingHttpHeaders | undefined, trailers: IncomingHttpHeaders | undefined) {
  const from = trailers?.["grpc-status"] !== undefined ? trailers : headers;
  const raw = from?.["grpc-status"];
  if (raw === undefined) return undefined;
  const code = Number(raw);
  let details = String(from?.["grpc-message"] ?? "");
  try {
    details = decodeURIComponent(details);
  } catch {}
  return { code: Number.isInteger(code) && code >= 0 ? code : UNKNOWN, details };
}

/** How long a member that could not be reached, or went silent, is passed over (with several members). */
const SKIP_MS = 1_000;

/**
 * Streams one connection opens before later calls go to a fresh one: a client's stream
 * IDs are odd and end at 2^31 - 1, and a connection out of them can open no stream again
 * (every call on it would fail, forever, at about 2^30 calls).
 */
const STREAMS_PER_CONNECTION = 2 ** 30 - 2 ** 16;

/** One member's HTTP/2 connection, opened when first needed and again after it ends. */
class Member {
  private session: ClientHttp2Session | undefined;
  /** Streams opened on `session`. */
  private opened = 0;
  /** Until when calls pass this member over; 0 while it is thought up. */
  private skipUntil = 0;
  /** A connection whose ping is awaited: until it answers, calls pass this member over. */
  private probing: Http2Session | undefined;

  constructor(
    readonly origin: string,
    private readonly tls: ChannelOptions["tls"],
    private readonly pingMs: number,
    private readonly streamsPerConnection: number,
  ) {}

  /** A new stream on the member's connection (opened if need be). */
  stream(headers: OutgoingHttpHeaders): ClientHttp2Stream {
    const s = this.connected();
    const stream = s.request(headers, { endStream: false });
    if (++this.opened >= this.streamsPerConnection) {
      // The streams open on it finish; the next call connects anew.
      this.session = undefined;
      s.close();
    }
    return stream;
  }

  /**
   * Whether calls should pass this member over now: it could not be reached or went silent
   * lately, or a ping it owes is awaited. Once its time is out it comes back only after a
   * ping on a fresh connection is answered, so no call waits out its deadline on a member
   * that is still paused (the kernel accepts its connections, nothing answers on them).
   */
  skipped(now: number): boolean {
    if (this.probing) return true;
    if (this.skipUntil === 0) return false;
    if (this.skipUntil > now) return true;
    this.probe(this.connected());
    return true;
  }

  /** It could not be reached: passed over for a while. */
  skip(): void {
    this.skipUntil = Date.now() + SKIP_MS;
  }

  /**
   * A call on `s` missed its deadline, or a stream's requests went unanswered: if `s`
   * never came up, is closing, or does not answer a ping in time, it is dropped (the
   * streams left on it fail) and the member passed over for a while; nothing else ends a
   * connection to a peer that just stops answering.
   */
  suspect(s: Http2Session | undefined): void {
    if (!s || s.destroyed || this.probing === s) return;
    if (s.connecting || s.closed) this.failed(s);
    else this.probe(s);
  }

  close(): void {
    const s = this.session;
    this.session = undefined;
    s?.destroy();
  }

  /** Pings `s` (once it is connected: Node cancels a ping sent before), within `pingMs`. */
  private probe(s: Http2Session): void {
    this.probing = s;
    const settle = (ok: boolean) => {
      clearTimeout(timer);
      s.off("connect", ping);
      s.off("close", closed);
      if (!ok) return this.failed(s);
      if (this.probing === s) this.probing = undefined;
      this.skipUntil = 0;
    };
    const timer = setTimeout(() => settle(false), this.pingMs);
    timer.unref();
    const closed = () => settle(false);
    const ping = () => {
      try {
        s.ping((err) => settle(!err));
      } catch {
        settle(false);
      }
    };
    s.once("close", closed);
    if (s.connecting) s.once("connect", ping);
    else ping();
  }

  private failed(s: Http2Session): void {
    if (this.probing === s) this.probing = undefined;
    this.skip();
    if (this.session === s) this.session = undefined;
    if (!s.destroyed) s.destroy();
  }

  private connected(): ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const tls = this.tls;
    const s = connect(this.origin, {
      ...(tls?.ca ? { ca: tls.ca } : {}),
      ...(tls?.cert ? { cert: tls.cert } : {}),
      ...(tls?.key ? { key: tls.key } : {}),
      // As grpc-js: Node's default cap on a session's buffered memory (10 MB) makes it
      // refuse new streams under load (thousands of waiters' keep-alives and txns).
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    });
    // Calls in flight keep the process up through their timers; an idle connection must not.
    s.unref();
    s.on("error", () => {}); // each stream reports the failure to its own call
    s.on("goaway", () => {
      // No new streams on it: the ones open finish, later calls connect anew.
      if (this.session === s) this.session = undefined;
    });
    s.on("close", () => {
      if (this.session === s) this.session = undefined;
    });
    // (Node's HTTP/2 turns Nagle's algorithm off on the socket itself.)
    this.session = s;
    this.opened = 0;
    return s;
  }
}

/** Marks the errors of requests that never reached etcd: only those may go to another member. */
const UNSENT = Symbol("unsent");

const unsent = (err: Error): Error => Object.assign(err, { [UNSENT]: true });

/** Whether etcd never saw the request that failed with `err` (so it may be sent again). */
export const wasUnsent = (err: unknown): boolean => err instanceof Error && UNSENT in err;

/** The transport's failure of a stream that got no gRPC status, as etcd3's error for it. */
function transportError(err: Error | undefined, wasUp: boolean, rstCode: number | undefined): Error {
  const cause = err ? ((err.cause as Error | undefined)?.message ?? err.message) : undefined;
  if (!wasUp) return unsent(grpcError(UNAVAILABLE, `No connection established${cause ? ` (${cause})` : ""}`));
  // What a member that is going away (GOAWAY) answers to streams it will not process.
  if (rstCode === constants.NGHTTP2_REFUSED_STREAM) {
    return unsent(grpcError(UNAVAILABLE, "Connection dropped (the member refused the stream: it is going away)"));
  }
  if (rstCode !== undefined && rstCode !== constants.NGHTTP2_NO_ERROR) {
    return grpcError(INTERNAL, `Received RST_STREAM with code ${rstCode}`);
  }
  return grpcError(UNAVAILABLE, `Connection dropped${cause ? ` (${cause})` : ""}`);
}

/**
 * Follows one stream to its end: `data` gets each DATA chunk (and may answer an error
 * that cancels the stream), `end` what it ended with: `undefined` for gRPC status OK,
 * else the error (etcd's status, an answer that is not gRPC, or the transport's failure).
 */
function track(
  stream: ClientHttp2Stream,
  data: (chunk: Buffer) => Error | undefined,
  end: (err: Error | undefined) => void,
): void {
  // Whether the connection ever came up (settings exchanged): if not, etcd never saw the request.
  const session = stream.session;
  let wasUp = session !== undefined && !session.connecting;
  let headers: IncomingHttpHeaders | undefined;
  let trailers: IncomingHttpHeaders | undefined;
  let failure: Error | undefined;
  let own: Error | undefined;
  stream.on("response", (h) => {
    headers = h;
    wasUp = true;
  });
  stream.on("trailers", (t) => {
    trailers = t;
  });
  stream.on("data", (chunk: Buffer) => {
    if (own) return;
    own = data(chunk);
    if (own) stream.close(constants.NGHTTP2_CANCEL);
  });
  stream.on("error", (err: Error) => {
    failure ??= err;
  });
  stream.on("close", () => {
    if (own) return end(own);
    const status = statusOf(headers, trailers);
    if (status) return end(status.code === 0 ? undefined : grpcError(status.code, status.details));
    const http = headers?.[":status"];
    if (http !== undefined && Number(http) !== 200) return end(grpcError(UNAVAILABLE, `etcd answered HTTP ${http}`));
    if (headers && !failure) return end(grpcError(INTERNAL, "etcd's answer ended without a gRPC status"));
    end(transportError(failure, wasUp || (session !== undefined && !session.connecting), stream.rstCode));
  });
}

/** What a bidirectional stream reports to its caller. */
export interface BidiEvents {
  message(buf: Buffer): void;
  /** The stream failed (etcd3's error for why), or etcd ended it (`undefined`). */
  ended(err: Error | undefined): void;
}

export interface Bidi {
  write(message: Buffer): void;
  end(): void;
}

export class GrpcChannel {
  private readonly members: Member[];
  private readonly useAuth: boolean;
  /** The token to send: a string, `null` when etcd has auth off, `undefined` until known. */
  private token: string | null | undefined;
  private authenticating: Promise<string | null> | undefined;
  private closed = false;

  constructor(
    private readonly opts: ChannelOptions,
    private readonly methods: ReturnType<typeof etcdMethods>,
  ) {
    if (opts.endpoints.length === 0) throw new Error("etcd: no endpoints");
    this.members = opts.endpoints.map(
      (e) =>
        new Member(origin(e, opts.tls), opts.tls, opts.timeoutMs, opts.streamsPerConnection ?? STREAMS_PER_CONNECTION),
    );
    this.useAuth = opts.username !== undefined && opts.username !== "";
  }

  close(): void {
    this.closed = true;
    for (const m of this.members) m.close();
  }

  /**
   * One unary call within the call deadline. Rejects with etcd3's error classes (as the
   * callers translate them), or EtcdUnavailableError when the deadline passes.
   */
  async unary<Req, Res>(method: Method<Req, Res>, req: Req, op: string): Promise<Res> {
    const body = frame(method.encode(req));
    const deadline = Date.now() + this.opts.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const token = this.currentToken();
      const used = token instanceof Promise ? await this.within(token, deadline, op) : token;
      try {
        return method.decode(await this.send(method.path, body, used, deadline, op));
      } catch (err) {
        // A token etcd no longer takes (it expired, or auth was turned off and on): once more with a fresh one.
        if (attempt === 0 && this.refused(used, err)) continue;
        throw err;
      }
    }
  }

  /**
   * Opens a bidirectional stream (the keep-alive lanes) on a random live member. A stream
   * etcd ends over its token makes the next stream fetch a fresh one.
   */
  async bidi(path: string, events: BidiEvents): Promise<Bidi> {
    const token = this.currentToken();
    const used =
      token instanceof Promise ? await this.within(token, Date.now() + this.opts.timeoutMs, "stream") : token;
    return this.onMember(async (member) => {
      let stream: ClientHttp2Stream;
      try {
        stream = member.stream(this.headers(path, used, undefined));
      } catch (err) {
        throw transportError(err as Error, false, undefined);
      }
      const session = stream.session;
      // etcd answers each request with one message: requests left unanswered for a whole
      // call deadline (counted from the last answer) make the connection suspect, so a
      // stream on a member that went silent is dropped and its lane opens a new one. Its
      // ping answered, the stream is looked at again a deadline later while requests wait
      // (the member may stop answering the pings next).
      let unanswered = 0;
      let watchdog: ReturnType<typeof setTimeout> | undefined;
      const watch = () => {
        watchdog = setTimeout(stalled, this.opts.timeoutMs);
        watchdog.unref();
      };
      const stalled = () => {
        member.suspect(session);
        if (unanswered > 0) watch();
        else watchdog = undefined;
      };
      const reader = new FrameReader();
      track(
        stream,
        (chunk) => {
          let messages: Buffer[];
          try {
            messages = reader.push(chunk);
          } catch (err) {
            return err as Error;
          }
          if (messages.length > 0) {
            unanswered = Math.max(0, unanswered - messages.length);
            if (unanswered > 0) {
              if (watchdog) watchdog.refresh();
              else watch();
            } else {
              clearTimeout(watchdog);
              watchdog = undefined;
            }
          }
          for (const m of messages) events.message(m);
          return undefined;
        },
        (err) => {
          clearTimeout(watchdog);
          watchdog = undefined;
          unanswered = 0;
          if (err && (wasUnsent(err) || isConnectionFailure(err))) member.skip();
          this.refused(used, err);
          events.ended(err);
        },
      );
      return {
        write: (message) => {
          if (stream.closed || stream.destroyed) return;
          stream.write(frame(message));
          if (unanswered++ === 0 && !watchdog) watch();
        },
        end: () => {
          if (!stream.closed && !stream.destroyed) stream.end();
        },
      };
    }, "stream");
  }

  /** One HTTP/2 request and its answer's message, on a random live member. */
  private send(path: string, body: Buffer, token: string | null | undefined, deadline: number, op: string) {
    return this.onMember(
      (member) =>
        new Promise<Buffer>((resolve, reject) => {
          const left = deadline - Date.now();
          if (left <= 0) return reject(timedOut(op, this.opts.timeoutMs));
          let stream: ClientHttp2Stream;
          try {
            stream = member.stream(this.headers(path, token, left));
          } catch (err) {
            return reject(transportError(err as Error, false, undefined));
          }
          const session = stream.session;
          const chunks: Buffer[] = [];
          let size = 0;
          let expired = false;
          const timer = setTimeout(() => {
            expired = true;
            stream.close(constants.NGHTTP2_CANCEL);
            member.suspect(session);
          }, left);
          track(
            stream,
            (chunk) => {
              size += chunk.length;
              if (size > MAX_MESSAGE + 5) {
                return grpcError(RESOURCE_EXHAUSTED, `Received message larger than max (${size} vs. ${MAX_MESSAGE})`);
              }
              chunks.push(chunk);
              return undefined;
            },
            (err) => {
              clearTimeout(timer);
              if (expired) return reject(timedOut(op, this.opts.timeoutMs));
              if (err) return reject(err);
              let messages: Buffer[];
              try {
                messages = new FrameReader().push(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
              } catch (e) {
                return reject(e);
              }
              if (messages.length !== 1) {
                return reject(grpcError(INTERNAL, `etcd sent ${messages.length} messages to a unary call`));
              }
              resolve(messages[0] as Buffer);
            },
          );
          stream.end(body);
        }),
      op,
    );
  }

  private headers(path: string, token: string | null | undefined, timeoutMs: number | undefined): OutgoingHttpHeaders {
    return {
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...(timeoutMs !== undefined ? { "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m` } : {}),
      ...(token ? { token } : {}),
    };
  }

  /**
   * Runs `fn` on the members in a random order, passing over those that could not be
   * reached or went silent lately (`Member.skipped`). A request that never reached its
   * member goes on to the next one; any other answer or error ends the rotation (a call
   * that may have reached etcd is never sent twice: a txn's outcome would be unknown).
   * Errors from a live member (e.g. "request timed out" in an election) do not make it
   * passed over.
   */
  private async onMember<T>(fn: (m: Member) => Promise<T>, op: string): Promise<T> {
    if (this.closed) throw new EtcdUnavailableError(`etcd ${op}: the client is closed`);
    const n = this.members.length;
    if (n === 1) return fn(this.members[0] as Member);
    const start = Math.floor(Math.random() * n);
    const now = Date.now();
    let last: unknown;
    for (let i = 0; i < n; i++) {
      const member = this.members[(start + i) % n] as Member;
      if (member.skipped(now)) continue;
      try {
        return await fn(member);
      } catch (err) {
        if (err instanceof Error && (wasUnsent(err) || isConnectionFailure(err))) member.skip();
        if (!wasUnsent(err)) throw err;
        last = err;
      }
    }
    throw last ?? new EtcdUnavailableError(`etcd ${op} failed: no member is answering`);
  }

  private currentToken(): string | null | undefined | Promise<string | null> {
    if (!this.useAuth) return undefined;
    if (this.token !== undefined) return this.token;
    return this.authenticate();
  }

  /** Whether `err` is etcd refusing the token `used` (then it is forgotten, unless a newer one replaced it). */
  private refused(used: string | null | undefined, err: unknown): boolean {
    if (!this.useAuth || !(err instanceof Error) || !refusesToken(err.message, used)) return false;
    if (this.token === used) this.token = undefined;
    return true;
  }

  /** Shared by concurrent callers; with auth off in etcd, calls go without a token until etcd asks for one. */
  private authenticate(): Promise<string | null> {
    this.authenticating ??= (async () => {
      try {
        const { authenticate } = this.methods;
        const credentials = { name: this.opts.username, password: this.opts.password ?? "" };
        const deadline = Date.now() + this.opts.timeoutMs;
        let token: string | null;
        try {
          const buf = await this.send(
            authenticate.path,
            frame(authenticate.encode(credentials)),
            undefined,
            deadline,
            "authenticate",
          );
          token = (authenticate.decode(buf) as { token: string }).token;
        } catch (err) {
          if (!(err instanceof Error && isAuthNotEnabled(err.message))) throw err;
          token = null;
        }
        this.token = token;
        return token;
      } finally {
        this.authenticating = undefined;
      }
    })();
    return this.authenticating;
  }

  /** `p`, or EtcdUnavailableError when `deadline` passes first. */
  private async within<T>(p: Promise<T>, deadline: number, op: string): Promise<T> {
    const d = new Deadline(deadline);
    try {
      return await d.race(p, () => timedOut(op, this.opts.timeoutMs));
    } finally {
      d.done();
    }
  }
}

/**
 * Where a member is reached: its endpoint's origin, over TLS whenever a CA or a client
 * certificate is given, whatever the endpoint's scheme says (as etcd3 took them, and so
 * the watches, which etcd3 still carries, and the calls go the same way).
 */
function origin(endpoint: string, tls: ChannelOptions["tls"]): string {
  const url = new URL(endpoint);
  if ((tls?.ca || tls?.cert) && url.protocol === "http:") {
    const port = url.port || "80";
    url.protocol = "https:";
    url.port = port;
  }
  return url.origin;
}

function timedOut(op: string, ms: number): EtcdUnavailableError {
  return new EtcdUnavailableError(`etcd ${op} timed out after ${ms} ms`);
}
