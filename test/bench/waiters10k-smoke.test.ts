import { expect, it } from "vitest";
import { CASE_SYSTEMS } from "../../scripts/bench/cases.js";
import { runBench } from "./run-bench.js";

// The 10,000-waiter case in its smoke size (500 waiters on 10 names, 100 joining at a
// time) on each leasehold transport: every waiter parks, is handed the lock and
// releases it, and the row carries its figures. None is checked against a value.
it("npm run bench -- --smoke on waiters10k parks every waiter and reports RSS and wake-ups", {
  timeout: 90_000,
}, async () => {
  const { code, output, report } = await runBench(["--smoke", "--cases=waiters10k"]);
  expect(code, output).toBe(0);
  if (!report) throw new Error("no report");

  expect(report.rows.map((r) => r.system).sort()).toEqual([...CASE_SYSTEMS.waiters10k].sort());
  for (const r of report.rounds) {
    const what = JSON.stringify(r);
    expect(r.parked, what).toBe(500);
    expect(r.cycles, what).toBe(500);
    expect(r.errors, what).toBe(0);
    expect(r.timeouts, what).toBe(0);
    for (const k of ["serviceRssMb", "wakeP99Ms", "cyclesPerSec", "parkSeconds"])
      expect(typeof r[k], `${k} of ${what}`).toBe("number");
  }
  expect(report.targets.map((t) => t.id)).toContain("waiters10k-wake-p99");
});
