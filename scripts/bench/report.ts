import { type CaseId, type EtcdServerFigures, type RoundResult, SCALE_CASES } from "./cases.js";
import { median } from "./stats.js";
import type { SystemId } from "./systems.js";

/** Figures a table row takes as the median over its rounds. */
const MEDIANS = [
  "cyclesPerSec",
  "p50Ms",
  "p99Ms",
  "wakeP50Ms",
  "wakeP99Ms",
  "serviceRssMb",
  "serviceCpuPct",
  "etcdCpuPct",
  "loadCpuPct",
  "otherCpuPct",
  "serviceCpuMsPerCycle",
  "etcdCpuMsPerCycle",
  "loadCpuMsPerCycle",
  "waitP50Ms",
  "waitP99Ms",
  "redeemsPerSec",
  "redeemP50Ms",
  "redeemP99Ms",
] as const satisfies readonly (keyof RoundResult)[];

/** Counts a row sums over its rounds. */
const SUMS = ["outOfOrder", "ordered", "redeems"] as const satisfies readonly (keyof RoundResult)[];

/** One table row: the median over rounds of each figure; counts are totals, `maxHolders` the highest. */
export type Row = Partial<
  Pick<
    RoundResult,
    (typeof MEDIANS)[number] | (typeof SUMS)[number] | "maxHolders" | "etcdCalls" | "etcdServer" | "firstError"
  >
> &
  Pick<RoundResult, "system" | "case" | "cycles" | "errors" | "timeouts"> & { label: string; rounds: number };

