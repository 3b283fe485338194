import { describe, expect, it } from "vitest";
import type { HistoryEvent } from "../../scripts/verify/etcd-cluster.js";
import {
  checkObservers,
  expectedFeed,
  type ObservedBatch,
  type ObserverRecord,
  readStream,
} from "../../scripts/verify/observers.js";

const P = "verify/";
const A = `${P}lock/leader:0#a`;
const B = `${P}lock/leader:0#b`;
const C = `${P}lock/leader:1#c`;
const put = (key: string, revision: number, createRevision: number, v: object): HistoryEvent => ({
  type: "put",
  key,
  revision,
  createRevision,
  value: JSON.stringify(v),
});
const del = (key: string, revision: number): HistoryEvent => ({ type: "delete", key, revision });

/**
 * Leader A is elected (2), B waits while A is claimed again with its value (3: no
 * change), A proclaims (4), A resigns and B is granted in one txn (5), another name
 * gets a leader (6), B's grant ends (7); a key of another prefix changes (8).
 */
const HISTORY: HistoryEvent[] = [
  put(A, 2, 2, { h: 1, val: "a1", owner: "x" }),
  put(B, 3, 3, { owner: "y" }),
  put(A, 3, 2, { h: 1, val: "a1", owner: "x" }),
  put(A, 4, 2, { h: 1, val: "a2", owner: "x" }),
  del(A, 5),
  put(B, 5, 3, { h: 1, val: "b1", owner: "y" }),
  put(C, 6, 6, { h: 1, owner: "z" }),
  del(B, 7),
  put(`${P}lock/other#d`, 8, 8, { h: 1 }),
];

const EXPECTED: ObservedBatch[] = [
  { revision: 2, events: [{ event: "held", name: "leader:0", token: 2, value: "a1" }] },
  { revision: 4, events: [{ event: "held", name: "leader:0", token: 2, value: "a2" }] },
  {
    revision: 5,
    events: [
      { event: "free", name: "leader:0", token: 2 },
      { event: "held", name: "leader:0", token: 3, value: "b1" },
    ],
  },
  { revision: 6, events: [{ event: "held", name: "leader:1", token: 6 }] },
  { revision: 7, events: [{ event: "free", name: "leader:0", token: 3 }] },
];

const start: ObservedBatch = { revision: 1, events: [{ event: "reset", index: 1, reason: "start" }] };
const observer = (batches: ObservedBatch[]): ObserverRecord => ({ id: "o", batches, connections: 1, drops: 0 });
const check = (batches: ObservedBatch[]) => checkObservers(EXPECTED, [observer(batches)]);
const invariants = (batches: ObservedBatch[]) => check(batches).map((v) => v.invariant);
const at = (revision: number) => EXPECTED.find((b) => b.revision === revision) as ObservedBatch;

describe("leaders and change feeds checker", () => {
  it("derives the feed from etcd's history: grants, new values and frees; claims and waiters are no change", () => {
    expect(expectedFeed(HISTORY, P, "leader:")).toEqual(EXPECTED);
  });

  it("accepts an observer that saw every change once, from the start or resumed after a reset", () => {
    expect(check([start, ...EXPECTED])).toEqual([]);
    const resumed: ObservedBatch = {
      revision: 4,
      events: [
        { event: "reset", index: 4, reason: "compacted" },
        { event: "held", name: "leader:0", token: 2, value: "a2" },
      ],
    };
    expect(check([start, at(2), resumed, at(5), at(6), at(7)])).toEqual([]);
  });

  it("catches a gap: a revision missing, part of a revision missing, or stopping early", () => {
    expect(invariants([start, at(2), at(5), at(6), at(7)])).toEqual(["observer-gap"]);
    const partial = { revision: 5, events: at(5).events.slice(0, 1) };
    expect(invariants([start, at(2), at(4), partial, at(6), at(7)])).toEqual(["observer-gap"]);
    expect(invariants([start, at(2), at(4), at(5)])).toEqual(["observer-gap"]);
    expect(invariants([at(2), at(4), at(5), at(6), at(7)])).toContain("observer-gap");
  });

  it("catches a duplicate: a revision again, or an event twice in one", () => {
    expect(invariants([start, at(2), at(4), at(4), at(5), at(6), at(7)])).toEqual(["observer-duplicate"]);
    const twice = { revision: 6, events: [...at(6).events, ...at(6).events] };
    expect(invariants([start, at(2), at(4), at(5), twice, at(7)])).toEqual(["observer-duplicate"]);
  });

  it("catches a leader older than one already seen for that name", () => {
    const stale: ObservedBatch = {
      revision: 6,
      events: [
        { event: "reset", index: 6, reason: "compacted" },
        { event: "held", name: "leader:0", token: 2, value: "a2" },
        { event: "held", name: "leader:1", token: 6 },
      ],
    };
    const found = invariants([start, at(2), at(4), at(5), stale, at(7)]);
    expect(found).toContain("observer-older-token");
  });

  it("catches a reset whose holders are not etcd's at its index", () => {
    const wrong: ObservedBatch = {
      revision: 5,
      events: [
        { event: "reset", index: 5, reason: "compacted" },
        { event: "held", name: "leader:0", token: 3, value: "b0" },
      ],
    };
    expect(invariants([start, at(2), at(4), wrong, at(6), at(7)])).toEqual(["observer-reset"]);
    // Right holders, but a resumption must not start over.
    const over: ObservedBatch = {
      ...at(5),
      events: [{ event: "reset", index: 5, reason: "start" }, at(5).events[1] as never],
      resumed: true,
    };
    expect(invariants([start, at(2), at(4), over, at(6), at(7)])).toEqual(["observer-reset"]);
  });

  it("commits a revision's events only when the id closing them arrived", async () => {
    const text =
      ": leasehold events\n\n" +
      'event: reset\ndata: {"index":1,"reason":"start"}\nid: 1\n\n' +
      'event: free\ndata: {"kind":"lock","name":"leader:0","token":2}\n\n' +
      'event: held\ndata: {"kind":"lock","name":"leader:0","token":3,"value":"b1","ttl":2}\nid: 5\n\n' +
      'event: free\ndata: {"kind":"lock","name":"leader:0","token":3}\n\n';
    const bytes = new TextEncoder().encode(text);
    // Cut into pieces that split lines and events.
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 7) c.enqueue(bytes.slice(i, i + 7));
        c.close();
      },
    });
    const batches: ObservedBatch[] = [];
    await readStream(body, (b) => batches.push(b));
    expect(batches.map((b) => b.revision)).toEqual([1, 5]);
    expect(batches[1]?.events).toEqual([
      { event: "free", kind: "lock", name: "leader:0", token: 2 },
      { event: "held", kind: "lock", name: "leader:0", token: 3, value: "b1", ttl: 2 },
    ]);
  });
});
