import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import {
  createServer as createH2Server,
  constants as h2,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrpcChannel } from "../../src/etcd/grpc/channel.js";
import { FrameReader } from "../../src/etcd/grpc/frames.js";
import { etcdMethods, genericMethods } from "../../src/etcd/grpc/methods.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { freePort, startLocalEtcd } from "../../src/node/local-etcd.js";
import { makeTestCerts } from "../support/certs.js";
import { startTestEtcd } from "../support/etcd.js";
import { eventually, sleep, until } from "../support/http.js";

/**
 * The gRPC transport's own HTTP/2 channel (src/etcd/grpc/channel.ts). The conformance
 * suite (transport.test.ts) covers what every transport does; these cover what is the
 * channel's own: the framing, and a connection that stops answering.
 */

const framed = (...messages: string[]) =>
  Buffer.concat(
    messages.map((m) => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(Buffer.byteLength(m), 1);
      return Buffer.concat([head, Buffer.from(m)]);
    }),
  );

describe("FrameReader", () => {
  it("splits messages out of chunks cut anywhere, several to a chunk or one across many", () => {
    const bytes = framed("first", "", "the third message");
    for (let cut = 0; cut <= bytes.length; cut++) {
      for (let cut2 = cut; cut2 <= bytes.length; cut2++) {
        const r = new FrameReader();
        const got = [
          ...r.push(bytes.subarray(0, cut)),
          ...r.push(bytes.subarray(cut, cut2)),
          ...r.push(bytes.subarray(cut2)),
        ];
        expect(got.map(String)).toEqual(["first", "", "the third message"]);
      }
    }
  });

  it("refuses a compressed message (none was asked for) and one over 4 MiB", () => {
    const compressed = framed("x");
    compressed[0] = 1;
    expect(() => new FrameReader().push(compressed)).toThrow(/compressed/);
    const huge = Buffer.alloc(5);
    huge.writeUInt32BE(4 * 1024 * 1024 + 1, 1);
    expect(() => new FrameReader().push(huge)).toThrow(/larger than max/);
  });
});

/**
 * A TCP proxy. `freeze()` stops forwarding on the connections open now, without closing
 * them; with `{ all: true }` it also accepts later connections and forwards nothing on
 * them (a paused member: the kernel still accepts). `thaw()` ends the held connections
 * and forwards again on new ones.
 */
