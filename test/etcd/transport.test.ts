import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import {
  type EtcdClient,
  type EtcdConnectionOptions,
  EtcdUnavailableError,
  LeaseExistsError,
  LeaseNotFoundError,
  prefixEnd,
} from "../../src/etcd/types.js";
import { createIfAbsent } from "../../src/lock/strategies/group-commit.js";
import { gatewayOnNode, nodeDuplex } from "../../src/node/gateway.js";
import { freePort } from "../../src/node/local-etcd.js";
import { startTestEtcd, untilWatches } from "../support/etcd.js";
import { eventually, stillAfter, until } from "../support/http.js";

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

/** Turns auth on with a root user whose password is "s3cret-pw". */
async function enableRootAuth(endpoint: string): Promise<void> {
  await admin(endpoint, "/v3/auth/user/add", { name: "root", password: "s3cret-pw" });
  await admin(endpoint, "/v3/auth/role/add", { name: "root" });
  await admin(endpoint, "/v3/auth/user/grant", { user: "root", role: "root" });
  await admin(endpoint, "/v3/auth/enable", {});
}

/** Whether `p` is still pending after `ms`: for asserting that it does not settle. */
function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  const done = () => {
    settled = true;
  };
  p.then(done, done);
  return stillAfter(ms, () => !settled);
}

/** A watchDeletes stream, collecting the revisions it reports. */
function watching(c: EtcdClient, key: string, from: number) {
  const ac = new AbortController();
  const deletes: number[] = [];
  const ended = c.watchDeletes(key, from, (revision) => deletes.push(revision), ac.signal);
  // Awaited by the tests that expect an end; a rejection must not go unhandled meanwhile.
  ended.catch(() => {});
  return { deletes, ended, stop: () => ac.abort() };
}

