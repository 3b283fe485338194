/**
 * One etcd member as the gRPC channel reaches it: its HTTP/2 connection, opened when first
 * needed and again after it ends, and whether calls should pass it over for now (it could
 * not be reached, or went silent and has not answered a ping since).
 */

import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type Http2Session,
  type OutgoingHttpHeaders,
} from "node:http2";

/** TLS material for the members' connections (PEM contents). */
export interface MemberTls {
  ca?: string;
  cert?: string;
  key?: string;
}

/** How long a member that could not be reached, or went silent, is passed over (with several members). */
const SKIP_MS = 1_000;

/**
 * Streams one connection opens before later calls go to a fresh one: a client's stream
 * IDs are odd and end at 2^31 - 1, and a connection out of them can open no stream again
 * (every call on it would fail, forever, at about 2^30 calls).
 */
export const STREAMS_PER_CONNECTION = 2 ** 30 - 2 ** 16;

/** One member's HTTP/2 connection, opened when first needed and again after it ends. */
export class Member {
  private session: ClientHttp2Session | undefined;
  /** Streams opened on `session`. */
  private opened = 0;
  /** Until when calls pass this member over; 0 while it is thought up. */
  private skipUntil = 0;
  /** A connection whose ping is awaited: until it answers, calls pass this member over. */
  private probing: Http2Session | undefined;

  constructor(
    readonly origin: string,
    private readonly tls: MemberTls | undefined,
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

/**
 * Where a member is reached: its endpoint's origin, over TLS whenever a CA or a client
 * certificate is given, whatever the endpoint's scheme says (as etcd3 took them, and so
 * the watches, which etcd3 still carries, and the calls go the same way).
 */
export function origin(endpoint: string, tls: MemberTls | undefined): string {
  const url = new URL(endpoint);
  if ((tls?.ca || tls?.cert) && url.protocol === "http:") {
    const port = url.port || "80";
    url.protocol = "https:";
    url.port = port;
  }
  return url.origin;
}
