import { describe, expect, it } from "vitest";
import type { GrantRecord } from "../../scripts/verify/check.js";
import type { EtcdEvent } from "../../scripts/verify/check-lines.js";
import { type AppendRecord, checkSet, outcomeOf } from "../../scripts/verify/check-set.js";

// The lock-set checker must catch each kind of violation on a hand-made history (etcd's
// versions of the state, next to the lock's participant keys, and the clients' appends),
// and stay quiet on legitimate ones (a refused stale write, an unknown write that landed).

const PREFIX = "p/";
const STATE = `${PREFIX}state/lock/a`;

/** A holder's participant key of lock `a`, created at `create`. */
const joined = (create: number): EtcdEvent => ({
  type: "put",
  key: `${PREFIX}lock/a#k${create}`,
  revision: create,
  createRevision: create,
  value: JSON.stringify({ h: 1, owner: `o${create}` }),
});
const ended = (create: number, revision: number): EtcdEvent => ({
  type: "delete",
  key: `${PREFIX}lock/a#k${create}`,
  revision,
});
/** A version of the state: `list` written with `token` at `revision`. */
const state = (revision: number, token: number, list: number[]): EtcdEvent => ({
  type: "put",
  key: STATE,
  revision,
  createRevision: 3,
  value: JSON.stringify({ value: JSON.stringify(list), token, at: "2026-01-01T00:00:00.000Z" }),
});

const grant = (token: number, requestedSeq: number, receivedSeq: number): GrantRecord => ({
  name: "a",
  token,
  lease: `lease-${token}`,
  client: `c${token}`,
  requestedSeq,
  receivedSeq,
  receivedAt: receivedSeq,
  ttl: 2,
});

/** An append by the holder of `token` (whose grant arrived at `grantReceivedSeq`), with its attempts' statuses and revisions. */
const append = (
  element: number,
  token: number,
  grantReceivedSeq: number,
  attempts: { sentSeq: number; status: number; revision?: number }[],
  afterPause = false,
): AppendRecord => ({
  name: "a",
  element,
  client: `c${token}`,
  token,
  grantReceivedSeq,
  readRevision: 0,
  attempts: attempts.map((t) => ({ ...t, doneSeq: t.sentSeq + 1 })),
  afterPause,
});

const check = (appends: AppendRecord[], events: EtcdEvent[], grants: GrantRecord[]) =>
  checkSet(appends, events, { prefix: PREFIX, grants });
const invariants = (appends: AppendRecord[], events: EtcdEvent[], grants: GrantRecord[]) =>
  [...new Set(check(appends, events, grants).violations.map((v) => v.invariant))].sort();

// Two holds of lock a, one after the other: token 2 appends 1, token 5 appends 2.
const grants = [grant(2, 1, 2), grant(5, 10, 11)];
const clean = [joined(2), state(3, 2, [1]), ended(2, 4), joined(5), state(6, 5, [1, 2]), ended(5, 7)];

describe("outcomeOf", () => {
  it("acknowledged on any 200, refused when every attempt was a 4xx, unknown otherwise", () => {
    const of = (...statuses: number[]) =>
      outcomeOf(
        append(
          1,
          2,
          2,
          statuses.map((status, i) => ({ sentSeq: 10 + 2 * i, status })),
        ),
      );
    expect(of(200)).toBe("acknowledged");
    expect(of(503, 200)).toBe("acknowledged");
    expect(of(410)).toBe("refused");
    expect(of(0, 410)).toBe("unknown"); // the first may have landed before the grant ended
    expect(of(-1)).toBe("unknown");
  });
});

