import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Metrics } from "../metrics.js";

/** Prometheus metrics for the Node service (GET /metrics). */
export function prometheusMetrics(opts: { lockNameLabels: boolean; waiters: () => number }): {
  metrics: Metrics;
  registry: Registry;
} {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const labels = opts.lockNameLabels ? (["outcome", "name"] as const) : (["outcome"] as const);
  const counter = (name: string, help: string) =>
    new Counter({ name, help, labelNames: [...labels], registers: [registry] });
  const acquire = counter("leasehold_acquire_total", "Acquire requests by outcome (granted, held, timeout, error)");
  const renew = counter("leasehold_renew_total", "Renew requests by outcome (renewed, lost, error)");
  const release = counter("leasehold_release_total", "Release requests by outcome (released, forced, lost, error)");
  const wait = new Histogram({
    name: "leasehold_wait_seconds",
    help: "Time waiting acquires spent before their grant or timeout",
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });
  const hold = new Histogram({
    name: "leasehold_hold_seconds",
    help: "Time from grant to release of released locks",
    buckets: [0.1, 1, 5, 15, 30, 60, 300, 900, 3600, 14400, 86400],
    registers: [registry],
  });
  const etcdSeconds = new Histogram({
    name: "leasehold_etcd_request_seconds",
    help: "Duration of etcd calls by operation",
    labelNames: ["op"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const etcdErrors = new Counter({
    name: "leasehold_etcd_errors_total",
    help: "Failed etcd calls by operation",
    labelNames: ["op"],
    registers: [registry],
  });
  new Gauge({
    name: "leasehold_waiters",
    help: "Acquires currently waiting in this instance",
    registers: [registry],
    collect() {
      this.set(opts.waiters());
    },
  });
  const by = (outcome: string, name: string) => (opts.lockNameLabels ? { outcome, name } : { outcome });
  return {
    registry,
    metrics: {
      acquire: (outcome, name) => acquire.inc(by(outcome, name)),
      renew: (outcome, name) => renew.inc(by(outcome, name)),
      release: (outcome, name) => release.inc(by(outcome, name)),
      waited: (seconds) => wait.observe(seconds),
      held: (seconds) => hold.observe(seconds),
      etcd: (op, seconds, failed) => {
        if (seconds !== undefined) etcdSeconds.observe({ op }, seconds);
        if (failed) etcdErrors.inc({ op });
      },
    },
  };
}
