import { describe, expect, it } from "vitest";
import {
  type CallRecord,
  checkHistory,
  Fence,
  type ForceRecord,
  type GrantRecord,
  LIVE_MARGIN_MS,
  type WriteRecord,
} from "../../scripts/verify/check.js";

// The checker must catch each kind of violation on a hand-made history, and stay quiet
// on legitimate ones (overlapping requests, a stall nobody overtook, idempotent retries).

const grant = (g: Partial<GrantRecord> & Pick<GrantRecord, "token" | "requestedSeq" | "receivedSeq">): GrantRecord => ({
  name: "a",
  lease: `lease-${g.token}`,
  client: `c${g.token}`,
  receivedAt: g.receivedSeq,
  ttl: 2,
  ...g,
});

const write = (w: Partial<WriteRecord> & Pick<WriteRecord, "token" | "seq" | "grantReceivedSeq" | "accepted">) => ({
  name: "a",
  client: `c${w.token}`,
  afterStall: false,
  ...w,
});

const invariants = (grants: GrantRecord[], writes: WriteRecord[] = []) =>
  checkHistory(grants, writes).violations.map((v) => v.invariant);

describe("the fence", () => {
  it("accepts a token at least the highest seen, per name, and records every write", () => {
    const fence = new Fence();
    const w = (name: string, token: number) =>
      fence.write({ name, token, client: "x", seq: 0, grantReceivedSeq: 0, afterStall: false });
    expect(w("a", 5)).toBe(true);
    expect(w("a", 5)).toBe(true);
    expect(w("a", 4)).toBe(false);
    expect(w("b", 1)).toBe(true);
    expect(w("a", 9)).toBe(true);
    expect(fence.writes.map((x) => x.accepted)).toEqual([true, true, false, true, true]);
  });
});

