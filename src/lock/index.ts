import type { EtcdClient } from "../etcd/types.js";
import type { Metrics } from "../metrics.js";
import { LockEngine } from "./engine.js";
import { metered } from "./metered.js";
import { nodeStrategies, type Strategies } from "./strategies/index.js";
import type { EngineOptions, Locks } from "./types.js";

export * from "./errors.js";
export { nodeStrategies, type Strategies, workerStrategies } from "./strategies/index.js";
export type { Acquired, AcquireOptions, Ended, Grant, ListOptions, LockInfo, Locks } from "./types.js";

export interface LocksOptions extends EngineOptions {
  /** The performance strategies for this runtime (default: Node's, nodeStrategies). */
  strategies?: (etcd: EtcdClient) => Strategies;
  metrics?: Metrics;
}

/** The lock engine on `etcd` with the runtime's strategies and, when given, metrics. */
export function createLocks(etcd: EtcdClient, o: LocksOptions): Locks {
  const engine = new LockEngine(etcd, (o.strategies ?? nodeStrategies)(etcd), o);
  return o.metrics ? metered(engine, o.metrics) : engine;
}
