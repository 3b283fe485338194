import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

/** `npm run bench` / `npm run verify` as a user types them (tsx, the repository's root). */
function run(script: string, ...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", script, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("the bench's and the checker's command lines", () => {
  it("--help lists the options, cases and scenarios, and exits 0", () => {
    const bench = run("scripts/bench/run.ts", "--help");
    expect(bench.code).toBe(0);
    expect(bench.out).toContain("--cases=A,B");
    expect(bench.out).toContain("waiters10k");
    expect(bench.out).toContain("etcd-lock-fetch");
    const verify = run("scripts/verify/main.ts", "--help");
    expect(verify.code).toBe(0);
    expect(verify.out).toContain("--scenario ID");
    expect(verify.out).toContain("partition-leader");
    expect(verify.out).toContain("release-without-guard");
  });

  it("a mistake is one line naming it, exit 64, nothing started", () => {
    for (const [script, args, said] of [
      ["scripts/bench/run.ts", ["--bogus"], "unknown option --bogus"],
      ["scripts/bench/run.ts", ["--cases=c64"], "unknown case c64"],
      ["scripts/verify/main.ts", ["--bogus"], "Unknown option '--bogus'"],
    ] as const) {
      const r = run(script, ...args);
      expect({ code: r.code, out: r.out }).toEqual({ code: 64, out: "" });
      expect(r.err.trim().split("\n")).toEqual([expect.stringContaining(said)]);
      expect(r.err).toContain("--help lists the options");
    }
  });
});
