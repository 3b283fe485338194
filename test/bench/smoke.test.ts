import { expect, it } from "vitest";
import { CASE_IDS, CASE_SYSTEMS, LINE_CASES, SCALE_CASES } from "../../scripts/bench/cases.js";
import { runBench } from "./run-bench.js";

// The lock cases, the scale-out ones included; test/bench/lines-smoke.test.ts runs the fair
// line, semaphore and ticket cases, test/bench/waiters10k-smoke.test.ts the 10,000 waiters.
const LOCK_CASES = CASE_IDS.filter((c) => !LINE_CASES.includes(c) && c !== "waiters10k");

// The benchmark's smoke run works end to end: it starts etcd and the services, drives
// every system through the lock cases it runs (those called with the global fetch, the
// official client among them, through the throughput cases), and writes every row. It asserts no figure:
// speed is for `npm run bench` on a quiet machine, never for a test.
it("npm run bench -- --smoke completes and reports every system × case", { timeout: 120_000 }, async () => {
  const { code, output, report } = await runBench(["--smoke", `--cases=${LOCK_CASES.join(",")}`]);
  expect(code, output).toBe(0);
  if (!report) throw new Error("no report");

  expect(report.kind).toBe("smoke");
  const rows = report.rows.map((r) => `${r.case} ${r.system}`).sort();
  expect(rows).toEqual(LOCK_CASES.flatMap((c) => CASE_SYSTEMS[c].map((s) => `${c} ${s}`)).sort());
  for (const row of report.rows) {
    // Every row carries its figures (whatever they are).
    expect(typeof row.cyclesPerSec, `${row.case} ${row.system}`).toBe("number");
    expect(typeof row.etcdCpuPct, `${row.case} ${row.system}`).toBe("number");
  }
  // The scale-out rows, on their 3-member cluster: etcd's figures, and the services' summed CPU.
  for (const row of report.rows.filter((r) => SCALE_CASES[r.case as keyof typeof SCALE_CASES] !== undefined)) {
    const what = `${row.case} ${row.system}: ${JSON.stringify(row)}`;
    const server = row.etcdServer as { proposalsPerCycle?: number; fsyncsPerCycle?: number } | undefined;
    expect(typeof server?.fsyncsPerCycle, what).toBe("number");
    expect(typeof row.etcdCpuMsPerCycle, what).toBe("number");
    if (row.system.startsWith("leasehold")) expect(typeof row.serviceCpuMsPerCycle, what).toBe("number");
    // etcd's lock API writes twice a cycle (lock, unlock): read from one member, a proposal
    // counts once; summed over the 3 members it would be about 6.
    if (row.system === "etcd-lock") expect(server?.proposalsPerCycle, what).toBeGreaterThan(1.5);
    if (row.system === "etcd-lock") expect(server?.proposalsPerCycle, what).toBeLessThan(3);
  }
  expect(output).toMatch(/Scale-out on a 3-member etcd \(c=32\):\n\| case +\| system +\| instances \|/);
  expect(report.targets.map((t) => t.id)).toContain("c32-throughput");
  const client = report.targets.find((t) => t.system === "client-grpc" && t.id === "c32-vs-etcd-lock");
  expect(client, "the official client's target against etcd's lock API on fetch").toMatchObject({
    value: expect.any(Number),
  });
  // The table went to stdout.
  expect(output).toMatch(/\| case +\| system +\| cycles\/s/);
});
