import { describe, expect, it } from "vitest";
import {
  type CreateItem,
  EtcdUnavailableError,
  type GuardedWrite,
  type JoinItem,
  LeaseNotFoundError,
  prefixEnd,
} from "../../src/etcd/types.js";
import { coalescedTxns } from "../../src/lock/strategies/group-commit.js";
import { FakeEtcd } from "../support/fake-etcd.js";
import { settled } from "./support.js";

const item = (key: string, value = key, lease = 0n): CreateItem => ({ key, value, lease });

/** The keys of each txn sent, in order. */
function batches(fake: FakeEtcd, method: "createAllIfAbsent" | "deleteAllIfUnchanged" | "joinAll"): string[][] {
  return fake.argsOf(method).map(([items]) => items.map((i: { key: string }) => i.key));
}

/** A join of line `line` (keys "line#…") with the participant key "line#id", if nobody joined after `known`. */
function joinItem(line: string, id: string, known = 0, lease = 0n): JoinItem {
  const start = `${line}#`;
  return {
    start,
    end: prefixEnd(start),
    maxCreateRevision: known,
    key: `${start}${id}`,
    value: id,
    lease,
    readLimit: 2,
  };
}

/** Settles every promise, keeping results and errors apart. */
function outcomes<T>(ps: Promise<T>[]): Promise<({ ok: T } | { err: unknown })[]> {
  return Promise.all(
    ps.map((p) =>
      p.then(
        (ok) => ({ ok }),
        (err: unknown) => ({ err }),
      ),
    ),
  );
}

