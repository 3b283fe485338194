import { describe, expect, it } from "vitest";
import { checkHistory, type GrantRecord } from "../../scripts/verify/check.js";
import {
  checkEtcdHistory,
  checkParticipants,
  type EtcdEvent,
  type LineCall,
  lineOfKey,
  type ParticipantRecord,
} from "../../scripts/verify/check-lines.js";

// The line checks must catch each kind of violation on a hand-made history (an
// out-of-order grant, limit + 1 holders, a grant after leaving...), and stay quiet on
// legitimate ones.

const semGrant = (
  g: Partial<GrantRecord> & Pick<GrantRecord, "token" | "requestedSeq" | "receivedSeq">,
): GrantRecord => ({
  name: "s",
  kind: "semaphore",
  limit: 2,
  lease: `lease-${g.token}`,
  client: `c${g.token}`,
  receivedAt: g.receivedSeq,
  ttl: 2,
  ...g,
});

const invariants = (grants: GrantRecord[]) => checkHistory(grants, []).violations.map((v) => v.invariant);

describe("checkHistory on semaphores", () => {
  it("allows `limit` overlapping clean holds, and finds limit + 1", () => {
    const two = [
      semGrant({ token: 10, requestedSeq: 1, receivedSeq: 2, releaseSentSeq: 20 }),
      semGrant({ token: 11, requestedSeq: 1, receivedSeq: 3, releaseSentSeq: 21 }),
      semGrant({ token: 12, requestedSeq: 1, receivedSeq: 22, releaseSentSeq: 23 }),
    ];
    expect(invariants(two)).toEqual([]);
    const three = [
      semGrant({ token: 10, requestedSeq: 1, receivedSeq: 2, releaseSentSeq: 20 }),
      semGrant({ token: 11, requestedSeq: 1, receivedSeq: 3, releaseSentSeq: 21 }),
      semGrant({ token: 12, requestedSeq: 1, receivedSeq: 4, releaseSentSeq: 22 }),
    ];
    expect(invariants(three)).toEqual(["over-limit"]);
  });

  it("finds a grant while `limit` others were provably live (within TTL of their acquire)", () => {
    // Requested at t=0 with a 2 s TTL: provably live until 2000 ms less the margin.
    const live = (token: number, receivedAt: number) =>
      semGrant({ token, requestedSeq: 1, receivedSeq: receivedAt, requestedAt: 0, receivedAt, calls: [] });
    expect(invariants([live(10, 5), live(11, 6)])).toEqual([]);
    expect(invariants([live(10, 5), live(11, 6), live(12, 7)])).toEqual(["over-limit"]);
    // Once one of them is released, a third may hold.
    const released = { ...live(10, 5), releaseFirstSentSeq: 6 };
    expect(invariants([released, live(11, 6), live(12, 7)])).toEqual([]);
  });

  it("keeps a semaphore's tokens apart from a lock's of the same name", () => {
    const lock: GrantRecord = { ...semGrant({ token: 10, requestedSeq: 1, receivedSeq: 2 }), lease: "other" };
    delete lock.kind;
    delete lock.limit;
    expect(invariants([semGrant({ token: 10, requestedSeq: 1, receivedSeq: 2 }), lock])).toEqual([]);
    expect(
      invariants([
        semGrant({ token: 10, requestedSeq: 1, receivedSeq: 2 }),
        semGrant({ token: 10, requestedSeq: 3, receivedSeq: 4, lease: "other" }),
      ]),
    ).toContain("unique-token");
  });
});

const PREFIX = "verify/";
const key = (id: string, dir = "lock/q") => `${PREFIX}${dir}#${id}`;
const waiting = (owner: string) => JSON.stringify({ owner, ttl: 2 });
const holding = (owner: string, limit?: number) => JSON.stringify({ h: 1, owner, ...(limit ? { limit } : {}) });
const put = (revision: number, id: string, create: number, value: string, dir?: string): EtcdEvent => ({
  type: "put",
  key: key(id, dir),
  revision,
  createRevision: create,
  value,
});
const del = (revision: number, id: string, dir?: string): EtcdEvent => ({
  type: "delete",
  key: key(id, dir),
  revision,
});

