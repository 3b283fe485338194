import { type IncomingMessage, maxHeaderSize, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { getRequestListener, RequestError, type ServerType } from "@hono/node-server";
import { problemResponse } from "../http/errors.js";
import type { Logger } from "../http/logger.js";
import { Problem } from "../problems.js";

type FetchCallback = Parameters<typeof getRequestListener>[0];

/**
 * Gives the answers the app never sees a problem+json body, like every answer it makes.
 * Node's HTTP parser rejects what it cannot read (headers over its limit, a request that
 * took too long, an unknown method, Content-Length with Transfer-Encoding, bytes HTTP
 * forbids) and @hono/node-server rejects what it cannot turn into a URL (a bad or missing
 * Host, a backslash in the path); both answer with an empty body, which leaves a caller
 * guessing. Call once on the server `serve()` returned, before it takes requests.
 */
export function answerHttpErrors(server: ServerType, fetch: FetchCallback, log: Logger): void {
  // Both are set from the constructor's options and read per request; @types/node omits them.
  const http = server as Server & { requireHostHeader: boolean; maxHeaderSize?: number };
  // `serve()` builds its request listener without an error handler; this is the same
  // listener with one. "localhost" stands in for the Host an HTTP/1.0 request may omit.
  const listener = getRequestListener(fetch, {
    hostname: "localhost",
    errorHandler: (err) => (err instanceof RequestError ? unreadable(err) : unexpected(err, log)),
  });
  // Node would answer a missing Host itself, with an empty 400; the check moves here.
  http.requireHostHeader = false;
  http.removeAllListeners("request");
  http.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.host === undefined && req.httpVersion === "1.1") {
      const body = JSON.stringify(missingHost().toJSON());
      res.writeHead(400, {
        "content-type": "application/problem+json",
        "content-length": Buffer.byteLength(body),
        connection: "close",
      });
      res.end(body);
      return;
    }
    void listener(req, res);
  });

  const answered = new WeakSet<Duplex>();
  http.on("clientError", (err: ParserError, socket: Duplex) => {
    // After its first error the parser reports again for every later chunk: answer once.
    if (answered.has(socket)) return;
    answered.add(socket);
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
    // Nobody to answer, or an answer already under way that raw bytes would corrupt.
    if (err.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const problem = parserProblem(err, http.maxHeaderSize ?? maxHeaderSize);
    if (log.infoEnabled) log.info("request rejected", { status: problem.status, code: problem.code, reason: err.code });
    socket.end(rawAnswer(problem), () => {
      // A request the app is still reading (a body that timed out): closing the socket
      // ends it, and the app sees a caller that went away.
      if (inFlight) socket.destroy();
    });
    if (!inFlight) {
      // Half-closed: the caller reads the answer and closes; a caller that never does is cut off.
      const timer = setTimeout(() => socket.destroy(), 5_000);
      timer.unref();
      socket.once("close", () => clearTimeout(timer));
    }
  });
}

/** What Node's parser attaches to the errors it reports (`reason` and `rawPacket` are llhttp's). */
type ParserError = Error & { code?: string; reason?: string; rawPacket?: Buffer };

const ALL_METHODS = "GET, HEAD, POST, PUT, DELETE";

function parserProblem(err: ParserError, headerLimit: number): Problem {
  switch (err.code) {
    case "HPE_HEADER_OVERFLOW":
      return new Problem("headers-too-large", `the request line and headers exceed ${headerLimit} bytes`);
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new Problem("request-timeout", "the request's headers or body did not arrive in time");
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return new Problem("payload-too-large", "the chunk extensions of the request body are too large");
    case "HPE_INVALID_METHOD": {
      const method = /^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) /.exec(err.rawPacket?.toString("latin1", 0, 40) ?? "")?.[1];
      // 405 like any other method a route does not take (a 5xx would count a caller's
      // mistake as a server fault); the path was not read, so Allow lists every method.
      if (method) {
        return new Problem(
          "method-not-allowed",
          `${method} is not a method this server implements; use ${ALL_METHODS}`,
          {},
          { allow: ALL_METHODS },
        );
      }
      return new Problem("bad-request", "the request does not start with an HTTP request line (METHOD /path HTTP/1.1)");
    }
    case "HPE_INVALID_URL":
      return new Problem(
        "bad-request",
        "the request path has a character HTTP does not allow there; percent-encode it (é is %C3%A9)",
      );
    case "HPE_PAUSED_H2_UPGRADE":
      return new Problem("bad-request", "HTTP/2 without TLS (prior knowledge) is not served here; use HTTP/1.1");
    case "HPE_INVALID_HEADER_TOKEN":
      return new Problem("bad-request", "a header name or value has a character HTTP does not allow");
    default:
      return new Problem("bad-request", `the request is not valid HTTP/1.1: ${err.reason ?? err.message}`);
  }
}

/** A request Node parsed but @hono/node-server could not turn into a URL. */
function unreadable(err: RequestError): Response {
  const message = err.message.toLowerCase();
  const problem = message.includes("backslash")
    ? new Problem("bad-request", 'the request path contains a backslash; use "/" between segments')
    : message.includes("host")
      ? missingHost()
      : // A bad Host also ends up here: the URL made of the two did not parse.
        new Problem(
          "bad-request",
          "the path must start with / and the Host header must be a host name and optional :port",
        );
  const res = problemResponse(problem);
  res.headers.set("connection", "close");
  return res;
}

function missingHost(): Problem {
  return new Problem("bad-request", "the Host header is missing or is not a host name with an optional :port");
}

function unexpected(err: unknown, log: Logger): Response {
  log.error("unhandled error", { err: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  return problemResponse(new Problem("internal-error", "an unexpected error occurred; it has been logged"));
}

/** A whole HTTP/1.1 response, written straight to the socket (no ServerResponse exists for it). */
function rawAnswer(problem: Problem): string {
  const body = JSON.stringify(problem.toJSON());
  return (
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? problem.title}\r\n` +
    "content-type: application/problem+json\r\n" +
    Object.entries(problem.headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join("") +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `date: ${new Date().toUTCString()}\r\n` +
    "connection: close\r\n\r\n" +
    body
  );
}
