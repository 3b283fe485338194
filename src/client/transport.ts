/**
 * How the client sends a call and reads its whole answer. Two ways: the runtime's `fetch`
 * (everywhere, and whenever the caller passes a `fetch`), and on Node the `node:http`
 * client with a keep-alive agent. Event streams always use `fetch` (see observe.ts).
 *
 * Why Node gets its own: on Node, `fetch` (undici) spends most of a caller's CPU on a call
 * in its own machinery (the fetch algorithm's steps, web streams for every body, header
 * lists), several times what `node:http` spends on the same exchange; measured in one
 * process against a bare server, an acquire + release cost 0.57–1.2 ms of CPU over fetch
 * and 0.11–0.16 ms over `node:http` (BENCHMARKS.md, session 11). A lock client's callers
 * pay that on every call.
 */

/** The parts of an answer the client reads. */
export interface Reply {
  status: number;
  statusText: string;
  headers: { get(name: string): string | null };
  /** The body, whole, as UTF-8 text ("" when none). */
  text: string;
  /** fetch's `opaqueredirect`: a redirect answered to `redirect: "manual"` in a browser. */
  opaqueRedirect?: boolean;
}

export interface Call {
  method: string;
  headers: Record<string, string>;
  body?: string;
  /** Aborts the call, whatever stage it is at (connecting, sending, reading the body). */
  signal: AbortSignal;
}

/**
 * Sends a call. A failure with no answer rejects with the cause as a `TypeError` whose
 * `cause` says what went wrong (as `fetch` does); a redirect is an answer like any other.
 */
export type Send = (url: string, call: Call) => Promise<Reply>;

/** The transport over a `fetch`: never following a redirect (`redirect: "manual"`). */
export function fetchSend(fetchFn: typeof fetch, extra: RequestInit = {}): Send {
  return async (url, call) => {
    const res = await fetchFn(url, {
      method: call.method,
      headers: call.headers,
      redirect: "manual",
      ...extra,
      signal: call.signal,
      ...(call.body !== undefined ? { body: call.body } : {}),
    });
    const text = await readText(res, call.signal);
    return {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
      text,
      ...(res.type === "opaqueredirect" ? { opaqueRedirect: true } : {}),
    };
  };
}

/**
 * An answer's body as text, read here rather than with `res.text()` so that when `signal`
 * fires the body is cancelled (which closes the connection) and the read ends at once,
 * whatever the runtime's fetch did with the signal. (Node's fetch, asked not to clone a
 * request, loses the link from the signal to the answer's body once the garbage collector
 * has run: the internal request, reached only through a weak reference, is gone.)
 */