describe("checkHistory", () => {
  it("is quiet on a clean history", () => {
    const grants = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2, releaseSentSeq: 3 }),
      grant({ token: 12, requestedSeq: 4, receivedSeq: 5, releaseSentSeq: 6 }),
      grant({ name: "b", token: 11, requestedSeq: 1, receivedSeq: 7, releaseSentSeq: 8 }),
    ];
    expect(invariants(grants)).toEqual([]);
  });

  it("finds a token granted twice for one name; names created in one txn may share one", () => {
    expect(
      invariants([
        grant({ token: 10, requestedSeq: 1, receivedSeq: 2 }),
        grant({ token: 10, requestedSeq: 3, receivedSeq: 4, lease: "other" }),
      ]),
    ).toContain("unique-token");
    expect(
      invariants([
        grant({ token: 10, requestedSeq: 1, receivedSeq: 2 }),
        grant({ name: "b", token: 10, requestedSeq: 1, receivedSeq: 3, lease: "other" }),
      ]),
    ).toEqual([]);
  });

  it("treats the same grant received twice (idempotent retry) as one grant", () => {
    expect(
      invariants([
        grant({ token: 10, requestedSeq: 1, receivedSeq: 2 }),
        grant({ token: 10, requestedSeq: 3, receivedSeq: 4 }),
      ]),
    ).toEqual([]);
  });

  it("finds a later grant with a smaller or equal token", () => {
    const grants = [
      grant({ token: 12, requestedSeq: 1, receivedSeq: 2 }),
      grant({ token: 11, requestedSeq: 3, receivedSeq: 4 }),
    ];
    expect(invariants(grants)).toEqual(["token-order"]);
  });

  it("does not order grants whose requests overlapped", () => {
    // B asked before A's grant arrived: either order of tokens is possible.
    const grants = [
      grant({ token: 12, requestedSeq: 1, receivedSeq: 3 }),
      grant({ token: 11, requestedSeq: 2, receivedSeq: 4 }),
    ];
    expect(invariants(grants)).toEqual([]);
  });

  it("finds two successfully released holds that overlap, and not ones that touch", () => {
    const overlapping = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2, releaseSentSeq: 6 }),
      grant({ token: 12, requestedSeq: 1, receivedSeq: 4, releaseSentSeq: 8 }),
    ];
    expect(invariants(overlapping)).toEqual(["mutual-exclusion"]);
    // The second is nested inside a long first hold.
    const nested = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2, releaseSentSeq: 20 }),
      grant({ token: 12, requestedSeq: 1, receivedSeq: 4, releaseSentSeq: 5 }),
      grant({ token: 14, requestedSeq: 1, receivedSeq: 8, releaseSentSeq: 9 }),
    ];
    expect(invariants(nested)).toEqual(["mutual-exclusion", "mutual-exclusion"]);
    // A hold whose release failed (410) does not count.
    const lost = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2 }),
      grant({ token: 12, requestedSeq: 3, receivedSeq: 4, releaseSentSeq: 5 }),
    ];
    expect(invariants(lost)).toEqual([]);
  });

  it("counts stale writes, and reports one the fence accepted", () => {
    const grants = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2 }),
      grant({ token: 12, requestedSeq: 5, receivedSeq: 6 }),
    ];
    const rejected = checkHistory(grants, [
      write({ token: 10, seq: 9, grantReceivedSeq: 2, accepted: false, afterStall: true }),
    ]);
    expect(rejected).toMatchObject({ violations: [], staleWrites: 1, staleRejected: 1, rejectedWrites: 1 });
    const accepted = checkHistory(grants, [write({ token: 10, seq: 9, grantReceivedSeq: 2, accepted: true })]);
    expect(accepted.violations.map((v) => v.invariant)).toEqual(["stale-write-accepted"]);
  });

  it("does not call a write stale when nobody had taken the lock since", () => {
    const grants = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2 }),
      grant({ token: 12, requestedSeq: 5, receivedSeq: 9 }),
    ];
    // Written before the later grant arrived.
    const r = checkHistory(grants, [
      write({ token: 10, seq: 7, grantReceivedSeq: 2, accepted: true, afterStall: true }),
    ]);
    expect(r).toMatchObject({ violations: [], staleWrites: 0 });
  });

  it("calls a write stale when a later-requested grant with a smaller token had arrived", () => {
    // Token order is broken (reported as such), and the fence cannot catch the stale write.
    const grants = [
      grant({ token: 12, requestedSeq: 1, receivedSeq: 2 }),
      grant({ token: 11, requestedSeq: 3, receivedSeq: 4 }),
    ];
    const r = checkHistory(grants, [write({ token: 12, seq: 5, grantReceivedSeq: 2, accepted: true })]);
    expect(r.violations.map((v) => v.invariant).sort()).toEqual(["stale-write-accepted", "token-order"]);
  });

  it("finds a handle returned to two API keys, not one returned twice to the same key", () => {
    const shared = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2, caller: "a1", lease: "h" }),
      grant({ token: 10, requestedSeq: 3, receivedSeq: 4, caller: "a2", lease: "h", client: "other" }),
    ];
    expect(invariants(shared)).toEqual(["handle-shared"]);
    const retried = [
      grant({ token: 10, requestedSeq: 1, receivedSeq: 2, caller: "a1", lease: "h" }),
      grant({ token: 10, requestedSeq: 3, receivedSeq: 4, caller: "a1", lease: "h" }),
    ];
    expect(invariants(retried)).toEqual([]);
  });
});

