import { describe, expect, it } from "vitest";
import { EtcdGatewayError } from "../../src/etcd/gateway/codec.js";
import { type GatewayPost, GatewaySession } from "../../src/etcd/gateway/session.js";
import { createGatewayEtcd, type GatewayDuplex } from "../../src/etcd/gateway.js";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { until } from "../support/http.js";

/**
 * Unit tests of the gateway session's two policies, with a scripted etcd: endpoint
 * failover (one rotation for unary calls, watch streams and keep-alive streams) and the
 * stale auth token (authenticate again, retry once). The conformance suite in
 * transport.test.ts runs them against a real etcd.
 */

const A = "http://a.test";
const B = "http://b.test";
const C = "http://c.test";

interface Sent {
  origin: string;
  path: string;
  token: string | undefined;
  body: Record<string, unknown>;
}

type Answer = { status: number; body: unknown } | "unreachable" | "hang";

const json = (status: number, body: unknown): Answer => ({ status, body });
const STALE_TOKEN = { error: "etcdserver: invalid auth token", message: "etcdserver: invalid auth token", code: 16 };
const staleToken = json(401, STALE_TOKEN);
const authOff = json(400, {
  error: "etcdserver: authentication is not enabled",
  message: "etcdserver: authentication is not enabled",
  code: 9,
});
const userEmpty = json(400, {
  error: "etcdserver: user name is empty",
  message: "etcdserver: user name is empty",
  code: 3,
});
const RANGE_OK = json(200, { header: { revision: "7" } });

/** An etcd behind `post` whose answers `answer` picks; every authenticate hands out a new token. */
function scriptedPost(answer: (req: Sent) => Answer) {
  const sent: Sent[] = [];
  let tokens = 0;
  const post: GatewayPost = async (url, init) => {
    const u = new URL(url);
    const req: Sent = {
      origin: u.origin,
      path: u.pathname,
      token: init.headers.authorization,
      body: JSON.parse(init.body) as Record<string, unknown>,
    };
    sent.push(req);
    const a = answer(req);
    if (a === "unreachable") {
      throw new TypeError("fetch failed", { cause: Object.assign(new Error(""), { code: "ECONNREFUSED" }) });
    }
    if (a === "hang") {
      return new Promise((_, reject) =>
        init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
      );
    }
    if (req.path === "/v3/auth/authenticate" && a.status === 200) {
      return { status: 200, text: JSON.stringify({ token: `token-${++tokens}` }) };
    }
    return { status: a.status, text: JSON.stringify(a.body) };
  };
  return { post, sent, paths: () => sent.map((s) => `${s.origin}${s.path}`) };
}

const session = (post: GatewayPost, endpoints = [A], auth = false, timeoutMs = 1_000) =>
  new GatewaySession({ endpoints, timeoutMs, ...(auth ? { username: "root", password: "pw" } : {}) }, post);

describe("gateway session: endpoint rotation", () => {
  it("moves on from an endpoint it cannot reach, and starts at the one that answered next time", async () => {
    const etcd = scriptedPost((r) => (r.origin === A ? "unreachable" : RANGE_OK));
    const s = session(etcd.post, [A, B]);
    // An earlier attempt failed (maybe after sending): a write may have applied already.
    expect(await s.call("/v3/kv/range", {})).toMatchObject({ retried: true });
    expect(await s.call("/v3/kv/range", {})).toMatchObject({ retried: false });
    expect(etcd.paths()).toEqual([`${A}/v3/kv/range`, `${B}/v3/kv/range`, `${B}/v3/kv/range`]);
  });

  it("an endpoint that answered with a refusal is still the one to start at", async () => {
    const etcd = scriptedPost((r) => (r.origin === A ? "unreachable" : json(400, { message: "bad", code: 3 })));
    const s = session(etcd.post, [A, B]);
    await expect(s.call("/v3/kv/range", {})).rejects.toThrow(EtcdGatewayError);
    await expect(s.call("/v3/kv/range", {})).rejects.toThrow(EtcdGatewayError);
    expect(etcd.paths()).toEqual([`${A}/v3/kv/range`, `${B}/v3/kv/range`, `${B}/v3/kv/range`]);
  });

  it("names every endpoint and why when none can be reached", async () => {
    const etcd = scriptedPost(() => "unreachable");
    const err = await session(etcd.post, [A, B])
      .call("/v3/kv/range", {})
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdUnavailableError);
    expect((err as Error).message).toBe(`cannot reach etcd (${A}: ECONNREFUSED; ${B}: ECONNREFUSED)`);
  });

  it("one call deadline bounds all endpoints together", async () => {
    const etcd = scriptedPost(() => "hang");
    const t0 = Date.now();
    const err = await session(etcd.post, [A, B], false, 100)
      .call("/v3/kv/range", {})
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdUnavailableError);
    expect((err as Error).message).toMatch(/did not answer within 100 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(etcd.paths()).toEqual([`${A}/v3/kv/range`]);
  });

  it("refuses to start once closed", async () => {
    const etcd = scriptedPost(() => RANGE_OK);
    const s = session(etcd.post);
    s.close();
    await expect(s.call("/v3/kv/range", {})).rejects.toThrow(/closed/);
    expect(etcd.sent).toEqual([]);
  });
});

