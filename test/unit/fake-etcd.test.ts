import { describe, expect, it } from "vitest";
import {
  EtcdUnavailableError,
  type JoinItem,
  type KeyValue,
  LeaseExistsError,
  LeaseNotFoundError,
  prefixEnd,
  type WatchEvent,
} from "../../src/etcd/types.js";
import { FakeEtcd } from "../support/fake-etcd.js";
import { watching, watchingRange } from "../support/watches.js";

/**
 * The fake's own contract: the etcd semantics the unit tests rely on, checked here once
 * (the same facts test/etcd/transport.test.ts checks against a real etcd).
 */

const L1 = 0x1234_5678_9abc_def0n;
const L2 = 0x0fed_cba9_8765_4321n;

/** Lets queued microtasks (watch deliveries) run. */
const flush = () => new Promise<void>((r) => setImmediate(r));

describe("FakeEtcd revisions", () => {
  it("a multi-key txn takes one revision; failed compares and no-op deletes take none", async () => {
    const fake = new FakeEtcd();
    expect(fake.revision).toBe(1);
    const created = await fake.createAllIfAbsent([
      { key: "a", value: "1", lease: 0n },
      { key: "b", value: "2", lease: 0n },
    ]);
    expect(created).toEqual({ applied: true, revision: 2 });
    expect((await fake.get("a")).kv).toEqual({ key: "a", value: "1", createRevision: 2, modRevision: 2, lease: 0n });
    expect((await fake.get("b")).kv?.modRevision).toBe(2);

    const again = await fake.createAllIfAbsent([
      { key: "c", value: "3", lease: 0n },
      { key: "a", value: "x", lease: 0n },
    ]);
    expect(again).toEqual({ applied: false, revision: 2, kvs: [undefined, expect.objectContaining({ value: "1" })] });
    expect((await fake.get("c")).kv).toBeUndefined();

    expect(await fake.deleteAllIfUnchanged([{ key: "a", modRevision: 1 }])).toMatchObject({ applied: false });
    expect(await fake.deleteAllIfUnchanged([{ key: "zz", modRevision: 0 }])).toEqual({ applied: true, revision: 2 });
    expect(
      await fake.deleteAllIfUnchanged([
        { key: "a", modRevision: 2 },
        { key: "b", modRevision: 2 },
      ]),
    ).toEqual({ applied: true, revision: 3 });
    expect((await fake.range("a", "c", 0)).kvs).toEqual([]);
  });

  it("a re-put keeps the create revision and moves the mod revision", () => {
    const fake = new FakeEtcd();
    const first = fake.put("k", "1");
    const second = fake.put("k", "2");
    expect(fake.peek("k")).toMatchObject({ createRevision: first, modRevision: second, value: "2" });
  });

  it("refuses duplicate keys and oversized txns, like etcd", async () => {
    const fake = new FakeEtcd({ maxTxnOps: 2 });
    const item = { key: "a", value: "", lease: 0n };
    await expect(fake.createAllIfAbsent([item, item])).rejects.toThrow(/duplicate key/);
    await expect(fake.createAllIfAbsent([item, { ...item, key: "b" }, { ...item, key: "c" }])).rejects.toThrow(
      /too many operations/,
    );
    expect(fake.revision).toBe(1);
  });
});