/** The first DELETE a watch from `from` reports. */
async function firstDelete(c: EtcdClient, key: string, from: number): Promise<number> {
  const ac = new AbortController();
  let revision: number | undefined;
  const end = await c.watchDeletes(
    key,
    from,
    (r) => {
      revision ??= r;
      ac.abort();
    },
    ac.signal,
  );
  if (revision === undefined) throw new Error(`the watch ended (${end}) without a DELETE`);
  return revision;
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
      const created = await createIfAbsent(client, key, "v1", id);
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
      await createIfAbsent(client, key, "", 0n);
      expect((await client.get(key)).kv).toMatchObject({ key, value: "", lease: 0n });
    });
  });

  describe("range", () => {
    it("returns keys sorted ascending, honours limit and reports more", async () => {
      const prefix = `${uniqueKey("range")}/`;
      for (const name of ["c", "a", "b"]) await createIfAbsent(client, prefix + name, name, 0n);
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

    it("many concurrent keep-alives, several per lease, each get their own lease's answer", async () => {
      const live = await Promise.all([lease(20), lease(30), lease(40)]);
      const dead = randomLeaseId();
      const ids = Array.from({ length: 60 }, (_, i) => (i % 4 === 3 ? dead : (live[i % 4] as bigint)));
      const ttls = await Promise.all(ids.map((id) => client.leaseKeepAliveOnce(id)));
      expect(ttls).toEqual(ids.map((_, i) => [20, 30, 40, 0][i % 4]));
    });

    it("revoke deletes the attached key, then reports false", async () => {
      const key = uniqueKey("revoke");
      const id = await lease();
      await createIfAbsent(client, key, "x", id);
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
      const res = await createIfAbsent(client, key, "first", id);
      expect(res).toEqual({ created: true, revision: expect.any(Number) });
      const kv = (await client.get(key)).kv;
      expect(kv?.createRevision).toBe(res.revision);
      expect(kv?.lease).toBe(id);
    });

    it("does not overwrite: returns the existing kv", async () => {
      const key = uniqueKey("exists");
      const first = await lease();
      const created = await createIfAbsent(client, key, "first", first);
      const second = await lease();
      const res = await createIfAbsent(client, key, "second", second);
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

  describe("multi-key txns (all or nothing)", () => {
    it("creates every key in one txn: they share its revision", async () => {
      const keys = [uniqueKey("all-a"), uniqueKey("all-b"), uniqueKey("all-c")];
      const id = await lease();
      const res = await client.createAllIfAbsent(keys.map((key) => ({ key, value: key, lease: id })));
      expect(res).toEqual({ applied: true, revision: expect.any(Number) });
      for (const key of keys) {
        const kv = (await client.get(key)).kv;
        expect(kv).toMatchObject({ value: key, createRevision: res.revision, lease: id });
      }
    });

    it("one taken key writes nothing and reads every key", async () => {
      const taken = uniqueKey("all-taken");
      const free = [uniqueKey("all-free1"), uniqueKey("all-free2")];
      const id = await lease();
      const first = await createIfAbsent(client, taken, "holder", id);
      const res = await client.createAllIfAbsent(
        [free[0], taken, free[1]].map((key) => ({ key: key as string, value: "new", lease: id })),
      );
      expect(res.applied).toBe(false);
      if (res.applied) return;
      expect(res.kvs).toHaveLength(3);
      expect(res.kvs[0]).toBeUndefined();
      expect(res.kvs[1]).toMatchObject({ key: taken, value: "holder", createRevision: first.revision });
      expect(res.kvs[2]).toBeUndefined();
      for (const key of free) expect((await client.get(key as string)).kv).toBeUndefined();
    });

    it("a lease that does not exist rejects with LeaseNotFoundError and writes nothing", async () => {
      const keys = [uniqueKey("all-lease-ok"), uniqueKey("all-lease-gone")];
      const alive = await lease();
      const gone = await lease();
      await client.leaseRevoke(gone);
      await expect(
        client.createAllIfAbsent([
          { key: keys[0] as string, value: "x", lease: alive },
          { key: keys[1] as string, value: "x", lease: gone },
        ]),
      ).rejects.toBeInstanceOf(LeaseNotFoundError);
      for (const key of keys) expect((await client.get(key)).kv).toBeUndefined();
    });

    it("deletes every key only when every mod revision still matches", async () => {
      const keys = [uniqueKey("del-a"), uniqueKey("del-b")];
      const id = await lease();
      const made = await client.createAllIfAbsent(keys.map((key) => ({ key, value: "x", lease: id })));
      // b is re-created after the revision we hold: its mod revision moves on.
      await client.deleteAllIfUnchanged([{ key: keys[1] as string, modRevision: made.revision }]);
      const again = await createIfAbsent(client, keys[1] as string, "y", id);
      const stale = await client.deleteAllIfUnchanged(keys.map((key) => ({ key, modRevision: made.revision })));
      expect(stale.applied).toBe(false);
      if (stale.applied) return;
      expect(stale.kvs.map((kv) => kv?.modRevision)).toEqual([made.revision, again.revision]);
      expect((await client.get(keys[0] as string)).kv).toBeDefined();
      const ok = await client.deleteAllIfUnchanged([
        { key: keys[0] as string, modRevision: made.revision },
        { key: keys[1] as string, modRevision: again.revision },
      ]);
      expect(ok.applied).toBe(true);
      for (const key of keys) expect((await client.get(key)).kv).toBeUndefined();
    });
  });

  describe("watchDeletes", () => {
    /** Creates `key` on a fresh lease, then revokes it; resolves with the DELETE's revision. */
    async function createAndDelete(key: string): Promise<{ created: number; deleted: number }> {
      const id = await lease();
      const { revision: created } = await createIfAbsent(client, key, "x", id);
      await client.leaseRevoke(id);
      return { created, deleted: (await client.get(key)).revision };
    }

    it("reports every DELETE on one watch, in order, with its revision", async () => {
      const key = uniqueKey("watch-many");
      const id = await lease();
      const { revision } = await createIfAbsent(client, key, "x", id);
      const w = watching(client, key, revision + 1);
      await untilWatches(etcd.endpoint, 1, "the watch to be open in etcd");
      await client.leaseRevoke(id);
      const expected = [(await client.get(key)).revision];
      for (let i = 0; i < 3; i++) {
        // Other keys move the store revision between the DELETEs.
        await createIfAbsent(client, uniqueKey("watch-many-other"), "y", 0n);
        expected.push((await createAndDelete(key)).deleted);
      }
      await until(() => w.deletes.length >= 4, "the four DELETEs");
      expect(w.deletes).toEqual(expected);
      expect(await stillPending(w.ended, 100)).toBe(true);
      w.stop();
      expect(await w.ended).toBe("aborted");
    });

    it("replays DELETEs from the start revision, not older ones, then reports live ones", async () => {
      const key = uniqueKey("watch-history");
      const first = await createAndDelete(key);
      const second = await createAndDelete(key);
      const third = await createAndDelete(key);
      const all = watching(client, key, first.deleted);
      const later = watching(client, key, first.deleted + 1);
      await until(() => all.deletes.length >= 3 && later.deletes.length >= 2, "the replayed DELETEs");
      const live = await createAndDelete(key);
      await until(() => all.deletes.length >= 4 && later.deletes.length >= 3, "the live DELETE");
      expect(all.deletes).toEqual([first.deleted, second.deleted, third.deleted, live.deleted]);
      expect(later.deletes).toEqual([second.deleted, third.deleted, live.deleted]);
      all.stop();
      later.stop();
    });

    it("ignores PUTs", async () => {
      const key = uniqueKey("watch-put");
      const { revision } = await createIfAbsent(client, key, "x", 0n);
      await createAndDelete(uniqueKey("watch-put-other"));
      const w = watching(client, key, revision);
      expect(await stillPending(w.ended, 500)).toBe(true);
      w.stop();
      expect(await w.ended).toBe("aborted");
      expect(w.deletes).toEqual([]);
    });

    it("ends with compacted when the start revision was compacted away", async () => {
      const key = uniqueKey("watch-compacted");
      const { deleted } = await createAndDelete(key);
      await createIfAbsent(client, uniqueKey("watch-compacted-bump"), "y", 0n);
      const current = (await client.get(key)).revision;
      await admin(etcd.endpoint, "/v3/kv/compaction", { revision: String(current), physical: true });
      // Another watch of this client stays unharmed (etcd3 runs them all on one stream).
      const next = watching(client, key, current + 1);
      await untilWatches(etcd.endpoint, 1, "the other watch to be open in etcd");
      const w = watching(client, key, deleted);
      expect(await w.ended).toBe("compacted");
      expect(w.deletes).toEqual([]);
      const again = await createAndDelete(key);
      await until(() => next.deletes.length >= 1, "the other watch's DELETE");
      expect(next.deletes).toEqual([again.deleted]);
      next.stop();
    });

    it("ends with aborted when the signal fires, promptly, and reports nothing after", async () => {
      const key = uniqueKey("watch-abort");
      const id = await lease();
      const { revision } = await createIfAbsent(client, key, "x", id);
      const w = watching(client, key, revision + 1);
      await untilWatches(etcd.endpoint, 1, "the watch to be open in etcd");
      const t0 = Date.now();
      w.stop();
      expect(await w.ended).toBe("aborted");
      expect(Date.now() - t0).toBeLessThan(500);
      await client.leaseRevoke(id);
      expect(await stillAfter(200, () => w.deletes)).toEqual([]);
      const aborted = new AbortController();
      aborted.abort();
      expect(await client.watchDeletes(key, revision + 1, () => {}, aborted.signal)).toBe("aborted");
    });

    it("stays open past the call deadline (only the signal bounds an established watch)", async () => {
      const key = uniqueKey("watch-long");
      const id = await lease();
      const { revision } = await createIfAbsent(client, key, "x", id);
      const w = watching(client, key, revision + 1);
      expect(await stillPending(w.ended, TIMEOUT_MS + 500)).toBe(true);
      await client.leaseRevoke(id);
      await until(() => w.deletes.length >= 1, "the DELETE");
      expect(await stillPending(w.ended, 100)).toBe(true);
      w.stop();
    });

    it("close() ends open watches", async () => {
      const other = transport.create(etcd.endpoint);
      const key = uniqueKey("watch-close");
      const { revision } = await createIfAbsent(other, key, "x", 0n);
      const w = watching(other, key, revision + 1);
      await untilWatches(etcd.endpoint, 1, "the watch to be open in etcd");
      await other.close();
      expect(await w.ended).toBe("aborted");
    });

    it("resumes after etcd restarts without missing or repeating a DELETE", async () => {
      // A deadline long enough for etcd to come back.
      const c = transport.create(etcd.endpoint, { timeoutMs: 15_000 });
      try {
        const key = uniqueKey("watch-restart");
        const ids = [randomLeaseId(), randomLeaseId()];
        for (const id of ids) await c.leaseGrant(id, 60);
        const { revision } = await createIfAbsent(c, key, "x", ids[0] as bigint);
        const w = watching(c, key, revision + 1);
        await untilWatches(etcd.endpoint, 1, "the watch to be open in etcd");
        await c.leaseRevoke(ids[0] as bigint);
        await until(() => w.deletes.length >= 1, "the first DELETE");
        await etcd.restart();
        // Deleted before the watch is back (most likely): it must be replayed.
        await eventually(() => createIfAbsent(c, key, "y", ids[1] as bigint), "a write once etcd is back");
        await c.leaseRevoke(ids[1] as bigint);
        const second = (await c.get(key)).revision;
        await until(() => w.deletes.length >= 2, "the DELETE made while the watch was down", 15_000);
        const id = randomLeaseId();
        await c.leaseGrant(id, 60);
        await createIfAbsent(c, key, "z", id);
        await c.leaseRevoke(id);
        const third = (await c.get(key)).revision;
        await until(() => w.deletes.length >= 3, "the DELETE after the watch was back");
        expect(w.deletes.slice(1)).toEqual([second, third]);
        expect(await stillPending(w.ended, 100)).toBe(true);
        w.stop();
      } finally {
        await c.close();
      }
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
        createAllIfAbsent: () => createIfAbsent(c, key, "x", 0n),
        deleteAllIfUnchanged: () => c.deleteAllIfUnchanged([{ key, modRevision: 1 }]),
        watchDeletes: () => c.watchDeletes(key, 1, () => {}, new AbortController().signal),
        ping: () => c.ping(),
      };
    };

    it("rejects every call with EtcdUnavailableError within the deadline while etcd is stopped, and recovers", async () => {
      await client.ping();
      // Open every keep-alive stream first, so the restart breaks them all.
      const before = await lease(30);
      for (let i = 0; i < 16; i++) await client.leaseKeepAliveOnce(before);
      const watched = uniqueKey("down-watch");
      const { revision } = await createIfAbsent(client, watched, "x", 0n);
      const established = watching(client, watched, revision + 1);
      await untilWatches(etcd.endpoint, 1, "the watch to be open in etcd");
      const failed = established.ended.then(
        () => undefined,
        (err: unknown) => ({ err, at: Date.now() }),
      );
      await etcd.stop();
      const stoppedAt = Date.now();
      try {
        for (const [name, op] of Object.entries(ops(client))) {
          const { ms, result } = await timed(op());
          expect(result.status, name).toBe("rejected");
          if (result.status === "rejected") expect(result.reason, name).toBeInstanceOf(EtcdUnavailableError);
          expect(ms, name).toBeLessThan(TIMEOUT_MS + 500);
        }
        // An established watch whose stream broke fails once it cannot be reopened in time.
        const f = await failed;
        expect(f?.err).toBeInstanceOf(EtcdUnavailableError);
        expect((f?.at ?? 0) - stoppedAt).toBeLessThan(2 * TIMEOUT_MS + 1_000);
      } finally {
        await etcd.restart();
      }
      await eventually(() => client.ping(), "a ping once etcd is back");
      const key = uniqueKey("after-restart");
      expect((await createIfAbsent(client, key, "x", 0n)).created).toBe(true);
      expect((await client.get(key)).kv?.value).toBe("x");
      // Every keep-alive stream is usable again (leases outlive a restart of one member).
      await eventually(() => client.leaseKeepAliveOnce(before), "a keep-alive once etcd is back");
      for (let i = 0; i < 16; i++) expect(await client.leaseKeepAliveOnce(before)).toBe(30);
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
        await enableRootAuth(ep);
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
          const { revision } = await createIfAbsent(c, key, "x", id);
          expect((await c.get(key)).kv?.lease).toBe(id);
          await c.leaseRevoke(id);

          // Turning auth off and on again drops every token etcd has handed out: the
          // client's next call, a watch or a unary call, must authenticate again.
          await invalidateTokens(ep);
          expect(await firstDelete(c, key, revision + 1)).toBeGreaterThan(revision);
          await invalidateTokens(ep);
          expect((await c.get(key)).kv).toBeUndefined();

          // Keep-alives too: streams opened with a token etcd has dropped, then streams
          // that were opened before their token was dropped.
          const kept = randomLeaseId();
          await c.leaseGrant(kept, 30);
          await invalidateTokens(ep);
          for (let i = 0; i < 16; i++) expect(await c.leaseKeepAliveOnce(kept)).toBe(30);
          await invalidateTokens(ep);
          for (let i = 0; i < 16; i++) expect(await c.leaseKeepAliveOnce(kept)).toBe(30);
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

  it("with a duplex, sends keep-alives over a few long-lived streams, on the endpoint that answers", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const opened: string[] = [];
    const unary: string[] = [];
    const duplex = nodeDuplex(undefined);
    const c = createGatewayEtcd({
      endpoints: [dead, etcd.endpoint],
      timeoutMs: TIMEOUT_MS,
      post: async (url, init) => {
        unary.push(new URL(url).pathname);
        const res = await fetch(url, { method: "POST", ...init });
        return { status: res.status, text: await res.text() };
      },
      duplex: (url, ...rest) => {
        opened.push(url);
        return duplex(url, ...rest);
      },
    });
    try {
      const ids = [randomLeaseId(), randomLeaseId()];
      for (const id of ids) await c.leaseGrant(id, 30);
      const ttls = await Promise.all(Array.from({ length: 200 }, (_, i) => c.leaseKeepAliveOnce(ids[i % 2] as bigint)));
      expect(ttls).toEqual(Array(200).fill(30));
      expect(await c.leaseKeepAliveOnce(randomLeaseId())).toBe(0);
      expect(unary).not.toContain("/v3/lease/keepalive");
      // 8 streams, each tried on the dead endpoint first until one stream found etcd.
      const good = opened.filter((u) => u.startsWith(etcd.endpoint));
      expect(good.length).toBeGreaterThan(0);
      expect(good.length).toBeLessThanOrEqual(8);
      expect(good.every((u) => u === `${etcd.endpoint}/v3/lease/keepalive`)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("authenticates again when etcd refuses a keep-alive stream's token, or breaks the stream over it", async () => {
    // etcd 3.4 checks no token on keep-alives; newer members may. Simulated here: the first
    // stream is refused as a stale token would be, the second breaks with that error.
    const secured = await startTestEtcd();
    try {
      const ep = secured.endpoint;
      await enableRootAuth(ep);
      const staleToken =
        '{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}';
      const authentications: string[] = [];
      const tokensSent: (string | undefined)[] = [];
      let opens = 0;
      const duplex = nodeDuplex(undefined);
      const c = createGatewayEtcd({
        endpoints: [ep],
        timeoutMs: TIMEOUT_MS,
        username: "root",
        password: "s3cret-pw",
        post: async (url, init) => {
          if (url.endsWith("/v3/auth/authenticate")) authentications.push(url);
          const res = await fetch(url, { method: "POST", ...init });
          return { status: res.status, text: await res.text() };
        },
        duplex: async (url, headers, onLine, onClosed, timeoutMs) => {
          tokensSent.push(headers.authorization);
          opens++;
          if (opens === 1) return { status: 401, text: staleToken };
          const opened = await duplex(url, headers, onLine, onClosed, timeoutMs);
          if (opens !== 2 || !("stream" in opened)) return opened;
          return {
            status: 200,
            stream: {
              write: () =>
                onLine(JSON.stringify({ error: { grpc_code: 16, message: "etcdserver: invalid auth token" } })),
              end: () => opened.stream.end(),
            },
          };
        },
      });
      try {
        const id = randomLeaseId();
        await c.leaseGrant(id, 30);
        expect(authentications).toHaveLength(1);
        // Refused at open: a new token, the same stream opened again, answered.
        // Broken by an error line: a new token, and the keep-alive sent again on a new stream.
        expect(await c.leaseKeepAliveOnce(id)).toBe(30);
        expect(opens).toBe(3);
        expect(authentications).toHaveLength(3);
        expect(new Set(tokensSent).size).toBe(3);
      } finally {
        await c.close();
      }
    } finally {
      await secured.destroy();
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
    const res = await createIfAbsent(b, key, "x", id);
    expect(res).toEqual({ created: true, revision: (await b.get(key)).kv?.createRevision });
    await b.close();
  });

  /**
   * A gateway client whose first watch stream ends right after its first DELETE (as a
   * proxy's idle timeout or a member restart would end it) and whose next watch request
   * waits for `reopen`, so the test can change etcd while the watch is down.
   */
  function breakingWatch() {
    const requests: { create_request: { start_revision: string } }[] = [];
    let reopen: () => void = () => {};
    const reopened = new Promise<void>((r) => {
      reopen = r;
    });
    const c = createGatewayEtcd({
      endpoints: [etcd.endpoint],
      timeoutMs: TIMEOUT_MS,
      fetch: async (input, init) => {
        if (!String(input).endsWith("/v3/watch")) return fetch(input, init);
        requests.push(JSON.parse(String(init?.body)));
        if (requests.length > 1) {
          await reopened;
          return fetch(input, init);
        }
        const res = await fetch(input, init);
        if (!res.body) return res;
        const reader = res.body.getReader();
        const body = new ReadableStream<Uint8Array>({
          async pull(ctl) {
            const { done, value } = await reader.read();
            if (done) return ctl.close();
            ctl.enqueue(value);
            if (new TextDecoder().decode(value).includes('"DELETE"')) {
              await reader.cancel();
              ctl.close();
            }
          },
        });
        return new Response(body, { status: 200 });
      },
    });
    return { c, requests, reopen };
  }

  async function heldKey(c: EtcdClient, label: string) {
    const key = uniqueKey(label);
    const id = randomLeaseId();
    await c.leaseGrant(id, 30);
    const { revision } = await createIfAbsent(c, key, "x", id);
    return { key, id, revision };
  }

  it("reopens a broken watch stream from the last DELETE + 1: none missed, none repeated", async () => {
    const { c, requests, reopen } = breakingWatch();
    try {
      const { key, id, revision } = await heldKey(c, "watch-reopen");
      const w = watching(c, key, revision + 1);
      await untilWatches(etcd.endpoint, 1, "the watch to be open in etcd");
      await c.leaseRevoke(id);
      const first = (await c.get(key)).revision;
      await until(() => w.deletes.length >= 1 && requests.length >= 2, "the DELETE and the watch's reopen request");
      // Deleted while the watch is down.
      const id2 = randomLeaseId();
      await c.leaseGrant(id2, 30);
      await createIfAbsent(c, key, "y", id2);
      await c.leaseRevoke(id2);
      const second = (await c.get(key)).revision;
      reopen();
      await until(() => w.deletes.length >= 2, "the DELETE made while the watch was down");
      expect(w.deletes).toEqual([first, second]);
      expect(requests.map((r) => r.create_request.start_revision)).toEqual([String(revision + 1), String(first + 1)]);
      expect(await stillPending(w.ended, 100)).toBe(true);
      w.stop();
    } finally {
      await c.close();
    }
  });

  it("ends a broken watch with compacted when its resume revision was compacted meanwhile", async () => {
    const { c, requests, reopen } = breakingWatch();
    try {
      const { key, id, revision } = await heldKey(c, "watch-reopen-compacted");
      const w = watching(c, key, revision + 1);
      await untilWatches(etcd.endpoint, 1, "the watch to be open in etcd");
      await c.leaseRevoke(id);
      await until(() => w.deletes.length >= 1 && requests.length >= 2, "the DELETE and the watch's reopen request");
      // Compacting at the current revision removes the ones before it: first + 1 among them.
      for (let i = 0; i < 2; i++) await createIfAbsent(c, uniqueKey("watch-reopen-bump"), "y", 0n);
      const current = (await c.get(key)).revision;
      await admin(etcd.endpoint, "/v3/kv/compaction", { revision: String(current), physical: true });
      reopen();
      expect(await w.ended).toBe("compacted");
      expect(w.deletes).toHaveLength(1);
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