const participant = (
  owner: string,
  calls: Partial<LineCall>[] = [],
  more: Partial<ParticipantRecord> = {},
): ParticipantRecord => ({
  name: "q",
  owner,
  client: owner,
  calls: calls.map((c) => ({ op: "acquire", sentSeq: 1, doneSeq: 2, status: 201, ...c })),
  ...more,
});

const etcdCheck = (events: EtcdEvent[], participants: ParticipantRecord[] = [], grants: GrantRecord[] = []) =>
  checkEtcdHistory(events, {
    prefix: PREFIX,
    limits: new Map([
      ["q", 1],
      ["semaphore s", 2],
    ]),
    participants,
    grants,
  });
const etcdInvariants = (events: EtcdEvent[], participants: ParticipantRecord[] = [], grants: GrantRecord[] = []) =>
  etcdCheck(events, participants, grants).violations.map((v) => v.invariant);

describe("checkEtcdHistory", () => {
  it("reads the line of a participant key, and nothing else", () => {
    expect(lineOfKey(PREFIX, `${PREFIX}lock/a:b#00ff`)).toEqual({ kind: "lock", name: "a:b" });
    expect(lineOfKey(PREFIX, `${PREFIX}sem/x#00ff`)).toEqual({ kind: "semaphore", name: "x" });
    expect(lineOfKey(PREFIX, `${PREFIX}~history-end`)).toBeUndefined();
    expect(lineOfKey(PREFIX, "other/lock/a#1")).toBeUndefined();
  });

  // H holds (joined at 5); A joins waiting at 6, B at 7.
  const line = [put(5, "h", 5, holding("H")), put(6, "a", 6, waiting("A")), put(7, "b", 7, waiting("B"))];

  it("is quiet on grants in join order, claims and expiries", () => {
    const events = [
      ...line,
      del(8, "h"),
      put(9, "a", 6, holding("A")),
      put(10, "a", 6, JSON.stringify({ h: 1, c: 1, owner: "A" })), // claimed: not a new grant
      del(11, "a"), // expired
      put(12, "b", 7, holding("B")),
    ];
    const r = etcdCheck(events);
    expect(r.violations).toEqual([]);
    expect(r.stats).toMatchObject({ etcdGrants: 3, handoffs: 1, maxHolders: { q: 1 } });
  });

  it("finds a waiter granted ahead of one who joined before it", () => {
    const events = [...line, del(8, "h"), put(9, "b", 7, holding("B"))];
    expect(etcdInvariants(events)).toEqual(["queue-order"]);
  });

  it("finds a grant whose token is below one granted before it", () => {
    // A left before B's turn, so B was granted in order; then a key that joined earlier
    // (6) is made a holder after B's (7).
    const events = [...line, del(8, "h"), del(9, "a"), put(10, "b", 7, holding("B")), put(11, "x", 6, holding("X"))];
    expect(etcdInvariants(events)).toContain("token-order");
  });

  it("finds limit + 1 holders of a semaphore", () => {
    const sem = (revision: number, id: string, owner: string) =>
      put(revision, id, revision, holding(owner, 2), "sem/s");
    expect(etcdInvariants([sem(5, "a", "A"), sem(6, "b", "B")])).toEqual([]);
    expect(etcdInvariants([sem(5, "a", "A"), sem(6, "b", "B"), sem(7, "c", "C")])).toEqual(["over-limit"]);
    // A's lease ended first: room for C.
    expect(etcdInvariants([sem(5, "a", "A"), sem(6, "b", "B"), del(7, "a", "sem/s"), sem(8, "c", "C")])).toEqual([]);
  });

  it("finds two participants of a line that joined in one txn (one token for two)", () => {
    const events = [put(5, "h", 5, holding("H")), put(6, "a", 6, waiting("A")), put(6, "b", 6, waiting("B"))];
    expect(etcdInvariants([...events, del(7, "h"), put(8, "a", 6, holding("A"))])).toEqual(["unique-token"]);
    // B is granted the same token after A's grant ended.
    const both = [...events, del(7, "h"), put(8, "a", 6, holding("A")), del(9, "a"), put(10, "b", 6, holding("B"))];
    expect(etcdInvariants(both)).toEqual(["unique-token", "unique-token"]);
  });

  it("finds a waiter made a holder its client never received, unless a request's outcome was unknown", () => {
    const events = [...line, del(8, "h"), put(9, "a", 6, holding("A"))];
    const refused = participant("A", [{ status: 409 }]);
    expect(etcdInvariants(events, [refused])).toEqual(["unreceived-grant"]);
    // Its grant's lease died at once, and it joined again at the back.
    const lost = etcdCheck([...events, del(10, "a"), put(11, "a", 11, waiting("A"))], [refused]).violations;
    expect(lost.map((v) => v.detail)).toEqual([
      "q: etcd made A (A) a holder (token 6) at revision 9, deleted at revision 10; it joined the line again at revision 11; its client never received that grant (acquire 409)",
    ]);
    const retried = participant("A", [{ status: 503 }, { sentSeq: 3, doneSeq: 4, status: 409 }]);
    expect(etcdInvariants(events, [retried])).toEqual([]);
    expect(etcdCheck(events, [retried]).stats.unreceivedAmbiguous).toBe(1);
    // Nobody told it anything, and nobody received the grant.
    expect(etcdInvariants(events, [participant("A", [{ status: 202 }], { queuedSeq: 2 })])).toEqual([
      "unreceived-grant",
    ]);
    // Received: quiet.
    expect(etcdInvariants(events, [participant("A", [], { grant: { token: 6, receivedSeq: 2 } })])).toEqual([]);
  });

  it("finds a grant a client received that etcd never made", () => {
    const g: GrantRecord = {
      name: "q",
      token: 7,
      lease: "l",
      client: "B",
      owner: "B",
      requestedSeq: 1,
      receivedSeq: 2,
      receivedAt: 2,
      ttl: 2,
    };
    expect(etcdInvariants(line, [], [g])).toEqual(["phantom-grant"]);
    expect(etcdInvariants([...line, del(8, "h"), del(9, "a"), put(10, "b", 7, holding("B"))], [], [g])).toEqual([]);
  });
});