describe("gateway session: auth token", () => {
  it("authenticates once for concurrent calls, then sends the token", async () => {
    const etcd = scriptedPost((r) => (r.path === "/v3/auth/authenticate" ? json(200, {}) : RANGE_OK));
    const s = session(etcd.post, [A], true);
    await Promise.all([1, 2, 3].map(() => s.call("/v3/kv/range", {})));
    expect(etcd.sent.filter((r) => r.path === "/v3/auth/authenticate")).toHaveLength(1);
    expect(etcd.sent.filter((r) => r.path === "/v3/kv/range").map((r) => r.token)).toEqual([
      "token-1",
      "token-1",
      "token-1",
    ]);
  });

  it("a token etcd no longer takes: authenticates again and retries the call once", async () => {
    const etcd = scriptedPost((r) => {
      if (r.path === "/v3/auth/authenticate") return json(200, {});
      return r.token === "token-1" ? staleToken : RANGE_OK;
    });
    const s = session(etcd.post, [A], true);
    expect(await s.call("/v3/kv/range", {})).toMatchObject({ ok: { header: { revision: "7" } } });
    expect(etcd.sent.map((r) => `${r.path} ${r.token}`)).toEqual([
      "/v3/auth/authenticate undefined",
      "/v3/kv/range token-1",
      "/v3/auth/authenticate undefined",
      "/v3/kv/range token-2",
    ]);
  });

  it("a fresh token refused too: the call fails with etcd's refusal, and the next one starts afresh", async () => {
    const etcd = scriptedPost((r) => (r.path === "/v3/auth/authenticate" ? json(200, {}) : staleToken));
    const s = session(etcd.post, [A], true);
    const err = await s.call("/v3/kv/range", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdGatewayError);
    expect((err as Error).message).toMatch(/invalid auth token/);
    expect(etcd.sent.map((r) => r.path)).toEqual([
      "/v3/auth/authenticate",
      "/v3/kv/range",
      "/v3/auth/authenticate",
      "/v3/kv/range",
    ]);
    etcd.sent.length = 0;
    await s.call("/v3/kv/range", {}).catch(() => {});
    expect(etcd.sent.map((r) => `${r.path} ${r.token ?? ""}`)).toEqual([
      "/v3/auth/authenticate ",
      "/v3/kv/range token-3",
      "/v3/auth/authenticate ",
      "/v3/kv/range token-4",
    ]);
  });

  it("auth off when it authenticated, on later ('user name is empty'): authenticates again", async () => {
    let authEnabled = false;
    const etcd = scriptedPost((r) => {
      if (r.path === "/v3/auth/authenticate") return authEnabled ? json(200, {}) : authOff;
      return authEnabled && r.token === undefined ? userEmpty : RANGE_OK;
    });
    const s = session(etcd.post, [A], true);
    await s.call("/v3/kv/range", {});
    authEnabled = true;
    await s.call("/v3/kv/range", {});
    expect(etcd.sent.map((r) => `${r.path} ${r.token ?? "-"}`)).toEqual([
      "/v3/auth/authenticate -",
      "/v3/kv/range -",
      "/v3/kv/range -",
      "/v3/auth/authenticate -",
      "/v3/kv/range token-1",
    ]);
  });

  it("without credentials a token refusal is etcd's answer: no authentication, no retry", async () => {
    const etcd = scriptedPost(() => staleToken);
    await expect(session(etcd.post).call("/v3/kv/range", {})).rejects.toThrow(EtcdGatewayError);
    expect(etcd.paths()).toEqual([`${A}/v3/kv/range`]);
  });

  it("wrong credentials are EtcdAuthError, without the password in the message", async () => {
    const etcd = scriptedPost(() =>
      json(400, { message: "etcdserver: authentication failed, invalid user ID or password", code: 3 }),
    );
    const err = await session(etcd.post, [A], true)
      .call("/v3/kv/range", {})
      .catch((e: unknown) => e);
    expect((err as Error).name).toBe("EtcdAuthError");
    expect((err as Error).message).toMatch(/authentication failed/);
    expect((err as Error).message).not.toContain("pw");
  });
});

