/**
 * gRPC on one HTTP/2 stream: messages framed with gRPC's 5-byte prefix, the call's status
 * from the answer's trailers (or headers), and a stream's failure as the error etcd3's
 * callers already translate (etcd3's error classes, with grpc-js's codes and wording).
 * A request that never reached etcd is marked so (`wasUnsent`): only such a request may
 * go to another member.
 */

import { type ClientHttp2Stream, constants, type IncomingHttpHeaders } from "node:http2";
import { castGrpcError } from "etcd3";

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
export const RESOURCE_EXHAUSTED = 8;
export const INTERNAL = 13;
const UNAVAILABLE = 14;

/** The largest answer taken, as grpc-js's default (4 MiB). */
export const MAX_MESSAGE = 4 * 1024 * 1024;

/**
 * A call's failure as grpc-js reports one (`code`, `details`, "14 UNAVAILABLE: ..."),
 * cast to etcd3's error classes: what the transport's callers already translate.
 */
export function grpcError(code: number, details: string): Error {
  const err = Object.assign(new Error(`${code} ${STATUS_NAMES[code] ?? "UNKNOWN"}: ${details}`), { code, details });
  return castGrpcError(err);
}

/** `message` with the 5-byte gRPC prefix (not compressed, length). */
export function frame(message: Buffer): Buffer {
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

/** Marks the errors of requests that never reached etcd: only those may go to another member. */
const UNSENT = Symbol("unsent");

const unsent = (err: Error): Error => Object.assign(err, { [UNSENT]: true });

/** Whether etcd never saw the request that failed with `err` (so it may be sent again). */
export const wasUnsent = (err: unknown): boolean => err instanceof Error && UNSENT in err;

/** The transport's failure of a stream that got no gRPC status, as etcd3's error for it. */
export function transportError(err: Error | undefined, wasUp: boolean, rstCode: number | undefined): Error {
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
export function track(
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
