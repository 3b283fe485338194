import { describe, expect, it } from "vitest";
import { type CallRecord, checkHistory, type GrantRecord, type Violation } from "../../scripts/verify/check.js";
import {
  attributeToEtcd,
  DEFECT_LABEL,
  leaseDefectAffects,
  WAKE_REVOKE_MS,
  type Wake,
} from "../../scripts/verify/faults/etcd-defect.js";
import { FAULT_SCENARIOS } from "../../scripts/verify/faults/scenarios.js";
import { checkModel } from "../../scripts/verify/model.js";
import { scenarioSection } from "../../scripts/verify/report.js";
import type { Scenario, ScenarioResult } from "../../scripts/verify/scenarios.js";
import { Hand } from "./model-histories.js";

// Which violations are set apart as etcd's lease defect (a deposed leader revoking live
// leases on waking): only those whose grant can have ended just after a paused leader's
// SIGCONT, on a version with the defect. Everything else must still count.

describe("the etcd versions with the lease defect", () => {
  it("is 3.4 before 3.4.31, 3.5 before 3.5.13, and anything older", () => {
    for (const v of ["3.4.23", "v3.4.30", "3.5.0", "3.5.12", "3.3.27", "3.4.23-debian"]) {
      expect(leaseDefectAffects(v), v).toBe(true);
    }
    for (const v of ["3.4.31", "3.4.35", "3.5.13", "v3.5.21", "3.6.0", "unknown", ""]) {
      expect(leaseDefectAffects(v), v).toBe(false);
    }
  });
});

describe("attributing lost-while-live to etcd's lease defect", () => {
  // Lock x: token 5 asked for at 0 ms (TTL 2 s), renewed (200) at 1000 ms, so its lease
  // lives until at least 2800 ms; its next renew, sent at 1600 ms, is answered 410 at
  // 1610 ms. So it ended between 1000 and 1610 ms.
  const calls: CallRecord[] = [
    { op: "renew", sentSeq: 3, sentAt: 1_000, doneSeq: 4, doneAt: 1_010, status: 200 },
    { op: "renew", sentSeq: 5, sentAt: 1_600, doneSeq: 6, doneAt: 1_610, status: 410 },
  ];
  const grant: GrantRecord = {
    name: "x",
    token: 5,
    lease: "h5",
    client: "a",
    requestedSeq: 1,
    receivedSeq: 2,
    requestedAt: 0,
    receivedAt: 10,
    ttl: 2,
    calls,
  };
  const events = new Hand()
    .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 2 })
    .renew("a", "x", "h5", [1_000, 1_010], 200, 5)
    .renew("a", "x", "h5", [1_600, 1_610], 410)
    .events();
  const lost = checkHistory([grant], []).violations;
  const model = checkModel(events).violations;
  const all: Violation[] = [...lost, ...model];
  const leader = (at: number): Wake => ({ at, member: "m0", leader: true });
  const split = (wakes: Wake[], version = "3.4.23", violations = all) =>
    attributeToEtcd(violations, { version, wakes, events });

  it("the history breaks both checks, and says when the grant ended", () => {
    expect(lost.map((v) => v.invariant)).toEqual(["lost-while-live"]);
    expect(lost[0]?.ended).toMatchObject({ after: 1_000, before: 1_610 });
    expect(model.map((v) => [v.invariant, v.line])).toEqual([["linearizability", "lock x"]]);
  });

  it("sets both apart when the grant can have ended just after a paused leader woke up", () => {
    for (const at of [1_500, 1_610, 1_000 - WAKE_REVOKE_MS]) {
      const r = split([leader(at)]);
      expect(r.counted, `woke at ${at}`).toEqual([]);
      expect(r.attributed.map((a) => a.violation.invariant)).toEqual(["lost-while-live", "linearizability"]);
      expect(r.attributed[0]?.why).toContain("paused leader m0");
    }
  });

  it("counts them when the wake-up is too early or too late to explain it", () => {
    // Woke after the 410 was answered, or so long before the last renew that its
    // revocations were done by then.
    for (const at of [1_611, 1_000 - WAKE_REVOKE_MS - 1, -5_000]) {
      const r = split([leader(at)]);
      expect(r.attributed, `woke at ${at}`).toEqual([]);
      expect(r.counted).toEqual(all);
    }
    expect(split([]).counted).toEqual(all);
  });

  it("counts them after a follower's pause: only a deposed leader revokes on waking", () => {
    const r = split([{ at: 1_500, member: "m1", leader: false }]);
    expect(r.attributed).toEqual([]);
    expect(r.counted).toEqual(all);
  });

  it("counts them on an etcd without the defect", () => {
    for (const version of ["3.4.31", "3.5.13", "3.6.1", "unknown"]) {
      const r = split([leader(1_500)], version);
      expect(r.attributed, version).toEqual([]);
      expect(r.counted).toEqual(all);
    }
  });

  it("sets apart another client's grant while the first was provably live", () => {
    // b was granted token 7 at 1700 ms, while token 5's lease (renewed at 1000 ms) lived.
    const a = { ...grant, calls: [calls[0] as CallRecord] };
    const b: GrantRecord = { ...grant, token: 7, lease: "h7", client: "b", requestedSeq: 7, receivedSeq: 8, calls: [] };
    const v = checkHistory([a, { ...b, requestedAt: 1_690, receivedAt: 1_700 }], []).violations;
    expect(v.map((x) => x.invariant)).toEqual(["lost-while-live"]);
    expect(v[0]?.ended).toMatchObject({ after: 1_000, before: 1_700 });
    expect(split([leader(1_500)], "3.4.23", v).attributed).toHaveLength(1);
    expect(split([leader(1_701)], "3.4.23", v).counted).toEqual(v);
  });

  it("counts the model's violation of a line the attributed grants do not explain", () => {
    // Another lock, y: a renew answered 410 with no lost-while-live to set apart (as if
    // the check had not seen it): the model still fails there, and that counts.
    const other: Violation = { invariant: "linearizability", line: "lock y", detail: "lock y: no order fits" };
    const both = new Hand()
      .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 2 })
      .renew("a", "x", "h5", [1_000, 1_010], 200, 5)
      .renew("a", "x", "h5", [1_600, 1_610], 410)
      .acquire("c", "y", [0, 10], 201, { token: 3, ttl: 2 })
      .renew("c", "y", "h3", [1_600, 1_610], 410)
      .events();
    const r = attributeToEtcd([...all, other], { version: "3.4.23", wakes: [leader(1_500)], events: both });
    expect(r.attributed.map((a) => a.violation.invariant)).toEqual(["lost-while-live", "linearizability"]);
    expect(r.counted).toEqual([other]);
  });

  it("the model, checked again, lets only that grant end early, and only from its wake-up on", () => {
    const hash = lost[0]?.ended?.grant as string;
    const from = (grant: string, at: number) => checkModel(events, { mayEndFrom: new Map([[grant, at]]) }).violations;
    expect(from(hash, 1_500)).toEqual([]);
    // From after its 410 was answered: no fit.
    expect(from(hash, 1_620).map((v) => v.line)).toEqual(["lock x"]);
    // Another grant's allowance explains nothing.
    expect(from("0123456789abcdef", 1_500).map((v) => v.line)).toEqual(["lock x"]);
  });
});

