import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BROKEN_VARIANTS, patchedTree, runBrokenVariants } from "../../scripts/verify/broken.js";
import { SHORT } from "../../scripts/verify/scenarios.js";

const repo = new URL("../..", import.meta.url).pathname;
const tsx = join(repo, "node_modules", ".bin", "tsx");

describe("broken variants of the service (scripts/verify/broken.ts)", () => {
  // A variant whose patch no longer applies would test nothing: it must fail here first.
  it.each(BROKEN_VARIANTS.map((v) => [v.id, v] as const))(
    "%s: its patch applies to the current source, and the patched engine loads",
    (_id, variant) => {
      const dir = patchedTree(variant.patches);
      try {
        for (const p of variant.patches) {
          const patched = readFileSync(join(dir, p.file), "utf8");
          expect(patched).toContain(p.replace);
          expect(patched).not.toBe(readFileSync(join(repo, p.file), "utf8"));
        }
        const loaded = execFileSync(
          tsx,
          ["-e", 'import("./src/lock/index.ts").then((m) => console.log(typeof m.createLines))'],
          { cwd: dir, encoding: "utf8" },
        );
        expect(loaded.trim()).toBe("function");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it("the checker catches a join without the create-revision compare, run from a patched copy", {
    timeout: 180_000,
  }, async () => {
    const variant = BROKEN_VARIANTS.find((v) => v.id === "join-without-compare");
    const [r] = await runBrokenVariants({ scale: SHORT, transport: "grpc", variants: variant ? [variant] : [] });
    expect(r?.caught).toBe(true);
    // Two holders of one lock at once: the model and the overlap checks both see it.
    expect(r?.byInvariant.linearizability ?? 0).toBeGreaterThan(0);
    if (r?.runs.at(-1)?.history) rmSync(r.runs.at(-1)?.history as string, { force: true });
  });
});
