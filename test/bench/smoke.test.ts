import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { CASE_IDS } from "../../scripts/bench/cases.js";
import { FEED_CASE_IDS, type FeedResult } from "../../scripts/bench/feeds.js";
import { SYSTEM_IDS } from "../../scripts/bench/systems.js";

const repo = new URL("../..", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "leasehold-bench-smoke-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The benchmark's smoke run works end to end: it starts etcd and both services, drives
// every system through every case (the change-feed cases through each leasehold
// instance), and writes every row. It asserts no figure: speed is for `npm run bench` on
// a quiet machine, never for a test.
it("npm run bench -- --smoke completes and reports every system × case", { timeout: 90_000 }, async () => {
  const out = join(dir, "smoke.json");
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/bench/run.ts", "--smoke", `--out=${out}`], {
    cwd: repo,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => {
    output += d;
  });
  child.stderr.on("data", (d) => {
    output += d;
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  expect(code, output).toBe(0);

  const report = JSON.parse(readFileSync(out, "utf8")) as {
    kind: string;
    rows: { system: string; case: string; cyclesPerSec?: number; etcdCpuPct?: number }[];
    targets: { id: string; system: string }[];
    feeds: FeedResult[];
  };
  expect(report.kind).toBe("smoke");
  const rows = report.rows.map((r) => `${r.case} ${r.system}`).sort();
  expect(rows).toEqual(CASE_IDS.flatMap((c) => SYSTEM_IDS.map((s) => `${c} ${s}`)).sort());
  for (const row of report.rows) {
    // Every row carries its figures (whatever they are).
    expect(typeof row.cyclesPerSec, `${row.case} ${row.system}`).toBe("number");
    expect(typeof row.etcdCpuPct, `${row.case} ${row.system}`).toBe("number");
  }
  expect(report.targets.map((t) => t.id)).toContain("c32-throughput");
  // The change-feed cases ran on each leasehold instance and delivered something.
  const feeds = report.feeds.map((f) => `${f.case} ${f.system}`).sort();
  expect(feeds).toEqual(
    FEED_CASE_IDS.flatMap((c) => ["leasehold-grpc", "leasehold-http"].map((s) => `${c} ${s}`)).sort(),
  );
  for (const f of report.feeds) {
    const what = `${f.case} ${f.system}`;
    expect(f.delivered, what).toBeGreaterThan(0);
    for (const k of ["expected", "p99Ms", "maxMs", "serviceRssMb", "etcdWatches"] as const) {
      expect(typeof f[k], `${what} ${k}`).toBe("number");
    }
  }
  // The table went to stdout.
  expect(output).toMatch(/\| case +\| system +\| cycles\/s/);
});
