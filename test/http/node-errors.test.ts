import type { AddressInfo } from "node:net";
import net from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/http/app.js";
import type { AppDeps } from "../../src/http/deps.js";
import { jsonLogger } from "../../src/http/logger.js";
import { answerHttpErrors } from "../../src/node/http-errors.js";
import { uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

/** What came back on a raw connection, read until the server closed it. */
interface RawReply {
  statusLine: string;
  status: number;
  headers: Record<string, string>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests inspect arbitrary JSON
  json: any;
}

/** Sends bytes as they are (no client library would send these) and reads until the server closes. */
function rawRequest(url: string, request: string | Buffer, hangUpAfterWrite = false): Promise<RawReply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(request, () => {
        if (hangUpAfterWrite) socket.destroy();
      });
    });
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", reject);
    socket.on("close", () => resolve(parseReply(Buffer.concat(chunks).toString("latin1"))));
  });
}

function parseReply(text: string): RawReply {
  const end = text.indexOf("\r\n\r\n");
  const head = end === -1 ? text : text.slice(0, end);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const body = end === -1 ? "" : Buffer.from(text.slice(end + 4), "latin1").toString("utf8");
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { statusLine, status: Number(statusLine.split(" ")[1]), headers, body, json };
}

function expectRawProblem(r: RawReply, status: number, code: string, detail?: RegExp) {
  expect(r.status, `${r.statusLine}\n${r.body}`).toBe(status);
  expect(r.statusLine).toMatch(new RegExp(`^HTTP/1\\.1 ${status} \\S`));
  expect(r.headers["content-type"]).toBe("application/problem+json");
  expect(r.headers.connection).toBe("close");
  expect(Number(r.headers["content-length"])).toBe(Buffer.byteLength(r.body));
  expect(r.json).toMatchObject({ type: `/problems/${code}`, title: expect.any(String), status, code });
  expect(typeof r.json.detail).toBe("string");
  if (detail) expect(r.json.detail).toMatch(detail);
}

/** Waits for the request log line of one lock name (the request log is written once the answer is made). */
async function requestLine(logs: string[], name: string): Promise<Record<string, unknown>> {
  const find = () => logs.map((l) => JSON.parse(l)).find((l) => l.msg === "request" && l.name === name);
  await until(
    () => find() !== undefined,
    () => `the request log line for ${name}:\n${logs.join("\n")}`,
    5_000,
  );
  return find();
}

const errorLines = (logs: string[]) =>
  logs.filter((l) => {
    const { level } = JSON.parse(l);
    return level === "error" || (typeof level === "number" && level >= 50);
  });

describe("the Node HTTP layer's own rejections are problem+json", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  type Case = [label: string, request: string | Buffer, status: number, code: string, detail: RegExp];
  const cases: Case[] = [
    [
      "headers over Node's limit",
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
      431,
      "headers-too-large",
      /headers/,
    ],
    ["a Host that is not a host name", "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad-request", /Host/],
    ["HTTP/1.1 without a Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, "bad-request", /Host/],
    ["a backslash in the path", "GET /locks\\x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad-request", /backslash/],
    [
      "raw non-ASCII bytes in the path",
      Buffer.concat([Buffer.from("GET /locks/"), Buffer.of(0xc3, 0xa9), Buffer.from(" HTTP/1.1\r\nHost: x\r\n\r\n")]),
      400,
      "bad-request",
      /path/,
    ],
    [
      "Transfer-Encoding with Content-Length",
      "POST /locks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
      400,
      "bad-request",
      /Transfer-Encoding/,
    ],
    ["an unknown method", "FOO /locks/x HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method-not-allowed", /FOO/],
    [
      "a header name with a space",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
      400,
      "bad-request",
      /header/,
    ],
    ["not HTTP at all", "hello\r\n\r\n", 400, "bad-request", /HTTP/],
    ["cleartext HTTP/2", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad-request", /HTTP\/1\.1/],
  ];

  it.each(cases.map(([label, request, status, code, detail]) => ({ label, request, status, code, detail })))(
    "$label → $status $code",
    async ({ request, status, code, detail }) => {
      expectRawProblem(await rawRequest(svc.url, request), status, code, detail);
    },
  );

  it("an unknown method's 405 says which methods there are", async () => {
    const r = await rawRequest(svc.url, "FOO /locks/x HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(r.headers.allow).toBe("GET, HEAD, POST, PUT, DELETE");
  });

  it("an HTTP/1.0 request without a Host still works (health checkers send those)", async () => {
    const r = await rawRequest(svc.url, "GET /healthz HTTP/1.0\r\n\r\n");
    expect(r.status, r.body).toBe(200);
    expect(r.json).toEqual({ status: "ok" });
  });

  it("a caller that hangs up mid-body is a quiet 499, not an error (Content-Length and chunked)", async () => {
    for (const framing of [
      "Content-Length: 100\r\n\r\n" + '{"ttl":',
      "Transfer-Encoding: chunked\r\n\r\n" + '7\r\n{"ttl":\r\n',
    ]) {
      const name = uniqueName("gone");
      const before = svc.logs.length;
      await rawRequest(
        svc.url,
        `POST /locks/${name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${framing}`,
        true,
      );
      const line = await requestLine(svc.logs, name);
      expect(line).toMatchObject({ level: 30, status: 499 });
      expect(errorLines(svc.logs.slice(before))).toEqual([]);
      expect(svc.logs.slice(before).join("\n")).not.toMatch(/unhandled|\n\s+at /);
      expect((await svc.direct.get(svc.prefix + name)).kv).toBeUndefined();
    }
  });
});

describe("request timeouts are 408 problem+json", () => {
  const logs: string[] = [];
  let server: ServerType;
  let url: string;
  beforeAll(async () => {
    // No etcd: these requests never get as far as the lock service.
    const log = jsonLogger((l) => logs.push(l));
    const app = createApp({ config: {}, log, docsAssets: async () => undefined } as unknown as AppDeps);
    server = await new Promise<ServerType>((resolve) => {
      const s = serve(
        {
          fetch: app.fetch,
          port: 0,
          hostname: "127.0.0.1",
          serverOptions: { headersTimeout: 300, requestTimeout: 300, connectionsCheckingInterval: 50 },
        },
        () => resolve(s),
      );
      answerHttpErrors(s, app.fetch, log);
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("headers that never finish → 408 request-timeout", async () => {
    expectRawProblem(await rawRequest(url, "GET /healthz HTTP/1.1\r\nHost: x\r\n"), 408, "request-timeout", /time/);
  });

  it("a body that never finishes → 408, and the abandoned request is a quiet 499", async () => {
    const name = uniqueName("slow");
    const r = await rawRequest(
      url,
      `POST /locks/${name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"ttl":`,
    );
    expectRawProblem(r, 408, "request-timeout", /time/);
    expect(await requestLine(logs, name)).toMatchObject({ level: "info", status: 499 });
    expect(errorLines(logs)).toEqual([]);
  });
});
