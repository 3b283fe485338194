import { afterAll, beforeAll, expect, it } from "vitest";
import { type FuzzTarget, runFuzz, startFuzzTarget } from "../../scripts/verify/fuzz.js";

// fast-check over every endpoint against one real service process: no 5xx except 503,
// no crash, no lock created (or canary lock lost) by a rejected request.
let target: FuzzTarget;
beforeAll(async () => {
  target = await startFuzzTarget("grpc");
});
afterAll(async () => {
  await target?.stop();
});

it("300 random requests: no 5xx but 503, no crash, no lock from a rejected request", { timeout: 120_000 }, async () => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
  const r = await runFuzz({ transport: "grpc", runs: 300, seed, target });
  expect(r.failures, `seed ${seed}`).toEqual([]);
  expect(Object.keys(r.statuses).length).toBeGreaterThan(3);
});
