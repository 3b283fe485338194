import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const repo = new URL("../..", import.meta.url).pathname;

/** A bench run's JSON report, as far as the smoke tests read it. */
export interface BenchReport {
  kind: string;
  rows: (Record<string, unknown> & { system: string; case: string })[];
  targets: { id: string; system: string }[];
  rounds: (Record<string, unknown> & { system: string; case: string })[];
  feeds?: (Record<string, unknown> & { case: string; system: string; delivered: number })[];
}

/**
 * Runs `npm run bench` (its script, with `args`) to the end, in a temporary directory
 * for its JSON, and answers its exit code, everything it printed and the report.
 */
export async function runBench(args: string[]): Promise<{ code: number | null; output: string; report?: BenchReport }> {
  const dir = mkdtempSync(join(tmpdir(), "leasehold-bench-smoke-"));
  try {
    const out = join(dir, "report.json");
    const child = spawn(process.execPath, ["--import", "tsx", "scripts/bench/run.ts", ...args, `--out=${out}`], {
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
    if (code !== 0) return { code, output };
    return { code, output, report: JSON.parse(readFileSync(out, "utf8")) as BenchReport };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