describe("coalescedTxns (fake etcd)", () => {
  it("creates started in one turn go in one txn and share its revision", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake);
    const results = await Promise.all(["a", "b", "c"].map((k) => txns.createIfAbsent(item(k))));
    expect(batches(fake, "createAllIfAbsent")).toEqual([["a", "b", "c"]]);
    expect(results).toEqual([0, 1, 2].map(() => ({ created: true, revision: 2 })));
  });

  it("a taken key fails the batch: it reports the holder, the neighbours are sent again", async () => {
    const fake = new FakeEtcd();
    fake.put("b", "holder");
    const txns = coalescedTxns(fake);
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((k) => txns.createIfAbsent(item(k))));
    expect(batches(fake, "createAllIfAbsent")).toEqual([
      ["a", "b", "c"],
      ["a", "c"],
    ]);
    expect(b).toEqual({ created: false, revision: 2, kv: expect.objectContaining({ key: "b", value: "holder" }) });
    expect(a).toEqual({ created: true, revision: 3 });
    expect(c).toEqual({ created: true, revision: 3 });
  });

  it("two creates of one key go in different txns: the second finds the first's key", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake);
    const [first, second, other] = await Promise.all([
      txns.createIfAbsent(item("a", "first")),
      txns.createIfAbsent(item("a", "second")),
      txns.createIfAbsent(item("b")),
    ]);
    expect(batches(fake, "createAllIfAbsent")).toEqual([["a", "b"], ["a"]]);
    expect(first).toEqual({ created: true, revision: 2 });
    expect(other).toEqual({ created: true, revision: 2 });
    expect(second).toMatchObject({ created: false, kv: { value: "first", createRevision: 2 } });
  });

  it("no txn carries more than maxBatch items", async () => {
    const fake = new FakeEtcd({ maxTxnOps: 2 });
    const txns = coalescedTxns(fake, { maxBatch: 2 });
    const keys = ["a", "b", "c", "d", "e"];
    const results = await Promise.all(keys.map((k) => txns.createIfAbsent(item(k))));
    expect(batches(fake, "createAllIfAbsent")).toEqual([["a", "b"], ["c", "d"], ["e"]]);
    expect(results.every((r) => r.created)).toBe(true);
  });

  it("with maxInFlight, as many txns go at once; items arriving meanwhile wait and go together", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake, { maxBatch: 2, maxInFlight: 2, maxFullInFlight: 2 });
    const held = [fake.pauseNext("createAllIfAbsent"), fake.pauseNext("createAllIfAbsent")];
    const early = ["a", "b", "c", "d", "e"].map((k) => txns.createIfAbsent(item(k)));
    await Promise.all(held.map((h) => h.reached));
    // Two txns went out at once; "e" waits for a free slot.
    expect(batches(fake, "createAllIfAbsent")).toEqual([
      ["a", "b"],
      ["c", "d"],
    ]);
    const late = ["f", "g"].map((k) => txns.createIfAbsent(item(k)));
    await settled();
    expect(fake.count("createAllIfAbsent")).toBe(2);
    for (const h of held) h.release();
    await Promise.all([...early, ...late]);
    expect(batches(fake, "createAllIfAbsent").slice(2)).toEqual([["e", "f"], ["g"]]);
  });

  it("a full batch goes at once while a txn is in flight; a partial one waits for it", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake, { maxBatch: 2, maxFullInFlight: 3 });
    const first = fake.pauseNext("createAllIfAbsent");
    const early = [txns.createIfAbsent(item("a"))];
    await first.reached;
    const second = fake.pauseNext("createAllIfAbsent");
    // "b" alone would wait for "a"'s txn (group commit); "b" and "c" fill a batch: it goes.
    const full = ["b", "c", "d"].map((k) => txns.createIfAbsent(item(k)));
    await second.reached;
    await settled();
    expect(batches(fake, "createAllIfAbsent")).toEqual([["a"], ["b", "c"]]);
    // "d" alone waits while any txn is in flight, even with full slots free.
    first.release();
    await early[0];
    await settled();
    expect(fake.count("createAllIfAbsent")).toBe(2);
    second.release();
    expect((await Promise.all([...early, ...full])).every((r) => r.created)).toBe(true);
    expect(batches(fake, "createAllIfAbsent")).toEqual([["a"], ["b", "c"], ["d"]]);
  });

  it("one txn at a time per key: a key in flight waits, while a full batch of others goes", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake, { maxBatch: 2 });
    const revs = ["x", "y", "z"].map((k) => fake.put(k, "v"));
    const first = fake.pauseNext("deleteAllIfUnchanged");
    const early = txns.deleteIfUnchanged({ key: "x", modRevision: revs[0] ?? 0 });
    await first.reached;
    const second = fake.pauseNext("deleteAllIfUnchanged");
    const late = [
      txns.deleteIfUnchanged({ key: "x", modRevision: revs[0] ?? 0 }),
      txns.deleteIfUnchanged({ key: "y", modRevision: revs[1] ?? 0 }),
      txns.deleteIfUnchanged({ key: "z", modRevision: revs[2] ?? 0 }),
    ];
    await second.reached;
    await settled();
    expect(batches(fake, "deleteAllIfUnchanged")).toEqual([["x"], ["y", "z"]]);
    first.release();
    second.release();
    expect(await Promise.all([early, ...late])).toEqual([true, false, true, true]);
    expect(batches(fake, "deleteAllIfUnchanged")).toEqual([["x"], ["y", "z"], ["x"]]);
  });

  it("at most maxFullInFlight txns at once, full or not", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake, { maxBatch: 1, maxFullInFlight: 2 });
    const held = [fake.pauseNext("createAllIfAbsent"), fake.pauseNext("createAllIfAbsent")];
    const all = ["a", "b", "c", "d"].map((k) => txns.createIfAbsent(item(k)));
    await Promise.all(held.map((h) => h.reached));
    await settled();
    expect(fake.count("createAllIfAbsent")).toBe(2);
    for (const h of held) h.release();
    expect((await Promise.all(all)).every((r) => r.created)).toBe(true);
    expect(batches(fake, "createAllIfAbsent")).toEqual([["a"], ["b"], ["c"], ["d"]]);
  });

  it("an error that is not about reachability is retried one item at a time, failing only its own", async () => {
    const fake = new FakeEtcd();
    const live = 0x1111n;
    await fake.leaseGrant(live, 30);
    const txns = coalescedTxns(fake);
    const [a, dead, c] = await outcomes([
      txns.createIfAbsent(item("a", "", live)),
      txns.createIfAbsent(item("b", "", 0x2222n)),
      txns.createIfAbsent(item("c", "", live)),
    ]);
    expect(batches(fake, "createAllIfAbsent")).toEqual([["a", "b", "c"], ["a"], ["b"], ["c"]]);
    expect(a).toMatchObject({ ok: { created: true } });
    expect(c).toMatchObject({ ok: { created: true } });
    expect(dead).toEqual({ err: expect.any(LeaseNotFoundError) });
  });

  it("an error of unknown outcome fails the whole batch, never resent (it may have been applied)", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake);
    fake.failNext("createAllIfAbsent", { applied: true, error: new Error("13 INTERNAL: Received RST_STREAM") });
    const results = await outcomes(["a", "b"].map((k) => txns.createIfAbsent(item(k))));
    expect(results).toEqual([0, 1].map(() => ({ err: expect.any(Error) })));
    // One send: resending each alone would find its own key and take it for a holder's.
    expect(fake.count("createAllIfAbsent")).toBe(1);
    expect(fake.peek("a")).toBeDefined();
  });

  it("etcd unavailable fails the whole batch at once, without retries", async () => {
    const fake = new FakeEtcd();
    const txns = coalescedTxns(fake);
    fake.failNext("createAllIfAbsent");
    const results = await outcomes(["a", "b"].map((k) => txns.createIfAbsent(item(k))));
    expect(results).toEqual([0, 1].map(() => ({ err: expect.any(EtcdUnavailableError) })));
    expect(fake.count("createAllIfAbsent")).toBe(1);
    expect(fake.peek("a")).toBeUndefined();
  });

  it("deletes: a changed key fails only its own delete; the unchanged neighbours go again", async () => {
    const fake = new FakeEtcd();
    const revs = ["a", "b", "c"].map((k) => fake.put(k, "v"));
    fake.put("b", "new grant");
    const txns = coalescedTxns(fake);
    const results = await Promise.all(
      ["a", "b", "c"].map((key, i) => txns.deleteIfUnchanged({ key, modRevision: revs[i] ?? 0 })),
    );
    expect(results).toEqual([true, false, true]);
    expect(batches(fake, "deleteAllIfUnchanged")).toEqual([
      ["a", "b", "c"],
      ["a", "c"],
    ]);
    expect(fake.peek("b")?.value).toBe("new grant");
    expect(fake.peek("a")).toBeUndefined();
  });

  it("a delete whose key is already gone reports false, alone or in a batch", async () => {
    const fake = new FakeEtcd();
    const rev = fake.put("a", "v");
    const gone = fake.put("b", "v");
    fake.delete("b");
    const txns = coalescedTxns(fake);
    expect(
      await Promise.all([
        txns.deleteIfUnchanged({ key: "a", modRevision: rev }),
        txns.deleteIfUnchanged({ key: "b", modRevision: gone }),
      ]),
    ).toEqual([true, false]);
    expect(await txns.deleteIfUnchanged({ key: "b", modRevision: gone })).toBe(false);
  });

  describe("joins", () => {
    it("joins of distinct lines started in one turn go in one txn and share its revision", async () => {
      const fake = new FakeEtcd();
      const txns = coalescedTxns(fake);
      const results = await Promise.all(["a", "b", "c"].map((l) => txns.join(joinItem(l, "1"))));
      expect(batches(fake, "joinAll")).toEqual([["a#1", "b#1", "c#1"]]);
      expect(results).toEqual([0, 1, 2].map(() => ({ joined: true, revision: 2 })));
    });

    it("two joins of one line never share a txn: the second compares against the first's key", async () => {
      // In one txn both would pass the empty-line compare, and both would hold.
      const fake = new FakeEtcd();
      const txns = coalescedTxns(fake);
      const [first, second, other] = await Promise.all([
        txns.join(joinItem("a", "1")),
        txns.join(joinItem("a", "2")),
        txns.join(joinItem("b", "1")),
      ]);
      expect(batches(fake, "joinAll")).toEqual([["a#1", "b#1"], ["a#2"]]);
      expect(first).toEqual({ joined: true, revision: 2 });
      expect(other).toEqual({ joined: true, revision: 2 });
      expect(second).toMatchObject({ joined: false, read: { count: 1, newest: 2, kvs: [{ key: "a#1" }] } });
      expect(fake.peekRange("a#", "a$").map((kv) => kv.key)).toEqual(["a#1"]);
    });

    it("a failed shared batch resends only the items whose own compare held", async () => {
      const fake = new FakeEtcd();
      const taken = fake.put("a#0", "holder");
      const behind = fake.put("d#0", "holder");
      const txns = coalescedTxns(fake);
      const [a, b, c, d] = await Promise.all([
        txns.join(joinItem("a", "1")),
        txns.join(joinItem("b", "1")),
        txns.join(joinItem("c", "1")),
        // Knows line d up to its holder: its own compare holds, it joins behind it.
        txns.join(joinItem("d", "1", behind)),
      ]);
      expect(batches(fake, "joinAll")).toEqual([
        ["a#1", "b#1", "c#1", "d#1"],
        ["b#1", "c#1", "d#1"],
      ]);
      expect(a).toMatchObject({ joined: false, read: { count: 1, newest: taken, kvs: [{ key: "a#0" }] } });
      for (const r of [b, c, d]) expect(r).toEqual({ joined: true, revision: 4 });
      expect(fake.peek("a#1")).toBeUndefined();
    });

    it("alone, a join whose compare failed reports the line however new the newest key is", async () => {
      const fake = new FakeEtcd();
      const rev = fake.put("a#0", "holder");
      const txns = coalescedTxns(fake);
      expect(await txns.join(joinItem("a", "1", rev - 1))).toMatchObject({ joined: false, read: { newest: rev } });
      expect(fake.count("joinAll")).toBe(1);
    });

    it("a dead lease fails only its own join; the others are sent again alone", async () => {
      const fake = new FakeEtcd();
      const live = 0x1111n;
      await fake.leaseGrant(live, 30);
      const txns = coalescedTxns(fake);
      const [a, dead, c] = await outcomes([
        txns.join(joinItem("a", "1", 0, live)),
        txns.join(joinItem("b", "1", 0, 0x2222n)),
        txns.join(joinItem("c", "1", 0, live)),
      ]);
      expect(batches(fake, "joinAll")).toEqual([["a#1", "b#1", "c#1"], ["a#1"], ["b#1"], ["c#1"]]);
      expect(a).toMatchObject({ ok: { joined: true } });
      expect(c).toMatchObject({ ok: { joined: true } });
      expect(dead).toEqual({ err: expect.any(LeaseNotFoundError) });
    });

    it("a join batch of unknown outcome fails every join, never resent", async () => {
      const fake = new FakeEtcd();
      const txns = coalescedTxns(fake);
      fake.failNext("joinAll", { applied: true });
      const results = await outcomes(["a", "b"].map((l) => txns.join(joinItem(l, "1"))));
      expect(results).toEqual([0, 1].map(() => ({ err: expect.any(EtcdUnavailableError) })));
      // Resending would find each join's own key and take it for someone else's.
      expect(fake.count("joinAll")).toBe(1);
      expect(fake.peek("a#1")).toBeDefined();
    });

    it("no join txn carries more than 64 items: two compares and two puts each, within 128 ops", async () => {
      const fake = new FakeEtcd();
      const txns = coalescedTxns(fake, { maxBatch: 100 });
      const lines = Array.from({ length: 65 }, (_, i) => `l${String(i).padStart(2, "0")}`);
      await Promise.all(lines.map((l) => txns.join(joinItem(l, "1"))));
      expect(batches(fake, "joinAll").map((b) => b.length)).toEqual([64, 1]);
    });

    it("a join into an empty line reads no newest key: a longer line is refused on its count", async () => {
      const fake = new FakeEtcd();
      for (const id of ["a", "b", "c"]) fake.put(`l#${id}`, id);
      const txns = coalescedTxns(fake);
      const [busy, free] = await Promise.all([txns.join(joinItem("l", "me")), txns.join(joinItem("m", "me"))]);
      expect(busy).toMatchObject({ joined: false, read: { count: 3, kvs: [{ key: "l#a" }, { key: "l#b" }] } });
      expect(busy).not.toHaveProperty("read.newest");
      expect(free).toMatchObject({ joined: true });
      // The neighbour's compare held: it alone went again.
      expect(batches(fake, "joinAll")).toEqual([["l#me", "m#me"], ["m#me"]]);
    });

    it("a join behind a known revision reads the newest key: in a long line, a neighbour's failure sends it again", async () => {
      const fake = new FakeEtcd();
      for (const id of ["a", "b", "c"]) fake.put(`l#${id}`, id);
      fake.put("blocked#x", "x");
      const txns = coalescedTxns(fake);
      const known = fake.revision;
      const [behind, refused] = await Promise.all([
        // Nobody joined l after `known`: its own compare held, though its read of 2 holds 2 of 3.
        txns.join(joinItem("l", "me", known)),
        txns.join(joinItem("blocked", "me")),
      ]);
      expect(refused).toMatchObject({ joined: false, read: { count: 1 } });
      expect(behind).toMatchObject({ joined: true });
      expect(batches(fake, "joinAll")).toEqual([["l#me", "blocked#me"], ["l#me"]]);
    });
  });

  describe("guarded writes (local handoffs)", () => {
    /** A handoff in line `line`: if the holder and the waiter are unchanged, delete the holder and put the waiter. */
    const handoff = (line: string, holder: number, waiter: number, lease = 0n) => ({
      line,
      write: {
        unchanged: [
          { key: `${line}#h`, modRevision: holder },
          { key: `${line}#w`, modRevision: waiter },
        ],
        created: [{ key: `${line}!delay`, createRevision: 0 }],
        delete: [`${line}#h`],
        put: [{ key: `${line}#w`, value: "holds", lease }],
      } satisfies GuardedWrite,
    });
    /** Two participants of `line`: its holder and its waiter, with their revisions. */
    const lineOf = (fake: FakeEtcd, line: string) => [fake.put(`${line}#h`, "h"), fake.put(`${line}#w`, "w")] as const;
    const lines = (fake: FakeEtcd) =>
      fake.argsOf("guardedWriteAll").map(([ws]) => ws.map((w: GuardedWrite) => w.delete?.[0]?.split("#")[0]));

    it("handoffs of different lines started in one turn go in one txn and share its revision", async () => {
      const fake = new FakeEtcd();
      const items = ["a", "b", "c"].map((l) => handoff(l, ...lineOf(fake, l)));
      const txns = coalescedTxns(fake);
      const results = await Promise.all(items.map((i) => txns.guardedWrite(i)));
      expect(lines(fake)).toEqual([["a", "b", "c"]]);
      expect(fake.count("guardedWrite")).toBe(0);
      expect(results).toEqual([8, 8, 8]);
      for (const l of ["a", "b", "c"]) {
        expect(fake.peek(`${l}#h`)).toBeUndefined();
        expect(fake.peek(`${l}#w`)).toMatchObject({ value: "holds", modRevision: 8 });
      }
    });

    it("a lone handoff is a plain guarded write (no failure branch to read)", async () => {
      const fake = new FakeEtcd();
      const item = handoff("a", ...lineOf(fake, "a"));
      expect(await coalescedTxns(fake).guardedWrite(item)).toBe(4);
      expect(fake.argsOf("guardedWrite")).toEqual([[item.write]]);
      expect(fake.count("guardedWriteAll")).toBe(0);
    });

    it("a failed shared txn: each write whose own compare failed gets 0, the others go again", async () => {
      const fake = new FakeEtcd();
      const [ah, aw] = lineOf(fake, "a");
      const [bh, bw] = lineOf(fake, "b");
      const [ch, cw] = lineOf(fake, "c");
      const [dh, dw] = lineOf(fake, "d");
      fake.put("b#w", "left and came back"); // b's waiter changed: b's own compare fails
      fake.put("d!delay", "marker"); // d's lock-delay marker exists: d's own compare fails
      const txns = coalescedTxns(fake);
      const [a, b, c, d] = await Promise.all([
        txns.guardedWrite(handoff("a", ah, aw)),
        txns.guardedWrite(handoff("b", bh, bw)),
        txns.guardedWrite(handoff("c", ch, cw)),
        txns.guardedWrite(handoff("d", dh, dw)),
      ]);
      expect(lines(fake)).toEqual([
        ["a", "b", "c", "d"],
        ["a", "c"],
      ]);
      expect([a, b, c, d]).toEqual([12, 0, 12, 0]);
      expect(fake.peek("b#h")).toBeDefined();
      expect(fake.peek("b#w")?.value).toBe("left and came back");
      expect(fake.peek("d#h")).toBeDefined();
      expect(fake.peek("a#h")).toBeUndefined();
    });

    it("two handoffs of one line never share a txn", async () => {
      const fake = new FakeEtcd();
      const [ah, aw] = lineOf(fake, "a");
      const [bh, bw] = lineOf(fake, "b");
      const txns = coalescedTxns(fake);
      const [first, second, other] = await Promise.all([
        txns.guardedWrite(handoff("a", ah, aw)),
        txns.guardedWrite(handoff("a", ah, aw)),
        txns.guardedWrite(handoff("b", bh, bw)),
      ]);
      expect(lines(fake)).toEqual([["a", "b"]]);
      // The second went alone, after the first: its holder was gone by then.
      expect(fake.count("guardedWrite")).toBe(1);
      expect([first, second, other]).toEqual([6, 0, 6]);
    });

    it("a dead lease fails only its own handoff; the others are sent again alone", async () => {
      const fake = new FakeEtcd();
      const live = 0x1111n;
      await fake.leaseGrant(live, 30);
      const [ah, aw] = lineOf(fake, "a");
      const [bh, bw] = lineOf(fake, "b");
      const txns = coalescedTxns(fake);
      const [a, dead] = await outcomes([
        txns.guardedWrite(handoff("a", ah, aw, live)),
        txns.guardedWrite(handoff("b", bh, bw, 0x2222n)),
      ]);
      expect(fake.count("guardedWriteAll")).toBe(1);
      expect(fake.count("guardedWrite")).toBe(2);
      expect(a).toEqual({ ok: 6 });
      expect(dead).toEqual({ err: expect.any(LeaseNotFoundError) });
      expect(fake.peek("b#h")).toBeDefined();
    });

    it("a batch of unknown outcome fails every handoff in it, never resent", async () => {
      const fake = new FakeEtcd();
      const items = ["a", "b"].map((l) => handoff(l, ...lineOf(fake, l)));
      const txns = coalescedTxns(fake);
      fake.failNext("guardedWriteAll", { applied: true });
      const results = await outcomes(items.map((i) => txns.guardedWrite(i)));
      expect(results).toEqual([0, 1].map(() => ({ err: expect.any(EtcdUnavailableError) })));
      expect(fake.count("guardedWriteAll")).toBe(1);
      expect(fake.count("guardedWrite")).toBe(0);
      // Applied, though its answer was lost: a resend would find the holders gone and report 0.
      expect(fake.peek("a#w")?.value).toBe("holds");
    });
  });
});
