import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { type ApiKey, allows } from "../auth/api-keys.js";
import type { LineRef } from "../lock/types.js";
import type { Metrics } from "../metrics.js";

const COUNTERS = {
  acquire: [
    "leasehold_acquire_total",
    "Acquire and ticket redeem requests by line kind and outcome (granted, queued, held, timeout, limit-mismatch, lost, error)",
  ],
  renew: ["leasehold_renew_total", "Renew requests by line kind and outcome (renewed, lost, error)"],
  release: [
    "leasehold_release_total",
    "Release requests and tickets leaving by line kind and outcome (released, forced, left, lost, error)",
  ],
} as const;

/**
 * Prometheus metrics for the Node service (GET /metrics). `exposition(caller)` is what
 * one scrape may see: lock names are scoped like everywhere else, so when they are
 * labels an admin key sees every name, another key only the names its prefixes allow,
 * and a scrape without a key (open /metrics, or auth off) none: its counters are
 * summed over names.
 */
export function prometheusMetrics(opts: {
  lockNameLabels: boolean;
  waiters: () => number;
  blockedReads?: () => number;
  streams?: () => number;
}): {
  metrics: Metrics;
  contentType: string;
  exposition(caller: ApiKey | undefined): Promise<string>;
} {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Name-labelled counters live apart from `registry` so that no scrape gets them unfiltered by accident.
  const named = opts.lockNameLabels ? new Registry() : registry;
  const labels = opts.lockNameLabels ? (["outcome", "kind", "name"] as const) : (["outcome", "kind"] as const);
  const counter = ([name, help]: readonly [string, string], registers: Registry[]) =>
    new Counter({ name, help, labelNames: [...labels], registers });
  const acquire = counter(COUNTERS.acquire, [named]);
  const renew = counter(COUNTERS.renew, [named]);
  const release = counter(COUNTERS.release, [named]);
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
  new Gauge({
    name: "leasehold_blocked_reads",
    help: "Blocking reads (GET with ?index=) waiting for a change in this instance",
    registers: [registry],
    collect() {
      this.set(opts.blockedReads?.() ?? 0);
    },
  });
  new Gauge({
    name: "leasehold_event_streams",
    help: "Event streams (GET /events) open in this instance",
    registers: [registry],
    collect() {
      this.set(opts.streams?.() ?? 0);
    },
  });
  // The kind is "lock" or "semaphore": two values, always a label.
  const by = (outcome: string, { kind, name }: LineRef) =>
    opts.lockNameLabels ? { outcome, kind, name } : { outcome, kind };

  /** The three counters as `caller` may see them, in a registry made for this scrape. */
  async function scoped(caller: ApiKey | undefined): Promise<Registry> {
    const view = new Registry();
    const pairs = [
      [acquire, COUNTERS.acquire],
      [renew, COUNTERS.renew],
      [release, COUNTERS.release],
    ] as const;
    for (const [source, spec] of pairs) {
      const target = new Counter({
        name: spec[0],
        help: spec[1],
        labelNames: caller ? ["outcome", "kind", "name"] : ["outcome", "kind"],
        registers: [view],
      });
      for (const { labels: l, value } of (await source.get()).values) {
        const outcome = String(l.outcome);
        const kind = String(l.kind);
        const name = String(l.name);
        if (!caller) target.inc({ outcome, kind }, value);
        else if (allows(caller, name)) target.inc({ outcome, kind, name }, value);
      }
    }
    return view;
  }

  return {
    contentType: registry.contentType,
    exposition: async (caller) => {
      if (!opts.lockNameLabels) return registry.metrics();
      const counters = caller?.admin ? named : await scoped(caller);
      return Registry.merge([registry, counters]).metrics();
    },
    metrics: {
      acquire: (outcome, line) => acquire.inc(by(outcome, line)),
      renew: (outcome, line) => renew.inc(by(outcome, line)),
      release: (outcome, line) => release.inc(by(outcome, line)),
      waited: (seconds) => wait.observe(seconds),
      held: (seconds) => hold.observe(seconds),
      etcd: (op, seconds, failed) => {
        if (seconds !== undefined) etcdSeconds.observe({ op }, seconds);
        if (failed) etcdErrors.inc({ op });
      },
    },
  };
}