describe("FakeEtcd leases", () => {
  it("grants caller-chosen IDs once, raising small TTLs to the minimum", async () => {
    const fake = new FakeEtcd();
    expect(await fake.leaseGrant(L1, 1)).toBe(2);
    await expect(fake.leaseGrant(L1, 30)).rejects.toBeInstanceOf(LeaseExistsError);
    expect(await new FakeEtcd({ minTtl: 5 }).leaseGrant(L1, 3)).toBe(5);
  });

  it("timeToLive truncates to whole seconds; keep-alive resets to the granted TTL", async () => {
    const fake = new FakeEtcd();
    await fake.leaseGrant(L1, 10);
    expect(await fake.leaseTimeToLive(L1)).toEqual({ ttl: 10, grantedTtl: 10 });
    fake.advance(1);
    expect(await fake.leaseTimeToLive(L1)).toEqual({ ttl: 9, grantedTtl: 10 });
    fake.advance(9_000);
    expect((await fake.leaseTimeToLive(L1)).ttl).toBe(0);
    expect(await fake.leaseKeepAliveOnce(L1)).toBe(10);
    expect((await fake.leaseTimeToLive(L1)).ttl).toBe(10);
    expect(await fake.leaseKeepAliveOnce(L2)).toBe(0);
    expect(await fake.leaseTimeToLive(L2)).toEqual({ ttl: -1, grantedTtl: 0 });
  });

  it("expiry on the clock and revoke delete the lease's keys at one revision", async () => {
    const fake = new FakeEtcd();
    await fake.leaseGrant(L1, 5);
    await fake.leaseGrant(L2, 5);
    await fake.createAllIfAbsent([
      { key: "a", value: "", lease: L1 },
      { key: "b", value: "", lease: L1 },
      { key: "c", value: "", lease: L2 },
    ]);
    expect(fake.revision).toBe(2);
    expect(await fake.leaseRevoke(L1)).toBe(true);
    expect(fake.revision).toBe(3);
    expect((await fake.range("a", "z", 0)).kvs.map((kv) => kv.key)).toEqual(["c"]);
    expect(await fake.leaseRevoke(L1)).toBe(false);

    fake.advance(4_999);
    expect(fake.peek("c")).toBeDefined();
    fake.advance(1);
    expect(fake.peek("c")).toBeUndefined();
    expect(fake.lease(L2)).toBeUndefined();
    expect(fake.revision).toBe(4);
    expect(await fake.leaseKeepAliveOnce(L2)).toBe(0);
    // A lease without keys goes without a revision.
    await fake.leaseGrant(L1, 5);
    expect(await fake.leaseRevoke(L1)).toBe(true);
    expect(fake.revision).toBe(4);
  });

  it("a txn putting with a missing lease writes nothing; a failed compare does not check leases", async () => {
    const fake = new FakeEtcd();
    await fake.leaseGrant(L1, 5);
    await expect(
      fake.createAllIfAbsent([
        { key: "a", value: "", lease: L1 },
        { key: "b", value: "", lease: L2 },
      ]),
    ).rejects.toBeInstanceOf(LeaseNotFoundError);
    expect(fake.peek("a")).toBeUndefined();
    expect(fake.revision).toBe(1);
    fake.put("b", "taken");
    expect(await fake.createAllIfAbsent([{ key: "b", value: "", lease: L2 }])).toMatchObject({ applied: false });
  });
});

describe("FakeEtcd ranges", () => {
  it("limit and more", async () => {
    const fake = new FakeEtcd();
    for (const k of ["p/c", "p/a", "p/b", "q/a"]) fake.put(k, k);
    const end = prefixEnd("p/");
    expect(await fake.range("p/", end, 2)).toMatchObject({ kvs: [{ key: "p/a" }, { key: "p/b" }], more: true });
    expect(await fake.range("p/", end, 3)).toMatchObject({ more: false });
    expect((await fake.range("p/", end, 0)).kvs).toHaveLength(3);
    expect((await fake.range("p/a\0", end, 0)).kvs.map((kv) => kv.key)).toEqual(["p/b", "p/c"]);
    expect((await fake.range("p/b", "", 0)).kvs.map((kv) => kv.key)).toEqual(["p/b"]);
    expect((await fake.range("p/b", "\0", 0)).kvs.map((kv) => kv.key)).toEqual(["p/b", "p/c", "q/a"]);
  });
});

describe("FakeEtcd watches", () => {
  it("replays history from the start revision, then delivers live, until aborted", async () => {
    const fake = new FakeEtcd();
    fake.put("k", "1");
    const first = fake.delete("k");
    fake.put("k", "2");
    const second = fake.delete("k");
    const w = watching(fake, "k", first + 1);
    await flush();
    expect(w.deletes).toEqual([second]);
    fake.put("other", "x");
    fake.delete("other");
    fake.put("k", "3");
    const third = fake.delete("k");
    await flush();
    expect(w.deletes).toEqual([second, third]);
    w.stop();
    expect(await w.ended).toBe("aborted");
    fake.put("k", "4");
    fake.delete("k");
    await flush();
    expect(w.deletes).toEqual([second, third]);
    expect(fake.openWatches()).toBe(0);
  });

  it("a lease's expiry is a DELETE", async () => {
    const fake = new FakeEtcd();
    await fake.leaseGrant(L1, 3);
    await fake.createAllIfAbsent([{ key: "k", value: "", lease: L1 }]);
    const w = watching(fake, "k", fake.revision + 1);
    fake.advance(3_000);
    await flush();
    expect(w.deletes).toEqual([fake.revision]);
    w.stop();
  });

  it("a start below the compaction point ends 'compacted'; at it, replays", async () => {
    const fake = new FakeEtcd();
    fake.put("k", "1");
    const deleted = fake.delete("k");
    fake.put("x", "1");
    fake.compact(deleted);
    expect(await watching(fake, "k", deleted - 1).ended).toBe("compacted");
    const w = watching(fake, "k", deleted);
    await flush();
    expect(w.deletes).toEqual([deleted]);
    w.stop();
    expect(() => fake.compact(deleted)).toThrow(/compacted/);
    expect(() => fake.compact(fake.revision + 1)).toThrow(/future/);
  });

  it("endWatches breaks open watches; an aborted signal ends at once", async () => {
    const fake = new FakeEtcd();
    const opened = fake.nextCall("watchDeletes");
    const w = watching(fake, "k", 1);
    expect(await opened).toContain("k");
    await flush();
    expect(fake.openWatches("k")).toBe(1);
    const err = new EtcdUnavailableError("gone");
    fake.endWatches(err);
    await expect(w.ended).rejects.toBe(err);
    const ac = new AbortController();
    ac.abort();
    expect(await fake.watchDeletes("k", 1, () => {}, ac.signal)).toBe("aborted");
  });
});

