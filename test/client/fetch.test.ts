import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient, LeaseholdError } from "../../src/client/index.js";
import { uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

// How the official client uses the runtime's fetch: never following a redirect, never
// cloning a call's request on Node, and keeping every call's deadline and every event
// stream's close whatever Node's fetch does with the abort signal after a collection.

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const collect = async () => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
};

interface Counted {
  server: Server;
  url: string;
  requests: { method: string; url: string; body: string }[];
  /** TCP connections accepted so far. */
  connections(): number;
}

async function serve(
  answer: (res: import("node:http").ServerResponse, request: Counted["requests"][number], nth: number) => void,
): Promise<Counted> {
  const requests: Counted["requests"] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      const request = { method: req.method ?? "", url: req.url ?? "", body };
      requests.push(request);
      answer(res, request, requests.length);
    });
  });
  server.on("connection", () => {
    connections++;
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    connections: () => connections,
  };
}

/**
 * A raw TCP server speaking just enough HTTP/1.1 to answer in ways node:http's server
 * won't: `answer` gets each request's head (requests are one packet here) and its
 * number on its connection.
 */
function netServer(answer: (socket: Socket, request: string, nth: number) => void) {
  let requests = 0;
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let nth = 0;
    socket.on("data", (d) => {
      requests++;
      answer(socket, d.toString("latin1"), ++nth);
    });
  });
  const listening = new Promise<string>((r) =>
    server.listen(0, "127.0.0.1", () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
  return {
    listening,
    requests: () => requests,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

let target: Counted;
let redirecting: Counted;
beforeAll(async () => {
  target = await serve((res) => {
    res.writeHead(201, { "content-type": "application/json" });
    res.end(
      JSON.stringify({ name: "x", token: 1, lease: "0123456789abcdef", ttl: 30, expiresAt: new Date().toISOString() }),
    );
  });
  redirecting = await serve((res) => {
    res.writeHead(307, { location: `${target.url}/elsewhere` });
    res.end();
  });
});
afterAll(async () => {
  for (const s of [target, redirecting]) await new Promise((r) => s?.server.close(r));
});

describe("the official client does not follow redirects", () => {
  it("an acquire answered with a redirect fails with `redirected`, once, and nothing reaches the target", async () => {
    const client = createClient({ url: redirecting.url, timeoutMs: 3_000 });
    const err = await client.acquire("job", { ttl: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseholdError);
    expect((err as LeaseholdError).code).toBe("redirected");
    expect((err as LeaseholdError).message).toMatch(/redirect.*point the client at the service itself/);
    expect(redirecting.requests).toHaveLength(1);
    expect(target.requests).toHaveLength(0);
  });

  it("a release answered with a redirect does not send the lease on", async () => {
    const client = createClient({ url: redirecting.url, timeoutMs: 3_000 });
    const lease = "00112233445566778899aabbccddeeff";
    const err = await client.release("job", lease).catch((e: unknown) => e);
    expect((err as LeaseholdError).code).toBe("redirected");
    expect(redirecting.requests.at(-1)?.body).toContain(lease);
    expect(target.requests).toHaveLength(0);
  });
});

describe("a fetch passed in", () => {
  it('is asked for redirect: "manual", and a 3xx is `redirected` with its status', async () => {
    const seen: RequestInit[] = [];
    const client = createClient({
      url: redirecting.url,
      fetch: (input, init) => {
        seen.push(init ?? {});
        return fetch(input, init);
      },
    });
    const err = await client.acquire("job", { ttl: 5 }).catch((e: unknown) => e);
    expect((err as LeaseholdError).code).toBe("redirected");
    expect((err as LeaseholdError).status).toBe(307);
    expect(seen.map((i) => i.redirect)).toEqual(["manual"]);
    expect(target.requests).toHaveLength(0);
  });
});

describe("on Node, calls go over node:http, one kept-alive connection for many calls", () => {
  const original = globalThis.fetch;
  afterEach(() => {
    globalThis.fetch = original;
  });

  // Node's fetch costs a caller several times the CPU of node:http per call
  // (src/client/transport.ts); event streams keep fetch.
  it("twenty acquires and releases in turn: no fetch, one connection, every answer read", async () => {
    let fetched = 0;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
      fetched++;
      return original(input, init);
    }) as typeof fetch;
    const stub = await serve((res, request, nth) => {
      if (request.url.endsWith("/release")) {
        res.writeHead(204);
        res.end();
        return;
      }
      res.writeHead(201, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          name: "job",
          token: nth,
          lease: "0123456789abcdef",
          ttl: 30,
          expiresAt: new Date(Date.now() + 30_000).toISOString(),
        }),
      );
    });
    const seen = stub.requests;
    try {
      const client = createClient({ url: stub.url });
      for (let i = 0; i < 20; i++) {
        const g = await client.acquire("job", { ttl: 30 });
        expect(g.token).toBe(2 * i + 1);
        await client.release("job", g.lease);
      }
      expect(fetched).toBe(0);
      expect(stub.connections()).toBe(1);
      expect(seen).toHaveLength(40);
      expect(seen[1]).toMatchObject({ method: "POST", url: "/locks/job/release" });
      expect(JSON.parse(seen[1]?.body ?? "")).toEqual({ lease: "0123456789abcdef" });
    } finally {
      stub.server.closeAllConnections();
      await new Promise((r) => stub.server.close(r));
    }
  });

  it("a complete answer stands when bytes follow it (a 204 with a body, a body past its length), as with fetch", async () => {
    const raw = netServer((socket, request) => {
      if (request.startsWith("POST /locks/job/release")) socket.write("HTTP/1.1 204 No Content\r\n\r\n{}");
      else {
        const grant = JSON.stringify({
          name: "job",
          token: 9,
          lease: "0123456789abcdef",
          ttl: 30,
          expiresAt: new Date().toISOString(),
        });
        socket.write(
          `HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: ${grant.length}\r\n\r\n${grant}trailing`,
        );
      }
    });
    const url = await raw.listening;
    try {
      const client = createClient({ url, timeoutMs: 3_000 });
      const g = await client.acquire("job", { ttl: 30 });
      expect(g.token).toBe(9);
      await client.release("job", g.lease);
    } finally {
      await raw.close();
    }
  });

  it("a call on a kept-alive connection that breaks before any answer goes once more, on a new connection", async () => {
    // Each connection answers its first request and drops the second unanswered: what a
    // server closing an idle connection as a call goes out on it looks like.
    const raw = netServer((socket, _request, nth) => {
      if (nth > 1) {
        socket.destroy();
        return;
      }
      socket.write("HTTP/1.1 204 No Content\r\n\r\n");
    });
    const url = await raw.listening;
    try {
      const client = createClient({ url, timeoutMs: 3_000 });
      for (let i = 0; i < 4; i++) await client.release("job", "00112233445566778899aabbccddeeff");
      // Calls 1 and 3 went on new pooled connections; calls 2 and 4 went out on the kept
      // one, were dropped, and went again on a connection of their own: 6 requests on 4.
      expect(raw.requests()).toBe(6);
      expect(raw.connections()).toBe(4);
    } finally {
      await raw.close();
    }
  });

  it("a call on a new connection that breaks before any answer is a network-error, not sent again", async () => {
    const raw = netServer((socket) => {
      socket.destroy();
    });
    const url = await raw.listening;
    try {
      const client = createClient({ url, timeoutMs: 3_000 });
      const err = await client.release("job", "00112233445566778899aabbccddeeff").catch((e: unknown) => e);
      expect((err as LeaseholdError).code).toBe("network-error");
      expect(raw.requests()).toBe(1);
    } finally {
      await raw.close();
    }
  });

  it("a connection refused is a network-error naming the cause", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const client = createClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 2_000 });
    const err = await client.release("job", "00112233445566778899aabbccddeeff").catch((e: unknown) => e);
    expect((err as LeaseholdError).code).toBe("network-error");
    expect((err as LeaseholdError).status).toBe(0);
    expect((err as LeaseholdError).message).toContain("ECONNREFUSED");
  });
});