async function freezingProxy(upstream: string) {
  const target = new URL(upstream);
  const pairs: { client: Socket; up: Socket }[] = [];
  const held: Socket[] = [];
  let holdNew = false;
  let bytesUp = 0;
  let bytesDown = 0;
  let accepted = 0;
  const server = createServer((client) => {
    accepted++;
    client.on("error", () => {});
    if (holdNew) {
      client.pause();
      held.push(client);
      return;
    }
    const up = connect(Number(target.port), target.hostname);
    up.on("error", () => {});
    client.on("data", (chunk: Buffer) => {
      bytesUp += chunk.length;
    });
    up.on("data", (chunk: Buffer) => {
      bytesDown += chunk.length;
    });
    client.pipe(up);
    up.pipe(client);
    pairs.push({ client, up });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** Connections accepted so far. */
    connections: () => accepted,
    /** Bytes forwarded from clients to etcd so far. */
    bytesUp: () => bytesUp,
    /** Bytes forwarded from etcd to clients so far. */
    bytesDown: () => bytesDown,
    freeze(opts: { all?: boolean } = {}) {
      holdNew = opts.all ?? false;
      for (const { client, up } of pairs.splice(0)) {
        client.removeAllListeners("data");
        client.unpipe(up);
        up.unpipe(client);
        client.pause();
        up.pause();
        held.push(client, up);
      }
    },
    thaw() {
      holdNew = false;
      for (const s of held) s.destroy();
    },
    async stop() {
      for (const { client, up } of pairs) {
        client.destroy();
        up.destroy();
      }
      for (const s of held) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** `message` framed as gRPC frames it (not compressed, length). */
const frameBytes = (message: Buffer) => {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
};

/**
 * An HTTP/2 server speaking just enough of etcd's gRPC: LeaseKeepAlive answers each
 * request with TTL 10, except on connections made silent. `refuse` resets every stream
 * with REFUSED_STREAM (a member going away); `lose` reads each request, then resets its
 * stream (`rst`) or drops the whole connection (`drop`): an answer lost after etcd had it.
 */
async function fakeMember(opts: { refuse?: boolean; lose?: "rst" | "drop" } = {}) {
  const { leaseKeepAlive } = genericMethods();
  const server = createH2Server();
  const sessions: ServerHttp2Session[] = [];
  const silent = new WeakSet<object>();
  let requests = 0;
  server.on("session", (s) => {
    s.on("error", () => {});
    sessions.push(s);
  });
  server.on("stream", (stream: ServerHttp2Stream) => {
    stream.on("error", () => {});
    if (opts.refuse) return stream.close(h2.NGHTTP2_REFUSED_STREAM);
    const session = stream.session;
    if (opts.lose) {
      stream.on("data", () => {});
      stream.on("end", () => {
        requests++;
        if (opts.lose === "rst") stream.close(h2.NGHTTP2_INTERNAL_ERROR);
        else session?.destroy();
      });
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    const reader = new FrameReader();
    stream.on("data", (chunk: Buffer) => {
      for (const m of reader.push(chunk)) {
        requests++;
        if (session && silent.has(session)) continue;
        const { ID } = leaseKeepAlive.decodeRequest(m) as { ID: string };
        stream.write(frameBytes(leaseKeepAlive.encodeResponse({ header: {}, ID, TTL: "10" })));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => sessions.length,
    requests: () => requests,
    /** No answer on the connections open now (pings are still answered: Node does that). */
    silence() {
      for (const s of sessions) silent.add(s);
    },
    /** GOAWAY on every connection open now (streams open on them may go on), then no answer on them. */
    goAwayAndSilence() {
      for (const s of sessions) {
        silent.add(s);
        s.goaway(h2.NGHTTP2_NO_ERROR);
      }
    },
    async stop() {
      for (const s of sessions) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const someLeaseId = () => BigInt(Date.now()) * 1_000n + BigInt(Math.floor(Math.random() * 1_000));

/** Until a keep-alive on each of the client's lanes is answered with `ttl`. */
const everyLaneAnswers = (client: ReturnType<typeof createGrpcEtcd>, id: bigint, ttl: number) =>
  eventually(async () => {
    for (let i = 0; i < 8; i++) expect(await client.leaseKeepAliveOnce(id)).toBe(ttl);
  }, "a keep-alive answered on every lane");

describe("members that stop answering, and requests that never reached one", () => {
  let etcd: Awaited<ReturnType<typeof startTestEtcd>>;
  beforeAll(async () => {
    etcd = await startTestEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it("a connection that stops answering is dropped once a call misses its deadline and a ping goes unanswered", async () => {
    const proxy = await freezingProxy(etcd.endpoint);
    const client = createGrpcEtcd({ endpoints: [proxy.url], timeoutMs: 1_000 });
    try {
      await client.ping();
      expect(proxy.connections()).toBe(1);
      proxy.freeze();
      await expect(client.get("k")).rejects.toBeInstanceOf(EtcdUnavailableError);
      // Nothing ends the frozen connection from outside (no FIN, no RST): only the
      // channel's own check can move the calls to a new one.
      await eventually(() => client.get("k"), "a read over a new connection");
      expect(proxy.connections()).toBe(2);
    } finally {
      await client.close();
      await proxy.stop();
    }
  });

  it("a silent member among several is passed over after one missed deadline, and taken back once it answers", async () => {
    const proxy = await freezingProxy(etcd.endpoint);
    const client = createGrpcEtcd({ endpoints: [proxy.url, etcd.endpoint], timeoutMs: 1_000 });
    try {
      await until(async () => {
        await client.get("k");
        return proxy.bytesUp() > 0;
      }, "a call through the proxied member");
      // Paused: its connection stays open, and new ones are accepted, but nothing answers.
      proxy.freeze({ all: true });
      const failures: unknown[] = [];
      const started = Date.now();
      // Past the ping's timeout and the second it is passed over: its return is tried too.
      while (Date.now() - started < 3_500) await client.get("k").catch((err: unknown) => failures.push(err));
      expect(failures.length).toBeLessThanOrEqual(1);
      for (const err of failures) expect(err).toBeInstanceOf(EtcdUnavailableError);

      proxy.thaw();
      const mark = proxy.bytesUp();
      await until(async () => {
        await client.get("k");
        return proxy.bytesUp() > mark + 1_000;
      }, "calls through the member again");
    } finally {
      await client.close();
      await proxy.stop();
    }
  });

  it("a connection whose keep-alive stream stops answering is dropped: its lanes go on over a new one", async () => {
    const proxy = await freezingProxy(etcd.endpoint);
    const client = createGrpcEtcd({ endpoints: [proxy.url], timeoutMs: 1_000 });
    try {
      const id = someLeaseId();
      await client.leaseGrant(id, 30);
      for (let i = 0; i < 8; i++) expect(await client.leaseKeepAliveOnce(id)).toBe(30);
      proxy.freeze();
      await expect(client.leaseKeepAliveOnce(id)).rejects.toBeInstanceOf(EtcdUnavailableError);
      // Keep-alives only: no unary call misses a deadline on the frozen connection.
      await everyLaneAnswers(client, id, 30);
      expect(proxy.connections()).toBe(2);
    } finally {
      await client.close();
      await proxy.stop();
    }
  });

  it("a keep-alive stream still unanswered after its member answered a ping is looked at again: dropped once pings go unanswered", async () => {
    const member = await fakeMember();
    const proxy = await freezingProxy(member.url);
    const client = createGrpcEtcd({ endpoints: [proxy.url], timeoutMs: 1_000 });
    try {
      for (let i = 0; i < 8; i++) expect(await client.leaseKeepAliveOnce(7n)).toBe(10);
      // A member that stops answering the stream but still answers pings (as one waiting
      // for a leader would), and then stops answering those too.
      member.silence();
      const down = proxy.bytesDown();
      // One keep-alive on each lane: every stream on the connection has one left unanswered.
      const stalled = await Promise.allSettled(Array.from({ length: 8 }, () => client.leaseKeepAliveOnce(7n)));
      for (const r of stalled) expect(r.status === "rejected" && r.reason).toBeInstanceOf(EtcdUnavailableError);
      // On the silent connection only a ping's answer comes back.
      await until(() => proxy.bytesDown() > down, "the member's answer to the channel's ping");
      proxy.freeze();
      await everyLaneAnswers(client, 7n, 10);
      expect(member.connections()).toBe(2);
    } finally {
      await client.close();
      await proxy.stop();
      await member.stop();
    }
  });

  it("a keep-alive stream left on a connection after GOAWAY, then not answered, is dropped with it", async () => {
    const member = await fakeMember();
    const client = createGrpcEtcd({ endpoints: [member.url], timeoutMs: 1_000 });
    try {
      for (let i = 0; i < 8; i++) expect(await client.leaseKeepAliveOnce(7n)).toBe(10);
      member.goAwayAndSilence();
      await everyLaneAnswers(client, 7n, 10);
      expect(member.connections()).toBe(2);
    } finally {
      await client.close();
      await member.stop();
    }
  });

  it("a request that never reached a member goes to the next: refused connection, or stream refused by one going away", async () => {
    const refusing = await fakeMember({ refuse: true });
    const dead = `http://127.0.0.1:${await freePort()}`;
    try {
      for (const other of [dead, refusing.url]) {
        // A fresh client each time: which member a call tries first is random.
        for (let i = 0; i < 10; i++) {
          const client = createGrpcEtcd({ endpoints: [other, etcd.endpoint], timeoutMs: 1_000 });
          try {
            await client.get("k");
            await client.get("k");
          } finally {
            await client.close();
          }
        }
      }
      expect(refusing.connections()).toBeGreaterThan(0);
      const alone = createGrpcEtcd({ endpoints: [refusing.url], timeoutMs: 1_000 });
      try {
        await expect(alone.get("k")).rejects.toBeInstanceOf(EtcdUnavailableError);
      } finally {
        await alone.close();
      }
    } finally {
      await refusing.stop();
    }
  });

  it("a txn whose answer was lost after the member had it is not sent again: its outcome is unknown", async () => {
    const direct = createGrpcEtcd({ endpoints: [etcd.endpoint], timeoutMs: 1_000 });
    for (const lose of ["rst", "drop"] as const) {
      const losing = await fakeMember({ lose });
      try {
        let lost = 0;
        for (let i = 0; i < 10; i++) {
          const client = createGrpcEtcd({ endpoints: [losing.url, etcd.endpoint], timeoutMs: 1_000 });
          const key = `lost-${lose}-${i}-${Date.now()}`;
          try {
            const sent = losing.requests();
            const outcome = await client.createAllIfAbsent([{ key, value: "v", lease: 0n }]).then(
              () => "applied",
              (err: unknown) => err,
            );
            if (losing.requests() > sent) {
              lost++;
              expect(outcome).toBeInstanceOf(EtcdUnavailableError);
              // Not resent to the live member.
              expect((await direct.get(key)).kv).toBeUndefined();
            } else expect(outcome).toBe("applied");
          } finally {
            await client.close();
          }
        }
        expect(lost).toBeGreaterThan(0);
      } finally {
        await losing.stop();
      }
    }
    await direct.close();
  });

  it("moves to a new connection before a connection's stream IDs run out", async () => {
    const proxy = await freezingProxy(etcd.endpoint);
    const methods = etcdMethods();
    const channel = new GrpcChannel({ endpoints: [proxy.url], timeoutMs: 1_000, streamsPerConnection: 4 }, methods);
    try {
      for (let i = 0; i < 10; i++) await channel.unary(methods.range, { key: Buffer.from("k") }, "range");
      expect(proxy.connections()).toBe(3);
    } finally {
      channel.close();
      await proxy.stop();
    }
  });
});

/** A real etcd started with extra flags or TLS, removed with its data dir by `destroy`. */
async function etcdWith(opts: Omit<Parameters<typeof startLocalEtcd>[0], "dataDir">) {
  const dataDir = mkdtempSync(join(tmpdir(), "leasehold-etcd-"));
  const etcd = await startLocalEtcd({ dataDir, ...opts });
  return Object.assign(etcd, {
    destroy: async () => {
      await etcd.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}

it("a token etcd let expire is fetched again once, and the call goes through: reads, txns and keep-alives", async () => {
  const etcd = await etcdWith({ args: ["--auth-token-ttl", "1"] });
  const gateway = async (path: string, body: unknown, token?: string) => {
    const res = await fetch(`${etcd.endpoint}${path}`, {
      method: "POST",
      headers: token ? { authorization: token } : {},
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
  await gateway("/v3/auth/user/add", { name: "root", password: "pw" });
  await gateway("/v3/auth/role/add", { name: "root" });
  await gateway("/v3/auth/user/grant", { user: "root", role: "root" });
  await gateway("/v3/auth/enable", {});
  const client = createGrpcEtcd({ endpoints: [etcd.endpoint], timeoutMs: 2_000, username: "root", password: "pw" });
  /**
   * Until a token taken after the client's last call was let expire (then the client's
   * was too). A use of a token renews it, so each try takes a fresh one and looks at it
   * once, after it went unused for longer than its TTL.
   */
  const tokensExpired = async () => {
    for (let tries = 0; ; tries++) {
      const { token } = await gateway("/v3/auth/authenticate", { name: "root", password: "pw" });
      await sleep(1_500);
      const refused = await gateway("/v3/kv/range", { key: Buffer.from("k").toString("base64") }, String(token)).then(
        () => false,
        (err: Error) => /invalid auth token/.test(err.message),
      );
      if (refused) return;
      if (tries === 5) throw new Error("etcd kept a token unused for 1.5 s past its TTL of 1 s, 6 times");
    }
  };
  try {
    const id = someLeaseId();
    await client.leaseGrant(id, 30);
    expect(await client.leaseKeepAliveOnce(id)).toBe(30);
    await tokensExpired();
    expect((await client.get("k")).kv).toBeUndefined();
    await tokensExpired();
    expect(await client.createAllIfAbsent([{ key: "k", value: "v", lease: id }])).toMatchObject({ applied: true });
    await tokensExpired();
    for (let i = 0; i < 8; i++) expect(await client.leaseKeepAliveOnce(id)).toBe(30);
  } finally {
    await client.close();
    await etcd.destroy();
  }
});

it("TLS files mean TLS, as etcd3 took them, also for an endpoint written http://", async () => {
  const certs = makeTestCerts();
  const etcd = await etcdWith({ tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca } });
  const tls = {
    ca: readFileSync(certs.ca, "utf8"),
    cert: readFileSync(certs.clientCert, "utf8"),
    key: readFileSync(certs.clientKey, "utf8"),
  };
  try {
    expect(etcd.endpoint).toMatch(/^https:/);
    for (const endpoint of [etcd.endpoint, etcd.endpoint.replace(/^https:/, "http:")]) {
      const client = createGrpcEtcd({ endpoints: [endpoint], timeoutMs: 2_000, tls });
      try {
        const id = someLeaseId();
        await client.leaseGrant(id, 30);
        expect(await client.leaseKeepAliveOnce(id)).toBe(30);
        await client.ping();
      } finally {
        await client.close();
      }
    }
  } finally {
    await etcd.destroy();
    rmSync(certs.dir, { recursive: true, force: true });
  }
});