describe("the scenario table with violations attributed to etcd", () => {
  const result = (o: Partial<ScenarioResult>): ScenarioResult => ({
    scenario: "pause-leader",
    transport: "grpc",
    seconds: 6,
    clients: 8,
    requests: 10,
    grants: 3,
    violations: 0,
    caught: 0,
    staleWrites: 0,
    staleRejected: 0,
    rejectedWrites: 0,
    writes: 0,
    http503: 0,
    faults: 1,
    longestUnavailableMs: 0,
    recoveryMs: undefined,
    slowestPastWaitMs: 0,
    slowest503Ms: undefined,
    cleanMs: 1_000,
    notes: [],
    details: [],
    ...o,
  });
  const scenario = FAULT_SCENARIOS.find((s) => s.id === "pause-leader") as Scenario;

  it("has a column of their own, and says which they were and why, apart from the counted ones", () => {
    const text = scenarioSection(scenario, [
      result({ attributed: ["lost-while-live: x; why"] }),
      result({ transport: "http", violations: 1, details: ["lost-while-live: y"], attributed: [] }),
    ]);
    const [header, , grpc, http] = text.split("\n").filter((l) => l.startsWith("|"));
    const cells = (l = "") => l.split("|").map((c) => c.trim());
    const column = cells(header).indexOf(DEFECT_LABEL);
    expect(column).toBe(cells(header).indexOf("violations") + 1);
    expect([cells(grpc)[column - 1], cells(grpc)[column]]).toEqual(["0", "1"]);
    expect([cells(http)[column - 1], cells(http)[column]]).toEqual(["1", "0"]);
    expect(text).toContain("Violations (http):\n\n- lost-while-live: y");
    expect(text).toMatch(/Attributed to etcd, not counted \(grpc; [^\n]*\):\n\n- lost-while-live: x; why/);
  });

  it("has no such column in a scenario that attributes nothing", () => {
    expect(scenarioSection(scenario, [result({})])).not.toContain(DEFECT_LABEL);
  });
});