async function readText(res: Response, signal: AbortSignal): Promise<string> {
  const body = res.body;
  if (!body) return "";
  const reader = body.getReader();
  const cancel = () => {
    reader.cancel(signal.reason).catch(() => {});
  };
  if (signal.aborted) cancel();
  else signal.addEventListener("abort", cancel, { once: true });
  try {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    if (signal.aborted) throw signal.reason;
    return decode(chunks);
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}

const utf8 = new TextDecoder();
const encoder = new TextEncoder();

function decode(chunks: Uint8Array[]): string {
  if (chunks.length === 0) return "";
  if (chunks.length === 1) return utf8.decode(chunks[0]);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return utf8.decode(out);
}

// The few parts of Node's http client used here, written out so the client's types need
// no Node typings (it also runs in Workers, browsers, Deno and Bun).
interface NodeIncoming {
  /** The whole message has been parsed. */
  complete: boolean;
  statusCode?: number;
  statusMessage?: string;
  headers: Record<string, string | string[] | undefined>;
  on(event: "data", f: (chunk: Uint8Array) => void): unknown;
  on(event: "end" | "close", f: () => void): unknown;
  on(event: "error", f: (err: Error) => void): unknown;
}
interface NodeRequest {
  /** Sent on a connection kept alive from an earlier call. */
  reusedSocket: boolean;
  on(event: "error", f: (err: Error) => void): unknown;
  end(body?: Uint8Array): unknown;
  destroy(err?: Error): unknown;
}
interface NodeHttp {
  Agent: new (o: { keepAlive: boolean; timeout: number }) => unknown;
  request(
    url: URL,
    o: { method: string; headers: Record<string, string>; agent: unknown },
    onResponse: (res: NodeIncoming) => void,
  ): NodeRequest;
}

/**
 * On Node: calls over `node:http` / `node:https`, on one keep-alive agent per protocol for
 * the process (as fetch shares one pool), so consecutive calls reuse a connection. Node's
 * agent leaves an idle connection unreferenced: it never keeps a process alive. No
 * redirect is followed (`node:http` never does). `undefined` where that client is not
 * at hand synchronously (not Node, or a Node without `process.getBuiltinModule`).
 */
export function nodeSend(): Send | undefined {
  const modules = nodeHttp();
  if (!modules) return undefined;
  return (url, call) => {
    const u = new URL(url);
    const m = u.protocol === "https:" ? modules.https : u.protocol === "http:" ? modules.http : undefined;
    // (A URL with credentials never gets here: the client refuses it when created.)
    if (!m) return Promise.reject(new TypeError(`cannot send to ${u.protocol} URLs`));
    const body = call.body === undefined ? undefined : encoder.encode(call.body);
    const headers = body ? { ...call.headers, "content-length": String(body.length) } : call.headers;
    return exchange(m, u, call.method, headers, body, call.signal).catch((err: unknown) => {
      // A kept-alive connection that broke as this call went out on it, before any byte
      // of an answer: most often the server closing it as idle at that moment (a server
      // that does not announce its keep-alive timeout does this to a client now and then;
      // fetch fails the call). It goes once more, on a new connection. Every call the
      // client makes may be sent twice: an acquire carries its Idempotency-Key, and a
      // renew, release, leave or state write of the same grant is answered the same way
      // (or as already done) the second time.
      if (!(err instanceof Unsent) || call.signal.aborted) throw err instanceof Unsent ? err.failure : err;
      // `agent: false`: a connection of its own (the pool's other idle ones may be going too).
      const fresh = { module: m.module, agent: false };
      return exchange(fresh, u, call.method, headers, body, call.signal).catch((again: unknown) => {
        throw again instanceof Unsent ? again.failure : again;
      });
    });
  };
}

/** A call that failed on a reused connection before any of its answer arrived. */
class Unsent extends Error {
  constructor(readonly failure: TypeError) {
    super(failure.message);
  }
}

function exchange(
  m: { module: NodeHttp; agent: unknown },
  u: URL,
  method: string,
  headers: Record<string, string>,
  body: Uint8Array | undefined,
  signal: AbortSignal,
): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    let settled = false;
    let answer: NodeIncoming | undefined;
    const chunks: Uint8Array[] = [];
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      f();
    };
    const replied = (res: NodeIncoming) =>
      settle(() =>
        resolve({
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? "",
          headers: {
            get(name) {
              const v = res.headers[name.toLowerCase()];
              return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
            },
          },
          text: decode(chunks),
        }),
      );
    const failed = (err: Error) => {
      // The whole answer was parsed (its length, or its last chunk) when the connection
      // failed: bytes after it (a 204 that carried a body, a body longer than its
      // Content-Length) break the connection, not the answer, as fetch has it. Its body
      // is still on its way to the listeners below (Node reports the error first), and
      // 'end' (or 'close') settles the call.
      if (answer?.complete) return;
      const failure = new TypeError("request failed", { cause: err });
      settle(() => reject(!answer && req.reusedSocket && isReset(err) ? new Unsent(failure) : failure));
    };
    const req = m.module.request(u, { method, headers, agent: m.agent }, (res) => {
      answer = res;
      res.on("data", (chunk) => {
        chunks.push(chunk);
      });
      res.on("end", () => replied(res));
      res.on("error", failed);
      // The connection went before the answer ended (or after it, with the bytes above).
      res.on("close", () =>
        res.complete ? replied(res) : failed(new Error("the connection closed before the answer ended")),
      );
    });
    // The deadline (or the caller) ends the call at any stage: destroying the request
    // closes its connection, which an answer half read cannot be reused after anyway.
    function onAbort() {
      settle(() => reject(signal.reason));
      req.destroy();
    }
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("error", failed);
    req.end(body);
  });
}

function isReset(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code === "ECONNRESET" || code === "EPIPE";
}

interface NodeHttpModules {
  http: { module: NodeHttp; agent: unknown };
  https: { module: NodeHttp; agent: unknown };
}

/**
 * An idle connection is closed after 4 s (as fetch does), or 1 s before the server's
 * announced keep-alive timeout when that is sooner: a call sent on a connection the
 * server is closing at that moment would fail with a reset. (The timeout applies to idle
 * connections only: a call waiting longer for its answer is not cut.)
 */
const AGENT = { keepAlive: true, timeout: 4_000 };

let shared: NodeHttpModules | null | undefined;

/**
 * Node itself. Deno and Bun say they are Node too, and so do Workers with Node
 * compatibility (whose node:http is made over fetch): they are not, here.
 */
export function isNode(): boolean {
  const versions = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions;
  const workers = (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent === "Cloudflare-Workers";
  return typeof versions?.node === "string" && !("Deno" in globalThis) && !("Bun" in globalThis) && !workers;
}

function nodeHttp(): NodeHttpModules | undefined {
  if (shared !== undefined) return shared ?? undefined;
  shared = null;
  try {
    if (!isNode()) return undefined;
    const get = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
    if (typeof get !== "function") return undefined;
    const http = get("node:http") as NodeHttp | undefined;
    const https = get("node:https") as NodeHttp | undefined;
    if (!http?.request || !https?.request) return undefined;
    shared = {
      http: { module: http, agent: new http.Agent(AGENT) },
      https: { module: https, agent: new https.Agent(AGENT) },
    };
  } catch {
    shared = null;
  }
  return shared ?? undefined;
}
