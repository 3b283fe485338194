/**
 * What the service counts, independent of any metrics library. The Node entry backs it
 * with prom-client (src/node/metrics.ts); elsewhere it is a no-op. Lock names are passed
 * along, and a backend only uses them as labels when told to (cardinality).
 */
export type AcquireOutcome = "granted" | "held" | "timeout" | "error";
export type RenewOutcome = "renewed" | "lost" | "error";
export type ReleaseOutcome = "released" | "forced" | "lost" | "error";

export interface Metrics {
  acquire(outcome: AcquireOutcome, name: string): void;
  renew(outcome: RenewOutcome, name: string): void;
  release(outcome: ReleaseOutcome, name: string): void;
  /** Seconds a waiting acquire spent before its grant or its timeout. */
  waited(seconds: number): void;
  /** Seconds from grant to release, for released locks. */
  held(seconds: number): void;
  /** One etcd call: its operation, duration (none for watches) and whether it failed. */
  etcd(op: string, seconds: number | undefined, failed: boolean): void;
}

export const noMetrics: Metrics = {
  acquire() {},
  renew() {},
  release() {},
  waited() {},
  held() {},
  etcd() {},
};
