import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import {
  type EtcdClient,
  type EtcdConnectionOptions,
  EtcdUnavailableError,
  LeaseExistsError,
  prefixEnd,
} from "../../src/etcd/types.js";
import { gatewayOnNode } from "../../src/node/gateway.js";
import { freePort } from "../../src/node/local-etcd.js";
import { startTestEtcd } from "../support/etcd.js";

/**
 * One conformance suite for every EtcdClient transport, run against a real etcd.
 * `extra` overrides connection options (auth, endpoints) for the tests that need them.
 */
const TIMEOUT_MS = 2000;
interface Transport {
  name: string;
  create: (endpoint: string, extra?: Partial<EtcdConnectionOptions>) => EtcdClient;
}
const transports: Transport[] = [
  {
    name: "gateway",
    create: (endpoint, extra) => createGatewayEtcd({ endpoints: [endpoint], timeoutMs: TIMEOUT_MS, ...extra }),
  },
  {
    name: "grpc",
    create: (endpoint, extra) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs: TIMEOUT_MS, ...extra }),
  },
  {
    // What the Node service runs for ETCD_TRANSPORT=http: the gateway over undici pools.
    name: "gateway on Node",
    create: (endpoint, extra) => gatewayOnNode({ endpoints: [endpoint], timeoutMs: TIMEOUT_MS, ...extra }),
  },
];

type TestEtcd = Awaited<ReturnType<typeof startTestEtcd>>;
let etcd: TestEtcd;

beforeAll(async () => {
  etcd = await startTestEtcd();
});

afterAll(async () => {
  await etcd?.destroy();
});

/** A random positive int64 lease ID above 2^53 (so a Number round trip would corrupt it). */
function randomLeaseId(): bigint {
  const buf = new BigUint64Array(1);
  crypto.getRandomValues(buf);
  return ((buf[0] as bigint) >> 2n) | (1n << 61n);
}

let seq = 0;
const uniqueKey = (label: string) => `conformance/${label}/${Date.now()}-${seq++}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Direct gateway calls for admin steps that are not part of EtcdClient (compaction, auth setup). */
async function admin(endpoint: string, path: string, body: unknown, token?: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${endpoint}${path}`, {
    method: "POST",
    headers: token ? { authorization: token } : {},
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Resolves with true when `p` is still pending after `ms`. */
async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol("pending");
  return (await Promise.race([p, sleep(ms).then(() => marker)])) === marker;
}

