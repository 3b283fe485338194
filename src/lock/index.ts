import type { EtcdClient } from "../etcd/types.js";
import type { Metrics } from "../metrics.js";
import { LineEngine } from "./engine.js";
import { metered } from "./metered.js";
import { nodeStrategies, type Strategies } from "./strategies/index.js";
import type { EngineOptions, Lines } from "./types.js";

export * from "./errors.js";
export { nodeStrategies, type Strategies, workerStrategies } from "./strategies/index.js";
export type * from "./types.js";

export interface LinesOptions extends EngineOptions {
  /** The performance strategies for this runtime (default: Node's, nodeStrategies). */
  strategies?: (etcd: EtcdClient) => Strategies;
  metrics?: Metrics;
}

/** The coordination engine on `etcd` with the runtime's strategies and, when given, metrics. */
export function createLines(etcd: EtcdClient, o: LinesOptions): Lines {
  const engine = new LineEngine(etcd, (o.strategies ?? nodeStrategies)(etcd), o);
  return o.metrics ? metered(engine, o.metrics) : engine;
}
