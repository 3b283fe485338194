import { expect, it } from "vitest";
import { CASE_SYSTEMS, LINE_CASES } from "../../scripts/bench/cases.js";
import { runBench } from "./run-bench.js";

// The fair line (3 instances per transport, and etcd's lock API), semaphore and ticket
// cases run end to end in their smoke size and report their own figures. No figure is
// checked against a value: this proves the bench measures, not what it measures.
it("npm run bench -- --smoke on the line cases reports every figure of each", { timeout: 90_000 }, async () => {
  const { code, output, report } = await runBench(["--smoke", `--cases=${LINE_CASES.join(",")}`]);
  expect(code, output).toBe(0);
  if (!report) throw new Error("no report");

  const rows = report.rows.map((r) => `${r.case} ${r.system}`).sort();
  expect(rows).toEqual(LINE_CASES.flatMap((c) => CASE_SYSTEMS[c].map((s) => `${c} ${s}`)).sort());
  const fields = (c: string) => [
    "cyclesPerSec",
    "waitP50Ms",
    "waitP99Ms",
    "maxHolders",
    "etcdCpuPct",
    "etcdCpuMsPerCycle",
    ...(c === "sem8x64" ? [] : ["outOfOrder", "ordered"]),
    ...(c === "tickets1k" ? ["redeemsPerSec", "redeemP50Ms", "redeemP99Ms"] : []),
  ];
  for (const row of report.rows) {
    const what = `${row.case} ${row.system}: ${JSON.stringify(row)}`;
    for (const f of fields(row.case)) expect(typeof row[f], `${f} of ${what}`).toBe("number");
    expect(typeof (row.etcdServer as { proposalsPerCycle?: unknown } | undefined)?.proposalsPerCycle, what).toBe(
      "number",
    );
    if (row.system.startsWith("leasehold")) expect(typeof row.serviceCpuPct, what).toBe("number");
    // Every grant's join revision was found (etcd's lock API: from etcd's history), so the order check saw them all.
    if (row.ordered !== undefined) expect(row.ordered, what).toBe(row.cycles);
    expect(row.errors, what).toBe(0);
  }
  expect(output).toMatch(/Fair line, semaphores, tickets:\n\| case +\| system +\| grants\/s .*\| out of order \|/);
  expect(output).toMatch(/fair case, leasehold-grpc ÷ etcd-lock: handoffs\/s/);
});
