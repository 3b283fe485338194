import type { LineRef } from "./lock/types.js";

/**
 * What the service counts, independent of any metrics library. The Node entry backs it
 * with prom-client (src/node/metrics.ts); elsewhere it is a no-op. The line (its kind and
 * name) is passed along; a backend labels by kind (two values) and uses the name as a
 * label only when told to (cardinality). Never a lease handle or a ticket.
 */
export type AcquireOutcome = "granted" | "queued" | "held" | "timeout" | "limit-mismatch" | "lost" | "error";
export type RenewOutcome = "renewed" | "lost" | "error";
export type ReleaseOutcome = "released" | "forced" | "left" | "lost" | "error";

export interface Metrics {
  /** An acquire or a ticket's redeem ("lost": the ticket was no longer in line). */
  acquire(outcome: AcquireOutcome, line: LineRef): void;
  renew(outcome: RenewOutcome, line: LineRef): void;
  /** A release, a force release or a ticket leaving its line ("left"). */
  release(outcome: ReleaseOutcome, line: LineRef): void;
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
