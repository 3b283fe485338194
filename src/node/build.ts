import type { ApiKeys } from "../auth/api-keys.js";
import type { Config } from "../config.js";
import { instrumented } from "../etcd/instrumented.js";
import type { EtcdClient } from "../etcd/types.js";
import type { App } from "../http/deps.js";
import type { Logger } from "../http/logger.js";
import { type Lines, nodeStrategies } from "../lock/index.js";
import { buildService } from "../setup.js";
import { nodeDocsAssets } from "./assets.js";
import { connectEtcd } from "./etcd.js";
import { prometheusMetrics } from "./metrics.js";

/**
 * The Node service's parts, wired once: etcd (instrumented), the lock protocol with
 * Prometheus metrics, and the HTTP app. Used by `npm start` and by the tests.
 */
export async function buildNodeApp(
  config: Config,
  o: { endpoints: string[]; log: Logger; auth?: ApiKeys; shutdownSignal?: AbortSignal },
): Promise<{ app: App; lines: Lines; etcd: EtcdClient; close(): Promise<void> }> {
  let lines: Lines | undefined;
  const { metrics, contentType, exposition } = prometheusMetrics({
    lockNameLabels: config.LEASEHOLD_METRICS_LOCK_NAMES,
    waiters: () => lines?.activeWaiters ?? 0,
    blockedReads: () => lines?.activeReads ?? 0,
    streams: () => lines?.activeFeeds ?? 0,
  });
  if (config.LEASEHOLD_METRICS_LOCK_NAMES && !(o.auth && config.LEASEHOLD_METRICS_AUTH)) {
    o.log.warn(
      "LEASEHOLD_METRICS_LOCK_NAMES=true: lock names reach only scrapes with an API key; set LEASEHOLD_API_KEYS and LEASEHOLD_METRICS_AUTH=true, else /metrics shows none",
    );
  }
  const raw = await connectEtcd(config, o.endpoints);
  const etcd = instrumented(raw, metrics);
  const service = buildService(config, etcd, {
    log: o.log,
    strategies: (client) => nodeStrategies(client, { sessionIdleMs: config.LEASEHOLD_WAITER_SESSION_IDLE * 1_000 }),
    docsAssets: nodeDocsAssets(),
    metrics,
    metricsText: async (caller) => ({ contentType, body: await exposition(caller) }),
    ...(o.auth ? { auth: o.auth } : {}),
    ...(o.shutdownSignal ? { shutdownSignal: o.shutdownSignal } : {}),
  });
  const { app } = service;
  lines = service.lines;
  // An idle instance still hands back leases nobody reused (see LeasePool).
  const sweeper = setInterval(() => lines?.sweepLeases(), 1_000);
  sweeper.unref();
  return {
    app,
    lines,
    etcd,
    close: async () => {
      clearInterval(sweeper);
      await lines?.close();
      await etcd.close();
    },
  };
}