/** A watch stream answer: the given lines, then open until the request is aborted. */
function watchResponse(lines: unknown[], signal: AbortSignal | null | undefined): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const l of lines) controller.enqueue(new TextEncoder().encode(`${JSON.stringify(l)}\n`));
      signal?.addEventListener("abort", () => controller.error(new DOMException("aborted", "AbortError")));
    },
  });
  return new Response(body, { status: 200 });
}

const b64 = (s: string) => btoa(s);

describe("gateway session: watch streams", () => {
  it("a watch canceled over a stale token is reopened with a fresh one, from the last DELETE + 1", async () => {
    const etcd = scriptedPost((r) => (r.path === "/v3/auth/authenticate" ? json(200, {}) : RANGE_OK));
    const watches: { origin: string; token: string | undefined; start: string }[] = [];
    const c = createGatewayEtcd({
      endpoints: [A, B],
      timeoutMs: 1_000,
      username: "root",
      password: "pw",
      post: etcd.post,
      fetch: async (input, init) => {
        const url = new URL(String(input));
        const headers = init?.headers as Record<string, string>;
        const req = JSON.parse(String(init?.body)) as { create_request: { start_revision: string } };
        watches.push({ origin: url.origin, token: headers.authorization, start: req.create_request.start_revision });
        if (url.origin === A) throw new TypeError("fetch failed");
        const created = { result: { created: true, header: { revision: "9" } } };
        if (watches.length === 2) {
          // Established, one DELETE delivered, then canceled: etcd no longer takes the token.
          const del = { result: { events: [{ type: "DELETE", kv: { key: b64("k"), mod_revision: "6" } }] } };
          const canceled = { result: { canceled: true, cancel_reason: "etcdserver: invalid auth token" } };
          return watchResponse([created, del, canceled], init?.signal);
        }
        return watchResponse([created], init?.signal);
      },
    });
    const ac = new AbortController();
    const deletes: number[] = [];
    const ended = c.watchDeletes("k", 3, (r) => deletes.push(r), ac.signal);
    await until(() => watches.length === 3, "the third watch request");
    expect(deletes).toEqual([6]);
    expect(watches).toEqual([
      { origin: A, token: "token-1", start: "3" },
      { origin: B, token: "token-1", start: "3" },
      // Started at B, the endpoint that answered last.
      { origin: B, token: "token-2", start: "7" },
    ]);
    ac.abort();
    expect(await ended).toBe("aborted");
    await c.close();
  });
});

describe("gateway session: keep-alive streams", () => {
  it("open on the first endpoint that takes them; a stale token costs one retry on the same endpoint", async () => {
    const etcd = scriptedPost((r) => (r.path === "/v3/auth/authenticate" ? json(200, {}) : RANGE_OK));
    const opened: { origin: string; token: string | undefined }[] = [];
    const duplex: GatewayDuplex = async (url, headers, onLine) => {
      const origin = new URL(url).origin;
      opened.push({ origin, token: headers.authorization });
      if (origin === A) throw new Error("connect ECONNREFUSED");
      if (origin === B) return { status: 503, text: '{"error":"etcdserver: leader changed","code":14}' };
      if (headers.authorization === "token-1") return { status: 401, text: JSON.stringify(STALE_TOKEN) };
      return {
        status: 200,
        stream: {
          write: (text) => {
            const { ID } = JSON.parse(text) as { ID: string };
            queueMicrotask(() => onLine(JSON.stringify({ result: { ID, TTL: "30" } })));
          },
          end: () => {},
        },
      };
    };
    const c = createGatewayEtcd({
      endpoints: [A, B, C],
      timeoutMs: 1_000,
      username: "root",
      password: "pw",
      post: etcd.post,
      duplex,
    });
    expect(await c.leaseKeepAliveOnce(123n)).toBe(30);
    expect(opened).toEqual([
      { origin: A, token: "token-1" },
      { origin: B, token: "token-1" },
      { origin: C, token: "token-1" },
      { origin: C, token: "token-2" },
    ]);
    await c.close();
  });
});