describe("checkHistory with force releases", () => {
  const force = (f: Partial<ForceRecord> & Pick<ForceRecord, "sentSeq" | "doneSeq">): ForceRecord => ({
    name: "a",
    status: 204,
    ...f,
  });
  const check = (grants: GrantRecord[], forces: ForceRecord[]) =>
    checkHistory(grants, [], forces).violations.map((v) => v.invariant);

  it("finds a force release answered 204 inside a hold whose release then succeeded", () => {
    const held = [grant({ token: 10, requestedSeq: 1, receivedSeq: 2, releaseSentSeq: 9 })];
    expect(check(held, [force({ sentSeq: 4, doneSeq: 6 })])).toEqual(["forced-clean-hold"]);
    // It may have ended an earlier grant, or one after the release, or found nothing.
    expect(check(held, [force({ sentSeq: 1, doneSeq: 3 })])).toEqual([]);
    expect(check(held, [force({ sentSeq: 8, doneSeq: 10 })])).toEqual([]);
    expect(check(held, [force({ sentSeq: 4, doneSeq: 6, status: 404 })])).toEqual([]);
  });

  // A grant requested at t=0 ms with a 2 s TTL lives at least until 2000 ms.
  const live = (g: Partial<GrantRecord> = {}) =>
    grant({ token: 10, requestedSeq: 1, receivedSeq: 2, requestedAt: 0, receivedAt: 5, calls: [], ...g });
  const call = (c: Partial<CallRecord> & Pick<CallRecord, "sentSeq" | "sentAt">): CallRecord => ({
    op: "renew",
    doneSeq: c.sentSeq + 1,
    doneAt: c.sentAt + 5,
    status: 200,
    ...c,
  });
  const next = (seq: number, at: number) =>
    grant({ token: 20, requestedSeq: seq - 1, receivedSeq: seq, requestedAt: at - 5, receivedAt: at });

  it("finds a grant ended early: another grant while the first was provably live", () => {
    expect(check([live(), next(10, 1_000)], [])).toEqual(["lost-while-live"]);
    // After the TTL (less the margin) it may have expired.
    expect(check([live(), next(10, 2_000 - LIVE_MARGIN_MS)], [])).toEqual([]);
    // A renew answered 200 keeps it provably live for another TTL from its send.
    const renewed = live({ calls: [call({ sentSeq: 5, sentAt: 1_500 })] });
    expect(check([renewed, next(10, 3_000)], [])).toEqual(["lost-while-live"]);
    // A renew answered 503 proves nothing.
    const unknown = live({ calls: [call({ sentSeq: 5, sentAt: 1_500, status: 503 })] });
    expect(check([unknown, next(10, 3_000)], [])).toEqual([]);
  });

  it("lets an older grant's answer arrive late, while a later grant is provably live", () => {
    // Token 5 was made before token 10 (asked for at -3 s), and its answer was held up
    // in the network past its TTL: it had expired before token 10 was made.
    const late = grant({ token: 5, requestedSeq: 0, receivedSeq: 10, requestedAt: -3_000, receivedAt: 1_000 });
    expect(check([live(), late], [])).toEqual([]);
  });

  it("lets a release, or a force release that may have acted, end a grant early", () => {
    expect(check([live({ releaseFirstSentSeq: 8 }), next(10, 1_000)], [])).toEqual([]);
    expect(check([live(), next(10, 1_000)], [force({ sentSeq: 6, doneSeq: 7 })])).toEqual([]);
    // Answered before the grant was asked for: it ended an earlier one.
    expect(
      check([live({ requestedSeq: 3, receivedSeq: 4 }), next(10, 1_000)], [force({ sentSeq: 1, doneSeq: 2 })]),
    ).toEqual(["lost-while-live"]);
    // No answer: it may act at any time after its send.
    expect(
      check(
        [live({ requestedSeq: 3, receivedSeq: 4 }), next(10, 1_000)],
        [force({ sentSeq: 1, doneSeq: 2, status: 0 })],
      ),
    ).toEqual([]);
    // A force release of another name does not count.
    expect(check([live(), next(10, 1_000)], [force({ name: "b", sentSeq: 6, doneSeq: 7 })])).toEqual([
      "lost-while-live",
    ]);
  });

  it("finds a renew or release answered 410 while the grant was provably live", () => {
    expect(check([live({ calls: [call({ sentSeq: 5, sentAt: 1_000, status: 410 })] })], [])).toEqual([
      "lost-while-live",
    ]);
    const released = live({
      releaseFirstSentSeq: 5,
      calls: [call({ op: "release", sentSeq: 5, sentAt: 1_000, status: 410 })],
    });
    expect(check([released], [])).toEqual(["lost-while-live"]);
    // A renew racing the holder's own release may find the key gone.
    const racing = live({
      releaseFirstSentSeq: 5,
      calls: [call({ sentSeq: 4, doneSeq: 7, sentAt: 1_000, status: 410 })],
    });
    expect(check([racing], [])).toEqual([]);
    // Past the TTL it may have expired.
    expect(check([live({ calls: [call({ sentSeq: 5, sentAt: 1_900, status: 410 })] })], [])).toEqual([]);
  });
});