describe("FakeEtcd lines (scan, joinAll)", () => {
  /** p/c, p/a, p/b created in this order at revisions 2, 3, 4; q/a after them. */
  function line() {
    const fake = new FakeEtcd();
    for (const k of ["p/c", "p/a", "p/b", "q/a"]) fake.put(k, k);
    return fake;
  }
  const keys = (kvs: KeyValue[]) => kvs.map((kv) => kv.key);
  const end = prefixEnd("p/");
  const item = (prefix: string, maxCreateRevision: number, lease = 0n, readLimit = 10): JoinItem => ({
    start: prefix,
    end: prefixEnd(prefix),
    maxCreateRevision,
    key: `${prefix}me`,
    value: "v",
    lease,
    readLimit,
  });

  it("scan: by key or create revision; maxCreateRevision filters kvs and more, never count", async () => {
    const fake = line();
    expect(await fake.scan("p/", end, {})).toMatchObject({ revision: 5, count: 3, more: false });
    expect(keys((await fake.scan("p/", end, {})).kvs)).toEqual(["p/a", "p/b", "p/c"]);
    const page = await fake.scan("p/", end, { byCreate: true, limit: 2 });
    expect(keys(page.kvs)).toEqual(["p/c", "p/a"]);
    expect(page).toMatchObject({ count: 3, more: true });
    const older = await fake.scan("p/", end, { byCreate: true, maxCreateRevision: 3 });
    expect(keys(older.kvs)).toEqual(["p/c", "p/a"]);
    expect(older).toMatchObject({ count: 3, more: false });
    expect(await fake.scan("p/", end, { maxCreateRevision: 3, byCreate: true, limit: 1 })).toMatchObject({
      kvs: [{ key: "p/c" }],
      more: true,
    });
    expect(await fake.scan("p/", end, { countOnly: true, maxCreateRevision: 2 })).toEqual({
      revision: 5,
      kvs: [],
      count: 3,
      more: false,
    });
    expect(fake.count("scan")).toBe(6);
  });

  it("joinAll: puts when no key in the range is newer, else reads oldest first, the count and the newest", async () => {
    const fake = line();
    expect(await fake.joinAll([item("p/", 3, 0n, 2)])).toEqual({
      applied: false,
      revision: 5,
      reads: [{ kvs: [fake.peek("p/c"), fake.peek("p/a")], count: 3, newest: 4 }],
    });
    expect(await fake.joinAll([item("p/", 3, 0n, 0)])).toMatchObject({ reads: [{ kvs: [], count: 3, newest: 4 }] });
    // Into an empty line (known 0): no newest key read, unless the read held the whole line.
    expect(await fake.joinAll([item("p/", 0, 0n, 2)])).toEqual({
      applied: false,
      revision: 5,
      reads: [{ kvs: [fake.peek("p/c"), fake.peek("p/a")], count: 3 }],
    });
    expect(await fake.joinAll([item("p/", 0, 0n, 3)])).toMatchObject({ reads: [{ count: 3, newest: 4 }] });
    expect(fake.revision).toBe(5);
    expect(await fake.joinAll([item("p/", 4), item("r/", 0)])).toEqual({ applied: true, revision: 6 });
    expect(fake.peek("p/me")).toMatchObject({ value: "v", createRevision: 6 });
    expect(fake.peek("r/me")).toMatchObject({ createRevision: 6 });
  });

  it("joinAll: one item failing writes no item and reads every item's range", async () => {
    const fake = line();
    expect(await fake.joinAll([item("r/", 0), item("q/", 0)])).toEqual({
      applied: false,
      revision: 5,
      reads: [
        { kvs: [], count: 0, newest: 0 },
        { kvs: [fake.peek("q/a")], count: 1, newest: 5 },
      ],
    });
    expect(fake.peek("r/me")).toBeUndefined();
  });

  it("joinAll: a missing lease rejects only when the puts would go ahead; 1 read per item counts against maxTxnOps", async () => {
    const fake = new FakeEtcd({ maxTxnOps: 2 });
    await expect(fake.joinAll([item("a/", 0, L1), item("b/", 0, L2)])).rejects.toBeInstanceOf(LeaseNotFoundError);
    expect(fake.revision).toBe(1);
    fake.put("c/x", "");
    expect(await fake.joinAll([item("c/", 0, L1)])).toMatchObject({ applied: false });
    await expect(fake.joinAll([item("a/", 0), item("b/", 0), item("d/", 0)])).rejects.toThrow(/too many operations/);
  });
});

