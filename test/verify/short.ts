import { expect, it } from "vitest";
import type { Transport } from "../../scripts/verify/instance.js";
import { HANG_MS, LOCK_SCENARIOS, type Scenario, SHORT } from "../../scripts/verify/scenarios.js";

/**
 * The short form of `npm run verify` on one transport: each of `scenarios` at small
 * scale, each asserting zero violations (the invariants, hangs, 5xx other than 503,
 * leaks). One test file per transport (and per group of scenarios), so they run in parallel.
 */
export function shortForm(transport: Transport, scenarios: readonly Scenario[] = LOCK_SCENARIOS) {
  for (const scenario of scenarios) {
    it(`${scenario.id}: ${scenario.title}`, { timeout: 90_000 }, async () => {
      const r = await scenario.run(transport, SHORT);
      expect(r.details, JSON.stringify(r, null, 2)).toEqual([]);
      expect(r.violations).toBe(0);
      expect(r.grants).toBeGreaterThan(0);
      expect(r.slowestPastWaitMs).toBeLessThan(HANG_MS);
      // A scenario run without a protection must show the checker catching what goes wrong.
      if (scenario.expects) expect(r.caught).toBeGreaterThan(0);
      else expect(r.caught).toBe(0);
    });
  }
}
