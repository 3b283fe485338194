import { describe, expect, it } from "vitest";
import {
  CONTROL_SHORT,
  controlSection,
  controlSummary,
  runEtcdControl,
} from "../../scripts/verify/faults/etcd-lease-control.js";

// The control experiment on etcd alone (no leasehold): it must run (leases granted and
// kept alive, the leader paused and resumed) and produce its numbers. Whether etcd
// revokes live leases is what it measures, not what it asserts: a fixed etcd shows 0.
describe("the control experiment: etcd alone, live leases and a paused leader", () => {
  it("grants, keeps alive, pauses the leader, and counts early revocations", { timeout: 120_000 }, async () => {
    const o = { ...CONTROL_SHORT, rounds: 2, leases: 8 };
    const r = await runEtcdControl(o);
    expect(r.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(r.rounds).toHaveLength(o.rounds);
    for (const round of r.rounds) {
      expect(round.granted).toBe(o.leases);
      expect(round.pausedMs).toBeGreaterThanOrEqual(o.pauseMs);
      // Each lease was kept alive twice before the pause, and the keep-alives went on.
      expect(round.keepAlives).toBeGreaterThanOrEqual(2 * o.leases);
      expect(round.early.length).toBeLessThanOrEqual(round.revoked);
      for (const e of round.early) expect(e.aheadMs).toBeGreaterThan(0);
    }
    const s = controlSummary(r);
    console.log(
      `etcd ${r.version} alone: ${s.early} of ${s.leases} live leases revoked early` +
        (s.early ? `, ${Math.round(s.minAfterMs ?? 0)}–${Math.round(s.maxAfterMs ?? 0)} ms after the SIGCONT` : ""),
    );
    expect(controlSection(r)).toContain(`etcd ${r.version} alone:`);
  });
});