export function aggregate(results: readonly RoundResult[], label: (c: CaseId) => string): Row[] {
  const groups = new Map<string, RoundResult[]>();
  for (const r of results) {
    const k = `${r.case}\0${r.system}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const rows: Row[] = [];
  for (const rounds of groups.values()) {
    const first = rounds[0];
    if (!first) continue;
    const row: Row = {
      system: first.system,
      case: first.case,
      label: label(first.case),
      rounds: rounds.length,
      cycles: rounds.reduce((s, r) => s + r.cycles, 0),
      errors: rounds.reduce((s, r) => s + r.errors, 0),
      timeouts: rounds.reduce((s, r) => s + r.timeouts, 0),
    };
    const firstError = rounds.find((r) => r.firstError)?.firstError;
    if (firstError) row.firstError = firstError;
    for (const f of MEDIANS) {
      const m = median(rounds.flatMap((r) => (r[f] === undefined ? [] : [r[f]])));
      if (m !== undefined) row[f] = m;
    }
    for (const f of SUMS) {
      const v = rounds.flatMap((r) => (r[f] === undefined ? [] : [r[f]]));
      if (v.length) row[f] = v.reduce((a, b) => a + b, 0);
    }
    const holders = rounds.flatMap((r) => (r.maxHolders === undefined ? [] : [r.maxHolders]));
    if (holders.length) row.maxHolders = Math.max(...holders);
    const ops = new Set(rounds.flatMap((r) => Object.keys(r.etcdCalls ?? {})));
    if (ops.size) {
      row.etcdCalls = {};
      for (const op of ops) {
        const per = median(rounds.flatMap((r) => (r.etcdCalls?.[op] ? [r.etcdCalls[op].perCycle] : [])));
        const mean = median(rounds.flatMap((r) => (r.etcdCalls?.[op] ? [r.etcdCalls[op].meanMs] : [])));
        if (per !== undefined && mean !== undefined) row.etcdCalls[op] = { perCycle: per, meanMs: mean };
      }
    }
    const server = rounds.flatMap((r) => (r.etcdServer ? [r.etcdServer] : []));
    if (server.length) {
      const m = (f: keyof EtcdServerFigures) => median(server.map((x) => x[f])) ?? 0;
      row.etcdServer = {
        proposalsPerCycle: m("proposalsPerCycle"),
        fsyncsPerCycle: m("fsyncsPerCycle"),
        fsyncMeanMs: m("fsyncMeanMs"),
        commitMeanMs: m("commitMeanMs"),
      };
    }
    rows.push(row);
  }
  return rows;
}

export interface Target {
  id: string;
  description: string;
  system: SystemId;
  value?: number;
  limit: number;
  /** `min`: the value must reach the limit; `max`: it must stay within it. */
  bound: "min" | "max";
  unit: string;
  met?: boolean;
}

/**
 * The issue's targets. Ratios and differences pair the systems within each round (they
 * ran back to back, sharing that moment's noise), then take the median over rounds.
 */
/** The median over rounds of `f(system's round, baseline's same round)` in case `c`. */
function paired(
  results: readonly RoundResult[],
  system: SystemId,
  baseline: SystemId,
  c: CaseId,
  f: (a: RoundResult, b: RoundResult) => number | undefined,
): number | undefined {
  const pick = (s: SystemId, round: number) => results.find((r) => r.system === s && r.case === c && r.round === round);
  return median(
    [...new Set(results.map((r) => r.round))].flatMap((n) => {
      const a = pick(system, n);
      const b = pick(baseline, n);
      const v = a && b ? f(a, b) : undefined;
      return v === undefined ? [] : [v];
    }),
  );
}

const rateRatio = (a: RoundResult, b: RoundResult) =>
  b.cyclesPerSec > 0 ? a.cyclesPerSec / b.cyclesPerSec : undefined;

/** A target's definition, its measured value and its bound. */
type TargetDef = [Omit<Target, "system" | "bound" | "value" | "met">, number | undefined, "min" | "max"];

const p50Added = (a: RoundResult, b: RoundResult) =>
  a.p50Ms !== undefined && b.p50Ms !== undefined ? a.p50Ms - b.p50Ms : undefined;

export function targets(results: readonly RoundResult[], rows: readonly Row[]): Target[] {
  const out: Target[] = [];
  const add = (system: SystemId, defs: readonly TargetDef[]) => {
    for (const [def, value, bound] of defs) {
      const met = value === undefined ? {} : { met: bound === "min" ? value >= def.limit : value <= def.limit };
      out.push({ ...def, system, bound, ...(value !== undefined ? { value } : {}), ...met });
    }
  };
  for (const system of ["leasehold-grpc", "leasehold-http"] as const) {
    /** A waiter case's limits: service RSS while all wait, and the p99 wake-up. */
    const waiterDefs = (c: "waiters" | "waiters10k", rssMb: number, wakeMs: number): TargetDef[] => {
      const row = rows.find((r) => r.system === system && r.case === c);
      return [
        [{ id: `${c}-rss`, description: `${c}: service RSS`, limit: rssMb, unit: "MB" }, row?.serviceRssMb, "max"],
        [
          { id: `${c}-wake-p99`, description: `${c}: p99 wake-up after release`, limit: wakeMs, unit: "ms" },
          row?.wakeP99Ms,
          "max",
        ],
      ];
    };
    add(system, [
      [
        { id: "c32-throughput", description: "c=32 cycles/s ÷ etcd3 baseline", limit: 1.3, unit: "×" },
        paired(results, system, "etcd3", "c32", rateRatio),
        "min",
      ],
      [
        { id: "c1-added-p50", description: "c=1 p50 added over etcd3 baseline", limit: 1, unit: "ms" },
        paired(results, system, "etcd3", "c1", p50Added),
        "max",
      ],
      ...waiterDefs("waiters", 150, 100),
      ...waiterDefs("waiters10k", 250, 20),
    ]);
  }
  // The official client as users run it, against etcd's lock API called the same way.
  add("client-grpc", [
    [
      { id: "c32-vs-etcd-lock", description: "c=32 cycles/s ÷ etcd-lock-fetch", limit: 1, unit: "×" },
      paired(results, "client-grpc", "etcd-lock-fetch", "c32", rateRatio),
      "min",
    ],
    [
      { id: "c32-throughput", description: "c=32 cycles/s ÷ etcd3 baseline", limit: 1.3, unit: "×" },
      paired(results, "client-grpc", "etcd3", "c32", rateRatio),
      "min",
    ],
    [
      { id: "c1-added-p50-vs-etcd-lock", description: "c=1 p50 added over etcd-lock-fetch", limit: 0.5, unit: "ms" },
      paired(results, "client-grpc", "etcd-lock-fetch", "c1", p50Added),
      "max",
    ],
  ]);
  return out;
}

const fmt = (v: number | undefined, digits = 1) => (v === undefined ? "–" : v.toFixed(digits));
const int = (v: number | undefined) => (v === undefined ? "–" : Math.round(v).toString());

/** The results table in Markdown (it reads as plain text too). */
export function table(rows: readonly Row[]): string {
  const head = [
    "case",
    "system",
    "cycles/s",
    "p50 ms",
    "p99 ms",
    "wake p50 ms",
    "wake p99 ms",
    "svc RSS MB",
    "svc CPU %",
    "etcd CPU %",
    "load CPU %",
    "other CPU %",
    "errors",
  ];
  const body = rows.map((r) => [
    r.label,
    r.system,
    int(r.cyclesPerSec),
    fmt(r.p50Ms, 2),
    fmt(r.p99Ms, 2),
    fmt(r.wakeP50Ms, 2),
    fmt(r.wakeP99Ms, 2),
    int(r.serviceRssMb),
    int(r.serviceCpuPct),
    int(r.etcdCpuPct),
    int(r.loadCpuPct),
    int(r.otherCpuPct),
    r.timeouts ? `${r.errors} (+${r.timeouts} timed out)` : String(r.errors),
  ]);
  return markdownTable(head, body);
}

/** Aligned Markdown: the first two columns text, the others numbers (right-aligned). */
function markdownTable(head: readonly string[], body: readonly string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const numeric = (i: number) => i >= 2;
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (numeric(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (numeric(i) ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [line(head), rule, ...body.map(line)].join("\n");
}

/**
 * Where a cycle's time goes: CPU time per cycle of the service, etcd and the load
 * generator; etcd's raft proposals and WAL fsyncs per cycle (its /metrics); and, for leasehold, the etcd calls the service made per cycle with their
 * mean duration as the service saw it (its own histogram).
 */
export function costTable(rows: readonly Row[]): string {
  const lines = [
    "| case | system | CPU ms/cycle: svc | etcd | load | raft proposals/cycle | WAL fsyncs/cycle | fsync mean ms | leasehold's etcd calls per cycle (count × mean ms) |",
    "|---|---|--:|--:|--:|--:|--:|--:|---|",
  ];
  for (const r of rows) {
    const calls = Object.entries(r.etcdCalls ?? {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([op, c]) => `${op} ${c.perCycle.toFixed(2)} × ${c.meanMs.toFixed(2)}`)
      .join(", ");
    const e = r.etcdServer;
    lines.push(
      `| ${r.label} | ${r.system} | ${fmt(r.serviceCpuMsPerCycle, 2)} | ${fmt(r.etcdCpuMsPerCycle, 2)} | ${fmt(r.loadCpuMsPerCycle, 2)} | ${fmt(e?.proposalsPerCycle, 2)} | ${fmt(e?.fsyncsPerCycle, 2)} | ${fmt(e?.fsyncMeanMs, 2)} | ${calls || "–"} |`,
    );
  }
  return lines.join("\n");
}

/**
 * The scale-out cases: what one etcd cluster pays per cycle as leasehold instances are
 * added, and the cycles/s etcd's CPU alone would allow on this machine (every core's
 * second, divided by etcd's CPU per cycle, summed over its members).
 */
export function scaleTable(rows: readonly Row[], cores: number): string {
  const head = [
    "case",
    "system",
    "instances",
    "cycles/s",
    "p50 ms",
    "p99 ms",
    "svc CPU ms/cycle (all inst.)",
    "etcd CPU ms/cycle (all members)",
    "raft proposals/cycle",
    "WAL fsyncs/cycle (1 member)",
    `etcd-CPU-bound cycles/s (${cores} cores)`,
    "errors",
  ];
  const body = rows.map((r) => [
    r.label,
    r.system,
    r.system === "etcd-lock" ? "–" : String(SCALE_CASES[r.case] ?? "–"),
    int(r.cyclesPerSec),
    fmt(r.p50Ms, 2),
    fmt(r.p99Ms, 2),
    fmt(r.serviceCpuMsPerCycle, 2),
    fmt(r.etcdCpuMsPerCycle, 2),
    fmt(r.etcdServer?.proposalsPerCycle, 2),
    fmt(r.etcdServer?.fsyncsPerCycle, 2),
    int(r.etcdCpuMsPerCycle ? (cores * 1000) / r.etcdCpuMsPerCycle : undefined),
    String(r.errors),
  ]);
  return markdownTable(head, body);
}

export function targetLines(ts: readonly Target[]): string {
  return ts
    .map((t) => {
      const v = t.value === undefined ? "n/a" : `${t.value.toFixed(2)} ${t.unit}`;
      const bound = `${t.bound === "min" ? "≥" : "≤"} ${t.limit}`;
      const verdict = t.met === undefined ? "NOT MEASURED" : t.met ? "met" : "MISSED";
      return `- ${t.system}: ${t.description}: ${v} (target ${bound} ${t.unit}) — ${verdict}`;
    })
    .join("\n");
}

/** "0 (0/1234)": the fraction of grants served out of arrival order, and the counts. */
function orderCell(r: Row): string {
  if (r.outOfOrder === undefined || !r.ordered) return "–";
  const f = r.outOfOrder / r.ordered;
  return `${f === 0 ? "0" : f.toFixed(4)} (${r.outOfOrder}/${r.ordered})`;
}

/** The fair line, semaphore and ticket cases: what a line adds to the figures of a lock. */
export function linesTable(rows: readonly Row[]): string {
  const head = [
    "case",
    "system",
    "grants/s",
    "wait p50 ms",
    "wait p99 ms",
    "out of order",
    "max holders",
    "redeems/s",
    "redeem p50 ms",
    "redeem p99 ms",
    "svc RSS MB",
    "svc CPU %",
    "etcd CPU %",
    "etcd CPU ms/grant",
    "raft proposals/grant",
    "other CPU %",
    "errors",
  ];
  const body = rows
    .filter((r) => r.waitP50Ms !== undefined || r.maxHolders !== undefined)
    .map((r) => [
      r.label,
      r.system,
      int(r.cyclesPerSec),
      fmt(r.waitP50Ms, 2),
      fmt(r.waitP99Ms, 2),
      orderCell(r),
      int(r.maxHolders),
      int(r.redeemsPerSec),
      fmt(r.redeemP50Ms, 2),
      fmt(r.redeemP99Ms, 2),
      int(r.serviceRssMb),
      int(r.serviceCpuPct),
      int(r.etcdCpuPct),
      fmt(r.etcdCpuMsPerCycle, 2),
      fmt(r.etcdServer?.proposalsPerCycle, 2),
      int(r.otherCpuPct),
      r.timeouts ? `${r.errors} (+${r.timeouts} timed out)` : String(r.errors),
    ]);
  return markdownTable(head, body);
}

/** The fair case's leasehold rows against etcd's own (fair) lock API, paired per round. */
export function lineComparisons(results: readonly RoundResult[]): string {
  const lines: string[] = [];
  for (const system of ["leasehold-grpc", "leasehold-http"] as const) {
    const ratio = paired(results, system, "etcd-lock", "fair64x3", rateRatio);
    const p99 = paired(results, system, "etcd-lock", "fair64x3", (a, b) =>
      a.waitP99Ms !== undefined && b.waitP99Ms !== undefined ? a.waitP99Ms - b.waitP99Ms : undefined,
    );
    if (ratio === undefined) continue;
    lines.push(
      `- fair case, ${system} ÷ etcd-lock: handoffs/s ${ratio.toFixed(2)}×` +
        (p99 !== undefined ? `, wait p99 ${p99 >= 0 ? "+" : ""}${p99.toFixed(1)} ms` : "") +
        " (paired per round, median)",
    );
  }
  return lines.join("\n");
}
