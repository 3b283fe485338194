import type { ApiKeys } from "./auth/api-keys.js";
import type { Config } from "./config.js";
import type { EtcdClient, EtcdConnectionOptions } from "./etcd/types.js";
import { createApp } from "./http/app.js";
import type { App, AppDeps, AssetReader } from "./http/deps.js";
import type { Logger } from "./http/logger.js";
import { createLines, type Lines, type Strategies } from "./lock/index.js";
import type { Metrics } from "./metrics.js";

/**
 * The one setup both runtime entries share (src/node/build.ts, src/worker.ts): what
 * differs between them is passed in (how etcd is reached, the strategies, assets,
 * metrics), the rest is wired here once.
 */

/** How to reach etcd, from the configuration; `tls` holds PEM contents the runtime read. */
export function etcdOptions(
  config: Config,
  endpoints: string[],
  tls?: EtcdConnectionOptions["tls"],
): EtcdConnectionOptions {
  return {
    endpoints,
    timeoutMs: config.ETCD_TIMEOUT_MS,
    ...(config.ETCD_USERNAME !== undefined ? { username: config.ETCD_USERNAME } : {}),
    ...(config.ETCD_PASSWORD !== undefined ? { password: config.ETCD_PASSWORD } : {}),
    ...(tls ? { tls } : {}),
  };
}

export interface RuntimeParts {
  log: Logger;
  /** The runtime's performance strategies for the engine. */
  strategies: (etcd: EtcdClient) => Strategies;
  docsAssets: AssetReader;
  auth?: ApiKeys;
  metrics?: Metrics;
  metricsText?: AppDeps["metricsText"];
  shutdownSignal?: AbortSignal;
}

/** The coordination engine (locks and semaphores) on `etcd` and the HTTP app serving it. */
export function buildService(config: Config, etcd: EtcdClient, parts: RuntimeParts): { app: App; lines: Lines } {
  const lines = createLines(etcd, {
    prefix: config.LEASEHOLD_PREFIX,
    maxWaiters: config.LEASEHOLD_MAX_WAITERS,
    maxFeeds: config.LEASEHOLD_MAX_STREAMS,
    strategies: parts.strategies,
    ...(parts.metrics ? { metrics: parts.metrics } : {}),
    ...(parts.shutdownSignal ? { shutdownSignal: parts.shutdownSignal } : {}),
  });
  const app = createApp({
    config,
    etcd,
    lines,
    log: parts.log,
    docsAssets: parts.docsAssets,
    ...(parts.metricsText ? { metricsText: parts.metricsText } : {}),
    ...(parts.auth ? { auth: parts.auth } : {}),
  });
  return { app, lines };
}