describe("what no call can carry is refused before anything is sent, and never quoted", () => {
  it.each([
    ["user and password", (u: string) => u.replace("http://", "http://user:secret@")],
    ["two @", (u: string) => u.replace("http://", "http://u:p@secret@")],
    ["no slashes", (u: string) => u.replace("http://", "http:u:secret@")],
    ["a leading space", (u: string) => ` ${u.replace("http://", "http://u:secret@")}`],
  ])("a URL with credentials (%s): createClient throws, naming no part of it", (_, form) => {
    let err: unknown;
    try {
      createClient({ url: form(target.url) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TypeError);
    expect(String(err)).toMatch(/user name or password/);
    expect(String(err)).not.toContain("secret");
  });

  it("an API key with a line break: createClient throws without the key", () => {
    expect(() => createClient({ url: target.url, apiKey: "sekrit\r\nx-evil: 1" })).toThrow(TypeError);
    try {
      createClient({ url: target.url, apiKey: "sekrit\r\nx-evil: 1" });
    } catch (e) {
      expect(String(e)).not.toContain("sekrit");
    }
  });

  it("an Idempotency-Key with a line break fails at once, not retried, and sends nothing", async () => {
    const before = target.requests.length;
    const client = createClient({ url: target.url });
    const started = performance.now();
    const err = await client.acquire("job", { idempotencyKey: "k\r\nx-evil: 1" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(String(err)).toMatch(/idempotency-key has a character/);
    expect(String(err)).not.toContain("x-evil");
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(target.requests.length).toBe(before);
  });
});

describe("deadlines and closes survive a garbage collection", () => {
  let stalling: Counted;
  const sockets = { closed: 0 };
  let svc: TestService;
  beforeAll(async () => {
    stalling = await serve((res) => {
      res.socket?.on("close", () => {
        sockets.closed++;
      });
      // The headers and the start of a body, then nothing.
      res.writeHead(201, { "content-type": "application/json", "content-length": "200" });
      res.write('{"name":"x",');
    });
    svc = await startTestService();
  });
  afterAll(async () => {
    stalling?.server.closeAllConnections();
    await new Promise((r) => stalling?.server.close(r));
    await svc?.stop();
  });

  // On Node the call's request is not cloned, and Node's fetch then loses the link from
  // the call's abort signal to an answer's body once a collection has run: the client
  // must cancel the body itself when the deadline passes.
  it("a call whose answer stalls after its headers ends at its deadline, and its connection is closed", async () => {
    const client = createClient({ url: stalling.url, timeoutMs: 600 });
    const started = performance.now();
    const closedBefore = sockets.closed;
    const outcome = client.release("job", "00112233445566778899aabbccddeeff").catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 150));
    await collect();
    const err = await outcome;
    const took = performance.now() - started;
    expect((err as LeaseholdError).code).toBe("timeout");
    expect(took).toBeGreaterThanOrEqual(550);
    expect(took).toBeLessThan(5_000);
    await expect.poll(() => sockets.closed, { timeout: 5_000 }).toBeGreaterThan(closedBefore);
  });

  it("an event stream closed after a collection ends at once", async () => {
    const client = createClient({ url: svc.url });
    const stream = client.observe(uniqueName("gc"));
    const first = await stream.next();
    expect(first.value?.type).toBe("reset");
    const pending = stream.next();
    await collect();
    const started = performance.now();
    await stream.return();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
