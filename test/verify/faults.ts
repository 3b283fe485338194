import { expect, it } from "vitest";
import { FAULT_SCENARIOS } from "../../scripts/verify/faults/scenarios.js";
import type { Transport } from "../../scripts/verify/instance.js";
import { HANG_MS, SHORT } from "../../scripts/verify/scenarios.js";

/**
 * The short form of some fault scenarios on one transport: each must inject its fault
 * at least once, and find zero violations. A machine that cannot make network
 * namespaces runs the partitions through proxies (the notes say which); one without
 * libfaketime fails the skew scenario, loudly.
 */
export function faultForm(transport: Transport, ids: readonly string[], o: { proxies?: boolean } = {}) {
  for (const id of ids) {
    const scenario = FAULT_SCENARIOS.find((s) => s.id === id);
    if (!scenario) throw new Error(`no fault scenario ${id}`);
    it(`${scenario.id}: ${scenario.title}`, { timeout: 120_000 }, async () => {
      const r = await scenario.run(transport, SHORT);
      expect(r.details, JSON.stringify(r, null, 2)).toEqual([]);
      expect(r.violations).toBe(0);
      expect(r.faults).toBeGreaterThan(0);
      expect(r.grants).toBeGreaterThan(0);
      expect(r.slowestPastWaitMs).toBeLessThan(HANG_MS);
      if (o.proxies) expect(r.notes.join("\n")).toContain("network: TCP proxies on loopback");
    });
  }
}