describe("FakeEtcd range watches", () => {
  const put = (kv: KeyValue | undefined): WatchEvent => ({ type: "put", kv: kv as KeyValue });

  it("history, then live: each revision's events in one call, keys outside the range left out", async () => {
    const fake = new FakeEtcd();
    const r1 = fake.put("p/a", "1");
    const kv1 = fake.peek("p/a");
    const w = watchingRange(fake, "p/", prefixEnd("p/"), r1);
    await fake.leaseGrant(L1, 10);
    const { revision: r2 } = await fake.createAllIfAbsent([
      { key: "p/c", value: "c", lease: L1 },
      { key: "p0", value: "outside", lease: L1 },
      { key: "p/b", value: "b", lease: L1 },
    ]);
    await fake.leaseRevoke(L1);
    const r3 = fake.revision;
    const r4 = fake.put("p/a", "2");
    const kv4 = fake.peek("p/a");
    const r5 = fake.delete("p/a");
    await flush();
    expect(w.calls).toEqual([
      [r1, [put(kv1)]],
      [
        r2,
        [
          put({ key: "p/c", value: "c", createRevision: r2, modRevision: r2, lease: L1 }),
          put({ key: "p/b", value: "b", createRevision: r2, modRevision: r2, lease: L1 }),
        ],
      ],
      [
        r3,
        [
          { type: "delete", key: "p/b", revision: r3 },
          { type: "delete", key: "p/c", revision: r3 },
        ],
      ],
      [r4, [put(kv4)]],
      [r5, [{ type: "delete", key: "p/a", revision: r5 }]],
    ]);
    expect(fake.openWatches("p/")).toBe(1);
    w.stop();
    expect(await w.ended).toBe("aborted");
  });

  it("compaction: a start below it ends 'compacted'; a live watch still gets what it was owed", async () => {
    const fake = new FakeEtcd();
    const w = watchingRange(fake, "p/", "p0", 0);
    await flush();
    const r = fake.put("p/a", "1");
    fake.put("x", "");
    // Compacted before the watch was told (etcd would have sent it already).
    fake.compact(fake.revision);
    await flush();
    expect(w.calls.map(([revision]) => revision)).toEqual([r]);
    expect(await watchingRange(fake, "p/", "p0", r).ended).toBe("compacted");
    w.stop();
  });

  it("faults and endWatches as for watchDeletes", async () => {
    const fake = new FakeEtcd();
    fake.failNext("watchRange", { applied: true });
    await expect(fake.watchRange("p/", "p0", 1, () => {}, new AbortController().signal)).rejects.toBeInstanceOf(
      EtcdUnavailableError,
    );
    const w = watchingRange(fake, "p/", "p0", 1);
    await flush();
    const err = new EtcdUnavailableError("gone");
    fake.endWatches(err, "p/");
    await expect(w.ended).rejects.toBe(err);
  });
});

describe("FakeEtcd faults", () => {
  it("failNext rejects one matching call, before or after it applied", async () => {
    const fake = new FakeEtcd();
    fake.failNext("get", { match: (key) => key === "b" });
    await fake.get("a");
    await expect(fake.get("b")).rejects.toBeInstanceOf(EtcdUnavailableError);
    await fake.get("b");

    fake.failNext("createAllIfAbsent");
    await expect(fake.createAllIfAbsent([{ key: "k", value: "", lease: 0n }])).rejects.toBeInstanceOf(
      EtcdUnavailableError,
    );
    expect(fake.peek("k")).toBeUndefined();
    fake.failNext("createAllIfAbsent", { applied: true });
    await expect(fake.createAllIfAbsent([{ key: "k", value: "", lease: 0n }])).rejects.toBeInstanceOf(
      EtcdUnavailableError,
    );
    expect(fake.peek("k")).toBeDefined();
  });

  it("pauseNext with applied holds a read's answer while the store moves on", async () => {
    const fake = new FakeEtcd();
    fake.put("k", "old");
    const paused = fake.pauseNext("get", { applied: true });
    const read = fake.get("k");
    expect(await paused.reached).toEqual(["k"]);
    fake.put("k", "new");
    paused.release();
    expect((await read).kv?.value).toBe("old");
    expect(fake.count("get")).toBe(1);
  });
});
