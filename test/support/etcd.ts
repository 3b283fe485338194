import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import type { EtcdClient } from "../../src/etcd/types.js";
import { workerStrategies } from "../../src/lock/index.js";
import { type LocalEtcd, startLocalEtcd } from "../../src/node/local-etcd.js";
import { until } from "./http.js";

export type TestEtcd = LocalEtcd & { destroy(): Promise<void> };

/**
 * Starts a real etcd on free loopback ports with a temp data dir. Throws (never skips)
 * when etcd cannot be started, so a machine without etcd fails the suite loudly.
 */
export async function startTestEtcd(): Promise<TestEtcd> {
  const dataDir = mkdtempSync(join(tmpdir(), "leasehold-etcd-"));
  const etcd = await startLocalEtcd({ dataDir });
  return Object.assign(etcd, {
    destroy: async () => {
      await etcd.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}

/**
 * A real etcd for the enclosing `describe`, and clients on it (`create`: gRPC by default)
 * that are closed, with the etcd, after its tests.
 */
export function etcdWithClients(
  create: (endpoint: string) => EtcdClient = (endpoint) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs: 3000 }),
): { readonly etcd: TestEtcd; client(): EtcdClient } {
  let etcd: TestEtcd | undefined;
  const clients: EtcdClient[] = [];
  beforeAll(async () => {
    etcd = await startTestEtcd();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await etcd?.destroy();
  });
  const started = (): TestEtcd => {
    if (!etcd) throw new Error("the test etcd has not started (use it inside a test)");
    return etcd;
  };
  return {
    get etcd() {
      return started();
    },
    client() {
      const c = create(started().endpoint);
      clients.push(c);
      return c;
    },
  };
}

/**
 * A real etcd and one gRPC client on it for the enclosing `describe`: started before its
 * tests, closed and removed after them. Read `etcd` and `client` inside the tests.
 */
export function grpcOnTestEtcd(timeoutMs = 3000): { readonly etcd: TestEtcd; readonly client: EtcdClient } {
  const shared = etcdWithClients((endpoint) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs }));
  let client: EtcdClient | undefined;
  return {
    get etcd() {
      return shared.etcd;
    },
    get client() {
      client ??= shared.client();
      return client;
    },
  };
}

/** The lock engine's strategy presets, for tests that run under each runtime's. */
export const RUNTIMES = [
  { how: "Node strategies", runtime: {} },
  { how: "Worker strategies", runtime: { strategies: workerStrategies } },
] as const;

/** Counts calls per EtcdClient method, passing everything through to real etcd. */
export function counting(inner: EtcdClient) {
  const calls: Record<string, number> = {};
  const client = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls[String(prop)] = (calls[String(prop)] ?? 0) + 1;
        return value.apply(target, args);
      };
    },
  });
  const reset = () => {
    for (const k of Object.keys(calls)) delete calls[k];
  };
  return { client, calls, reset };
}

/** How many watches etcd holds open now, over all its clients (its watcher gauge). */
export async function openWatches(endpoint: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const gauge = /^etcd_debugging_mvcc_watcher_total (\S+)$/m.exec(text);
  if (!gauge) throw new Error(`${endpoint}/metrics has no etcd_debugging_mvcc_watcher_total`);
  return Number(gauge[1]);
}

/**
 * Waits until etcd holds exactly `n` watches open: the test's own are established in etcd
 * (so a DELETE from now on reaches them) and those of earlier tests are gone. Mind that
 * etcd counts a watch it ended for compaction until its stream closes: on a gRPC client,
 * until the client's last other watch ends.
 */
export function untilWatches(endpoint: string, n: number, what = `${n} open watch(es) in etcd`): Promise<void> {
  return until(async () => (await openWatches(endpoint)) === n, what);
}