describe("checkSet", () => {
  it("is quiet on a clean history, and counts its appends and writes", () => {
    const appends = [
      append(1, 2, 2, [{ sentSeq: 3, status: 200, revision: 3 }]),
      append(2, 5, 11, [{ sentSeq: 12, status: 200, revision: 6 }]),
    ];
    const r = check(appends, clean, grants);
    expect(r.violations).toEqual([]);
    expect(r.stats).toMatchObject({ appends: 2, acknowledged: 2, stateWrites: 2, finalElements: 2, stale: 0 });
  });

  it("is quiet on a stale write that was refused and an unknown write that landed", () => {
    const appends = [
      // Token 2 paused past its TTL; token 5 was granted (seq 11) before its write (seq 20): refused.
      append(1, 2, 2, [{ sentSeq: 20, status: 410 }], true),
      // Token 5's first attempt had no answer but landed; the retry was acknowledged.
      append(2, 5, 11, [
        { sentSeq: 12, status: 0 },
        { sentSeq: 14, status: 200, revision: 7 },
      ]),
    ];
    const events = [joined(2), ended(2, 4), joined(5), state(6, 5, [2]), state(7, 5, [2]), ended(5, 8)];
    const r = check(appends, events, grants);
    expect(r.violations).toEqual([]);
    expect(r.stats).toMatchObject({ refused: 1, acknowledged: 1, stale: 1, staleRefused: 1, afterPauseRefused: 1 });

    const unknown = append(2, 5, 11, [{ sentSeq: 12, status: 503 }]);
    const landed = check([unknown], [joined(5), state(6, 5, [2]), ended(5, 7)], grants);
    expect(landed.violations).toEqual([]);
    expect(landed.stats).toMatchObject({ unknown: 1, unknownPresent: 1 });
  });

  it("finds an acknowledged append lost to a stale holder's write", () => {
    // Token 2 read [] and paused; its lease expired (revision 4), token 5 appended 2
    // (acknowledged); then token 2 wrote [1] with no guard, over it.
    const appends = [
      append(2, 5, 11, [{ sentSeq: 12, status: 200, revision: 6 }]),
      append(1, 2, 2, [{ sentSeq: 20, status: 200, revision: 7 }], true),
    ];
    const events = [joined(2), ended(2, 4), joined(5), state(6, 5, [2]), state(7, 2, [1]), ended(5, 8)];
    const r = check(appends, events, grants);
    expect(invariants(appends, events, grants)).toEqual([
      "lost-append",
      "lost-update",
      "stale-state-write",
      "stale-write-acknowledged",
      "state-token-order",
    ]);
    expect(r.violations.find((v) => v.invariant === "lost-append")?.detail).toContain(
      "the write at revision 7 (token 2, not current) dropped it",
    );
    expect(r.stats).toMatchObject({ lostAcknowledged: 1, lostUpdates: 1, droppedElements: 1, staleStateWrites: 1 });
  });

  it("finds an acknowledged append etcd never recorded at its revision", () => {
    const appends = [append(1, 2, 2, [{ sentSeq: 3, status: 200, revision: 3 }])];
    expect(invariants(appends, [joined(2), ended(2, 4)], grants)).toEqual(["lost-append"]);
  });

  it("finds the element of a refused write in the state", () => {
    // Token 2 was current at revision 3, yet its write was answered 410 and still landed.
    const appends = [append(1, 2, 2, [{ sentSeq: 3, status: 410 }])];
    const events = [joined(2), state(3, 2, [1]), ended(2, 4)];
    expect(invariants(appends, events, grants)).toEqual(["refused-append-present"]);
  });

  it("finds a refused stale write that landed anyway", () => {
    const appends = [
      append(2, 5, 11, [{ sentSeq: 12, status: 200, revision: 6 }]),
      append(1, 2, 2, [{ sentSeq: 20, status: 410 }], true),
    ];
    const events = [joined(2), ended(2, 4), joined(5), state(6, 5, [2]), state(7, 2, [2, 1]), ended(5, 8)];
    expect(invariants(appends, events, grants)).toEqual([
      "refused-append-present",
      "stale-state-write",
      "state-token-order",
    ]);
  });

  it("finds an element twice, and elements nobody appended with that token", () => {
    const appends = [
      append(1, 2, 2, [{ sentSeq: 3, status: 200, revision: 3 }]),
      append(2, 5, 11, [{ sentSeq: 12, status: 200, revision: 6 }]),
    ];
    const twice = [joined(2), state(3, 2, [1]), ended(2, 4), joined(5), state(6, 5, [1, 2, 2]), ended(5, 7)];
    expect(invariants(appends, twice, grants)).toEqual(["duplicate-element"]);
    // 9 was appended by nobody; 2 first appears in a write of token 2, not its appender's 5.
    const phantom = [joined(2), state(3, 2, [1, 9, 2]), ended(2, 4), joined(5), state(6, 5, [1, 9, 2]), ended(5, 7)];
    const r = check(appends, phantom, grants);
    expect(r.violations.map((v) => v.invariant)).toEqual(["phantom-element", "phantom-element"]);
  });

  it("finds a state that is not a list of integers", () => {
    const events = [
      joined(2),
      state(3, 2, [1]),
      { ...state(4, 2, []), value: JSON.stringify({ value: "[1,", token: 2, at: "" }) },
    ];
    expect(invariants([append(1, 2, 2, [{ sentSeq: 3, status: 200, revision: 3 }])], events, grants)).toEqual([
      "lost-append",
      "lost-update",
    ]);
  });
});