async function eventually<T>(fn: () => Promise<T>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

async function timed<T>(p: Promise<T>): Promise<{ ms: number; result: PromiseSettledResult<T> }> {
  const t0 = Date.now();
  const [result] = await Promise.allSettled([p]);
  return { ms: Date.now() - t0, result: result as PromiseSettledResult<T> };
}

describe.each(transports)("$name transport", (transport) => {
  let client: EtcdClient;

  beforeAll(() => {
    client = transport.create(etcd.endpoint);
  });

  afterAll(async () => {
    await client?.close();
  });

  /** A fresh lease with a random ID above 2^53. */
  async function lease(ttl = 30): Promise<bigint> {
    const id = randomLeaseId();
    await client.leaseGrant(id, ttl);
    return id;
  }

  describe("get", () => {
    it("of an absent key has the store revision and no kv", async () => {
      const res = await client.get(uniqueKey("absent"));
      expect(res.kv).toBeUndefined();
      expect(res.revision).toBeGreaterThanOrEqual(1);
    });

    it("of a present key returns value, revisions and the bigint lease", async () => {
      const key = uniqueKey("present");
      const id = await lease();
      const created = await client.createIfAbsent(key, "v1", id);
      expect(created.created).toBe(true);
      const res = await client.get(key);
      expect(res.revision).toBeGreaterThanOrEqual(created.revision);
      expect(res.kv).toEqual({
        key,
        value: "v1",
        createRevision: created.revision,
        modRevision: created.revision,
        lease: id,
      });
      expect(typeof res.kv?.lease).toBe("bigint");
    });

    it("of a key without lease reports lease 0n, and keeps UTF-8 and empty values", async () => {
      const key = `${uniqueKey("utf8")}/ключ`;
      await client.createIfAbsent(key, "", 0n);
      expect((await client.get(key)).kv).toMatchObject({ key, value: "", lease: 0n });
    });
  });

  describe("range", () => {
    it("returns keys sorted ascending, honours limit and reports more", async () => {
      const prefix = `${uniqueKey("range")}/`;
      for (const name of ["c", "a", "b"]) await client.createIfAbsent(prefix + name, name, 0n);
      const end = prefixEnd(prefix);

      const page = await client.range(prefix, end, 2);
      expect(page.kvs.map((kv) => kv.key)).toEqual([`${prefix}a`, `${prefix}b`]);
      expect(page.more).toBe(true);
      expect(page.revision).toBeGreaterThanOrEqual(page.kvs[1]?.createRevision ?? Number.POSITIVE_INFINITY);

      const all = await client.range(prefix, end, 0);
      expect(all.kvs.map((kv) => kv.value)).toEqual(["a", "b", "c"]);
      expect(all.more).toBe(false);

      const exact = await client.range(prefix, end, 3);
      expect(exact.kvs).toHaveLength(3);
      expect(exact.more).toBe(false);

      const empty = await client.range(`${prefix}x`, end, 10);
      expect(empty).toMatchObject({ kvs: [], more: false });
    });
  });

  describe("leases", () => {
    it("grants a caller-chosen ID above 2^53 and refuses to reuse it", async () => {
      const id = randomLeaseId();
      expect(id > BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
      expect(await client.leaseGrant(id, 30)).toBe(30);
      expect(await client.leaseTimeToLive(id)).toMatchObject({ grantedTtl: 30 });
      await expect(client.leaseGrant(id, 30)).rejects.toBeInstanceOf(LeaseExistsError);
    });

    it("reports the TTL etcd raised a too-small request to", async () => {
      // etcd 3.4's minimum TTL is 1.5 × election timeout rounded up: 2 s with default timing.
      const id = randomLeaseId();
      const granted = await client.leaseGrant(id, 1);
      expect(granted).toBeGreaterThanOrEqual(2);
      expect((await client.leaseTimeToLive(id)).grantedTtl).toBe(granted);
    });

    it("keepAliveOnce resets a live lease and answers 0 for a dead one", async () => {
      const id = await lease(20);
      expect(await client.leaseKeepAliveOnce(id)).toBe(20);
      expect(await client.leaseKeepAliveOnce(randomLeaseId())).toBe(0);
      await client.leaseRevoke(id);
      expect(await client.leaseKeepAliveOnce(id)).toBe(0);
    });

    it("revoke deletes the attached key, then reports false", async () => {
      const key = uniqueKey("revoke");
      const id = await lease();
      await client.createIfAbsent(key, "x", id);
      expect(await client.leaseRevoke(id)).toBe(true);
      expect((await client.get(key)).kv).toBeUndefined();
      expect(await client.leaseRevoke(id)).toBe(false);
      expect(await client.leaseRevoke(randomLeaseId())).toBe(false);
    });

    it("timeToLive of a live and of a gone lease", async () => {
      const id = await lease(40);
      const live = await client.leaseTimeToLive(id);
      expect(live.grantedTtl).toBe(40);
      expect(live.ttl).toBeGreaterThan(0);
      expect(live.ttl).toBeLessThanOrEqual(40);
      await client.leaseRevoke(id);
      expect(await client.leaseTimeToLive(id)).toEqual({ ttl: -1, grantedTtl: 0 });
      expect(await client.leaseTimeToLive(randomLeaseId())).toEqual({ ttl: -1, grantedTtl: 0 });
    });
  });

  describe("createIfAbsent", () => {
    it("creates: the revision is the key's createRevision", async () => {
      const key = uniqueKey("create");
      const id = await lease();
      const res = await client.createIfAbsent(key, "first", id);
      expect(res).toEqual({ created: true, revision: expect.any(Number) });
      const kv = (await client.get(key)).kv;
      expect(kv?.createRevision).toBe(res.revision);
      expect(kv?.lease).toBe(id);
    });

    it("does not overwrite: returns the existing kv", async () => {
      const key = uniqueKey("exists");
      const first = await lease();
      const created = await client.createIfAbsent(key, "first", first);
      const second = await lease();
      const res = await client.createIfAbsent(key, "second", second);
      expect(res.created).toBe(false);
      expect(res.revision).toBeGreaterThanOrEqual(created.revision);
      if (res.created) return;
      expect(res.kv).toEqual({
        key,
        value: "first",
        createRevision: created.revision,
        modRevision: created.revision,
        lease: first,
      });
      expect((await client.get(key)).kv?.value).toBe("first");
    });
  });

  describe("watchDelete", () => {
    it("returns deleted for a delete after the call", async () => {
      const key = uniqueKey("watch-future");
      const id = await lease();
      const { revision } = await client.createIfAbsent(key, "x", id);
      const w = client.watchDelete(key, revision + 1, new AbortController().signal);
      expect(await stillPending(w, 300)).toBe(true);
      await client.leaseRevoke(id);
      const deletedAt = (await client.get(key)).revision;
      // The revision of the DELETE itself, so a watcher can continue right after it.
      expect(await w).toEqual({ outcome: "deleted", revision: deletedAt });
    });

    it("returns deleted for a delete before the call at or after fromRevision", async () => {
      const key = uniqueKey("watch-history");
      const id = await lease();
      const { revision } = await client.createIfAbsent(key, "x", id);
      await client.leaseRevoke(id);
      expect(await client.watchDelete(key, revision + 1, new AbortController().signal)).toEqual({
        outcome: "deleted",
        revision: revision + 1,
      });
    });

    it("ignores deletes before fromRevision and puts after it", async () => {
      const key = uniqueKey("watch-put");
      const id = await lease();
      await client.createIfAbsent(key, "x", id);
      await client.leaseRevoke(id);
      const again = await client.createIfAbsent(key, "y", 0n);
      const ac = new AbortController();
      const w = client.watchDelete(key, again.revision, ac.signal);
      expect(await stillPending(w, 500)).toBe(true);
      ac.abort();
      expect(await w).toEqual({ outcome: "aborted" });
    });

    it("returns compacted when fromRevision was compacted away", async () => {
      const key = uniqueKey("watch-compacted");
      const { revision } = await client.createIfAbsent(key, "x", 0n);
      await client.createIfAbsent(uniqueKey("watch-compacted-bump"), "y", 0n);
      const current = (await client.get(key)).revision;
      await admin(etcd.endpoint, "/v3/kv/compaction", { revision: String(current), physical: true });
      expect(await client.watchDelete(key, revision, new AbortController().signal)).toEqual({ outcome: "compacted" });
    });

    it("returns aborted when the signal fires, promptly", async () => {
      const key = uniqueKey("watch-abort");
      const { revision } = await client.createIfAbsent(key, "x", 0n);
      const ac = new AbortController();
      const w = client.watchDelete(key, revision + 1, ac.signal);
      await sleep(200);
      const t0 = Date.now();
      ac.abort();
      expect(await w).toEqual({ outcome: "aborted" });
      expect(Date.now() - t0).toBeLessThan(500);
      const aborted = new AbortController();
      aborted.abort();
      expect(await client.watchDelete(key, revision + 1, aborted.signal)).toEqual({ outcome: "aborted" });
    });

    it("waits past the call deadline (only the signal bounds an established watch)", async () => {
      const key = uniqueKey("watch-long");
      const id = await lease();
      const { revision } = await client.createIfAbsent(key, "x", id);
      const w = client.watchDelete(key, revision + 1, new AbortController().signal);
      expect(await stillPending(w, TIMEOUT_MS + 500)).toBe(true);
      await client.leaseRevoke(id);
      expect(await w).toMatchObject({ outcome: "deleted" });
    });

    it("close() ends open watches", async () => {
      const other = transport.create(etcd.endpoint);
      const key = uniqueKey("watch-close");
      const { revision } = await other.createIfAbsent(key, "x", 0n);
      const w = other.watchDelete(key, revision + 1, new AbortController().signal);
      await sleep(200);
      await other.close();
      expect(await w).toEqual({ outcome: "aborted" });
    });
  });

  it("ping", async () => {
    await expect(client.ping()).resolves.toBeUndefined();
  });

  describe("unavailable etcd", () => {
    const ops = (c: EtcdClient): Record<string, () => Promise<unknown>> => {
      const key = uniqueKey("down");
      return {
        get: () => c.get(key),
        range: () => c.range(key, prefixEnd(key), 10),
        leaseGrant: () => c.leaseGrant(randomLeaseId(), 10),
        leaseKeepAliveOnce: () => c.leaseKeepAliveOnce(randomLeaseId()),
        leaseRevoke: () => c.leaseRevoke(randomLeaseId()),
        leaseTimeToLive: () => c.leaseTimeToLive(randomLeaseId()),
        createIfAbsent: () => c.createIfAbsent(key, "x", 0n),
        watchDelete: () => c.watchDelete(key, 1, new AbortController().signal),
        ping: () => c.ping(),
      };
    };

    it("rejects every call with EtcdUnavailableError within the deadline while etcd is stopped, and recovers", async () => {
      await client.ping();
      await etcd.stop();
      try {
        for (const [name, op] of Object.entries(ops(client))) {
          const { ms, result } = await timed(op());
          expect(result.status, name).toBe("rejected");
          if (result.status === "rejected") expect(result.reason, name).toBeInstanceOf(EtcdUnavailableError);
          expect(ms, name).toBeLessThan(TIMEOUT_MS + 500);
        }
      } finally {
        await etcd.restart();
      }
      await eventually(() => client.ping());
      const key = uniqueKey("after-restart");
      expect((await client.createIfAbsent(key, "x", 0n)).created).toBe(true);
      expect((await client.get(key)).kv?.value).toBe("x");
    });

    it("times out against an endpoint that accepts connections but never answers", async () => {
      const sockets: Socket[] = [];
      const server: Server = createServer((s) => {
        sockets.push(s);
        s.on("error", () => {});
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const { port } = server.address() as { port: number };
      const silent = transport.create(`http://127.0.0.1:${port}`);
      try {
        const results = await Promise.all(
          Object.entries(ops(silent)).map(async ([n, op]) => [n, await timed(op())] as const),
        );
        for (const [name, { ms, result }] of results) {
          expect(result.status, name).toBe("rejected");
          if (result.status === "rejected") {
            expect(result.reason, name).toBeInstanceOf(EtcdUnavailableError);
            expect(String(result.reason.message), name).not.toMatch(/password|secret/i);
          }
          expect(ms, name).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
          expect(ms, name).toBeLessThan(TIMEOUT_MS + 500);
        }
      } finally {
        await silent.close();
        for (const s of sockets) s.destroy();
        await new Promise((r) => server.close(r));
      }
    });
  });

  describe("auth", () => {
    it("authenticates, re-authenticates after etcd forgets the token, and reports a wrong password", async () => {
      const secured = await startTestEtcd();
      try {
        const ep = secured.endpoint;
        await admin(ep, "/v3/auth/user/add", { name: "root", password: "s3cret-pw" });
        await admin(ep, "/v3/auth/role/add", { name: "root" });
        await admin(ep, "/v3/auth/user/grant", { user: "root", role: "root" });
        await admin(ep, "/v3/auth/enable", {});
        const invalidateTokens = async (endpoint: string) => {
          const { token } = await admin(endpoint, "/v3/auth/authenticate", { name: "root", password: "s3cret-pw" });
          await admin(endpoint, "/v3/auth/disable", {}, String(token));
          await admin(endpoint, "/v3/auth/enable", {});
        };

        const c = transport.create(ep, { username: "root", password: "s3cret-pw" });
        try {
          const key = uniqueKey("auth");
          const id = randomLeaseId();
          await c.leaseGrant(id, 30);
          const { revision } = await c.createIfAbsent(key, "x", id);
          expect((await c.get(key)).kv?.lease).toBe(id);
          await c.leaseRevoke(id);

          // Turning auth off and on again drops every token etcd has handed out: the
          // client's next call, a watch or a unary call, must authenticate again.
          await invalidateTokens(ep);
          expect(await c.watchDelete(key, revision + 1, new AbortController().signal)).toMatchObject({
            outcome: "deleted",
          });
          await invalidateTokens(ep);
          expect((await c.get(key)).kv).toBeUndefined();
        } finally {
          await c.close();
        }

        const wrong = transport.create(ep, { username: "root", password: "wrong-pw" });
        try {
          const { result } = await timed(wrong.get("k"));
          expect(result.status).toBe("rejected");
          if (result.status === "rejected") {
            expect(result.reason).not.toBeInstanceOf(EtcdUnavailableError);
            expect(String(result.reason.message)).toMatch(/authentication failed/);
            expect(String(result.reason.message)).not.toContain("wrong-pw");
          }
        } finally {
          await wrong.close();
        }
      } finally {
        await secured.destroy();
      }
    });
  });
});

describe("gateway transport specifics", () => {
  it("fails over to the next endpoint and remembers the one that worked", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const urls: string[] = [];
    const c = createGatewayEtcd({
      endpoints: [dead, etcd.endpoint],
      timeoutMs: TIMEOUT_MS,
      fetch: (input, init) => {
        urls.push(String(input));
        return fetch(input, init);
      },
    });
    try {
      await c.ping();
      expect(urls.map((u) => new URL(u).origin)).toEqual([dead, etcd.endpoint]);
      urls.length = 0;
      await c.get("x");
      expect(urls.map((u) => new URL(u).origin)).toEqual([etcd.endpoint]);
    } finally {
      await c.close();
    }
  });

  it("lists every endpoint when none can be reached", async () => {
    const a = `http://127.0.0.1:${await freePort()}`;
    const b = `http://127.0.0.1:${await freePort()}`;
    const c = createGatewayEtcd({ endpoints: [a, b], timeoutMs: TIMEOUT_MS });
    await expect(c.get("x")).rejects.toThrow(EtcdUnavailableError);
    await expect(c.get("x")).rejects.toThrow(new RegExp(`${a}.*${b}`));
  });

  it("treats a write whose response was lost as done when a retry on another endpoint finds it", async () => {
    // The first endpoint forwards to etcd, then loses the answer, as a dropped connection would.
    const lossy = "http://lossy.test";
    const lossyClient = () =>
      createGatewayEtcd({
        endpoints: [lossy, etcd.endpoint],
        timeoutMs: TIMEOUT_MS,
        fetch: async (input, init) => {
          const url = String(input);
          if (!url.startsWith(lossy)) return fetch(input, init);
          await (await fetch(etcd.endpoint + url.slice(lossy.length), init)).text();
          throw new TypeError("fetch failed", { cause: new Error("socket hang up") });
        },
      });
    const id = randomLeaseId();
    const a = lossyClient();
    expect(await a.leaseGrant(id, 30)).toBe(30);
    await a.close();
    // A new client starts at the lossy endpoint again.
    const b = lossyClient();
    const key = uniqueKey("lossy");
    const res = await b.createIfAbsent(key, "x", id);
    expect(res).toEqual({ created: true, revision: (await b.get(key)).kv?.createRevision });
    await b.close();
  });

  it("opens the watch again when an established stream ends", async () => {
    let watchCalls = 0;
    const c = createGatewayEtcd({
      endpoints: [etcd.endpoint],
      timeoutMs: TIMEOUT_MS,
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        if (!String(input).endsWith("/v3/watch") || watchCalls++ > 0 || !res.body) return res;
        // Pass on the "created" message, then end the stream as a proxy's idle timeout would.
        const reader = res.body.getReader();
        const first = await reader.read();
        await reader.cancel();
        const body = new ReadableStream<Uint8Array>({
          start(ctl) {
            if (first.value) ctl.enqueue(first.value);
            ctl.close();
          },
        });
        return new Response(body, { status: 200 });
      },
    });
    try {
      const key = uniqueKey("watch-reopen");
      const id = randomLeaseId();
      await c.leaseGrant(id, 30);
      const { revision } = await c.createIfAbsent(key, "x", id);
      const w = c.watchDelete(key, revision + 1, new AbortController().signal);
      expect(await stillPending(w, 300)).toBe(true);
      expect(watchCalls).toBe(2);
      await c.leaseRevoke(id);
      expect(await w).toMatchObject({ outcome: "deleted" });
    } finally {
      await c.close();
    }
  });

  it("refuses credentials inside an endpoint URL", () => {
    expect(() => createGatewayEtcd({ endpoints: ["http://u:p@127.0.0.1:2379"], timeoutMs: 1000 })).toThrow(
      /username\/password/,
    );
  });
});
