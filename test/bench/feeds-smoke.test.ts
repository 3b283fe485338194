import { expect, it } from "vitest";
import { FEED_CASE_IDS } from "../../scripts/bench/feeds.js";
import { runBench } from "./run-bench.js";

// The change-feed cases (SSE subscribers, blocking readers) run end to end in their smoke
// size through each leasehold instance and report their figures. No figure is checked.
it("npm run bench -- --smoke on the change-feed cases reports every figure of each", { timeout: 90_000 }, async () => {
  const { code, output, report } = await runBench([
    "--smoke",
    `--cases=${FEED_CASE_IDS.join(",")}`,
    "--systems=leasehold-grpc,leasehold-http",
  ]);
  expect(code, output).toBe(0);
  if (!report?.feeds) throw new Error("no report of the feed cases");
  const feeds = report.feeds.map((f) => `${f.case} ${f.system}`).sort();
  expect(feeds).toEqual(
    FEED_CASE_IDS.flatMap((c) => ["leasehold-grpc", "leasehold-http"].map((s) => `${c} ${s}`)).sort(),
  );
  for (const f of report.feeds) {
    const what = `${f.case} ${f.system}`;
    expect(f.delivered, what).toBeGreaterThan(0);
    for (const k of ["expected", "p99Ms", "maxMs", "serviceRssMb", "etcdWatches"]) {
      expect(typeof f[k], `${what} ${k}`).toBe("number");
    }
  }
});
