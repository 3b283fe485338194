import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What the proxy does with one request. */
export type ProxyAction =
  /** Pass it on and pass the answer back (the default). */
  | "forward"
  /** Pass it on and pass the answer back as it comes (an event stream), until `cut()`. */
  | "stream"
  /** Pass it on, read the service's whole answer, then cut the caller's connection: a lost response. */
  | "drop-response"
  /** Never answer (until the caller gives up or the proxy stops). */
  | "blackhole"
  /** Answer this instead, without asking the service. */
  | { status: number; headers?: Record<string, string>; body?: unknown };

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  action: ProxyAction;
  /** The service's answer, for forwarded and dropped requests. */
  answer?: { status: number; body: string };
}

export interface TestProxy {
  url: string;
  /** Every request, in arrival order. */
  seen: Seen[];
  /** Decides each request's fate; replace it at any time. */
  plan: (req: { method: string; url: string; headers: IncomingMessage["headers"] }) => ProxyAction;
  /** Cuts every connection the proxy has open to its callers now (a dropped stream). */
  cut(): void;
  stop(): Promise<void>;
}

/**
 * A small HTTP proxy in front of the test service that can lose responses, hang, or
 * answer in the service's place, for the failure paths of the client and CLI.
 */
export async function startProxy(upstream: string): Promise<TestProxy> {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  const proxy: TestProxy = {
    url: "",
    seen: [],
    plan: () => "forward",
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    stop: async () => {},
  };

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  async function handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const action = proxy.plan({ method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers });
    const seen: Seen = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers, body, action };
    proxy.seen.push(seen);
    if (action === "blackhole") return;
    if (typeof action === "object") {
      const text = action.body === undefined ? "" : JSON.stringify(action.body);
      res.writeHead(action.status, { "content-type": "application/problem+json", ...action.headers });
      res.end(text);
      return;
    }
    const upstreamReq = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host, connection: "close" },
        agent: false,
      },
      (up) => {
        if (action === "stream") {
          seen.answer = { status: up.statusCode ?? 0, body: "" };
          const headers = { ...up.headers };
          delete headers.connection;
          res.writeHead(up.statusCode ?? 502, headers);
          res.flushHeaders();
          up.on("data", (c: Buffer) => res.write(c));
          up.on("end", () => res.end());
          return;
        }
        const parts: Buffer[] = [];
        up.on("data", (c: Buffer) => parts.push(c));
        up.on("end", () => {
          const answer = Buffer.concat(parts);
          seen.answer = { status: up.statusCode ?? 0, body: answer.toString("utf8") };
          if (action === "drop-response") {
            req.socket.destroy();
            return;
          }
          const headers = { ...up.headers };
          delete headers.connection;
          delete headers["transfer-encoding"];
          res.writeHead(up.statusCode ?? 502, { ...headers, "content-length": String(answer.length) });
          res.end(answer);
        });
      },
    );
    // The caller hanging up is passed on, as a real proxy would.
    res.on("close", () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    upstreamReq.on("error", () => {
      if (!res.headersSent) res.destroy();
    });
    upstreamReq.end(body);
  }

  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.stop = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return proxy;
}

/** The acquires (POST /locks/{name}, not a release's POST …/release) the proxy saw. */
export const acquires = (p: TestProxy) =>
  p.seen.filter((s) => s.method === "POST" && /^\/locks\/[^/?]+(\?|$)/.test(s.url));
