import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdClient } from "../../src/etcd/types.js";
import { GATEWAY_CONNECTIONS, gatewayOnNode } from "../../src/node/gateway.js";
import { startTestEtcd } from "../support/etcd.js";
import { until } from "../support/http.js";

/** A TCP relay in front of etcd that counts the connections open through it. */
async function countingRelay(target: string) {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const counts = { open: 0, most: 0, total: 0 };
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    counts.open++;
    counts.total++;
    counts.most = Math.max(counts.most, counts.open);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream).pipe(client);
    let closed = false;
    const done = () => {
      if (closed) return;
      closed = true;
      counts.open--;
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", done).on("error", done);
    upstream.on("close", done).on("error", done);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    counts,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe("gateway transport on Node: connection pools", () => {
  let etcd: Awaited<ReturnType<typeof startTestEtcd>>;
  beforeAll(async () => {
    etcd = await startTestEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it(`many concurrent calls share at most ${GATEWAY_CONNECTIONS} connections to etcd`, async () => {
    const relay = await countingRelay(etcd.endpoint);
    const client = gatewayOnNode({ endpoints: [relay.url], timeoutMs: 10_000 });
    try {
      const calls = 600;
      const results = await Promise.all(Array.from({ length: calls }, (_, i) => client.get(`pool-test/${i % 50}`)));
      expect(results).toHaveLength(calls);
      expect(relay.counts.most).toBeGreaterThan(1);
      expect(relay.counts.most).toBeLessThanOrEqual(GATEWAY_CONNECTIONS);
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it("watch streams have their own connections: more watches than the unary cap never block a call", async () => {
    const relay = await countingRelay(etcd.endpoint);
    const cap = 2;
    const client: EtcdClient = gatewayOnNode({ endpoints: [relay.url], timeoutMs: 3_000 }, cap);
    const stop = new AbortController();
    try {
      const watches = Array.from({ length: cap + 3 }, (_, i) =>
        client.watchDeletes(`pool-test/watched-${i}`, 0, () => {}, stop.signal),
      );
      await until(() => relay.counts.open >= cap + 3, "every watch to hold a connection", 5_000);
      expect(relay.counts.open).toBeGreaterThanOrEqual(cap + 3);
      // Every watch holds its stream open; unary calls still get through at once.
      const started = Date.now();
      await Promise.all(Array.from({ length: 20 }, () => client.get("pool-test/free")));
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(relay.counts.open).toBeLessThanOrEqual(cap + 3 + cap);
      stop.abort();
      expect(await Promise.all(watches)).toEqual(watches.map(() => "aborted"));
    } finally {
      stop.abort();
      await client.close();
      await relay.stop();
    }
  });
});