describe("checkParticipants", () => {
  it("finds a ticket granted after it left the line", () => {
    const calls: Partial<LineCall>[] = [
      { op: "acquire", sentSeq: 1, doneSeq: 2, status: 202 },
      { op: "leave", sentSeq: 3, doneSeq: 4, status: 204 },
      { op: "redeem", sentSeq: 5, doneSeq: 6, status: 410 },
    ];
    expect(checkParticipants([participant("A", calls, { queuedSeq: 2 })])).toEqual([]);
    const served = [...calls.slice(0, 2), { op: "redeem" as const, sentSeq: 5, doneSeq: 6, status: 201 }];
    expect(checkParticipants([participant("A", served, { queuedSeq: 2 })]).map((v) => v.invariant)).toEqual([
      "served-after-leaving",
    ]);
    // A redeem sent before the leave was answered may still have been granted.
    const racing = [...calls.slice(0, 1), { op: "redeem" as const, sentSeq: 3, doneSeq: 6, status: 201 }];
    racing.push({ op: "leave", sentSeq: 4, doneSeq: 5, status: 204 });
    expect(checkParticipants([participant("A", racing, { queuedSeq: 2 })])).toEqual([]);
  });

  it("finds a grant to a later comer while an earlier ticket still waited", () => {
    // A's ticket was in line at 2; B asked at 3 and was granted at 10.
    const b = participant("B", [{ sentSeq: 3, doneSeq: 10, status: 201 }], { grant: { token: 9, receivedSeq: 10 } });
    const a = (redeemSent: number, queuedSeq = 2) =>
      participant(
        "A",
        [
          { sentSeq: 1, doneSeq: 2, status: 202 },
          { op: "redeem", sentSeq: redeemSent, doneSeq: redeemSent + 1, status: 202, position: 0 },
        ],
        { queuedSeq },
      );
    expect(checkParticipants([a(11), b]).map((v) => v.invariant)).toEqual(["queue-order"]);
    // A's redeem was sent before B's grant arrived: nothing proves A still waited when B was granted.
    expect(checkParticipants([a(9), b])).toEqual([]);
    // A joined after B asked: B may be ahead.
    expect(checkParticipants([a(11, 4), b])).toEqual([]);
  });
});
