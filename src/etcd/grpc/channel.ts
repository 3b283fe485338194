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
 *
 * The parts: methods.ts (each method's path and codec; proto.ts and wire.ts encode the
 * busiest messages by hand), frames.ts (gRPC framing and status on one stream, and its
 * failure as etcd3's error), member.ts (one member's connection and whether to pass it
 * over); this file, the calls.
 */

import { type ClientHttp2Stream, constants, type OutgoingHttpHeaders } from "node:http2";
import { Deadline } from "../../timers.js";
import { isAuthNotEnabled, refusesToken } from "../gateway/codec.js";
import { EtcdUnavailableError } from "../types.js";
import { isConnectionFailure } from "./codec.js";
import {
  FrameReader,
  frame,
  grpcError,
  INTERNAL,
  MAX_MESSAGE,
  RESOURCE_EXHAUSTED,
  track,
  transportError,
  wasUnsent,
} from "./frames.js";
import { Member, type MemberTls, origin, STREAMS_PER_CONNECTION } from "./member.js";
import type { etcdMethods, Method } from "./methods.js";

export interface ChannelOptions {
  endpoints: string[];
  timeoutMs: number;
  tls?: MemberTls;
  username?: string;
  password?: string;
  /** Streams a connection opens before it is replaced (tests set a small one). */
  streamsPerConnection?: number;
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

function timedOut(op: string, ms: number): EtcdUnavailableError {
  return new EtcdUnavailableError(`etcd ${op} timed out after ${ms} ms`);
}
