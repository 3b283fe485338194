import { describe, expect, it } from "vitest";
import { type RangeRead, readFailedJoin, readsOf } from "../../src/etcd/join.js";
import { type PinnedRead, readKeysAt } from "../../src/etcd/pinned-reads.js";
import { EtcdUnavailableError, type JoinItem, MAX_TXN_OPS, prefixEnd } from "../../src/etcd/types.js";

/** The reads of a failed txn: how they are split into txns, pinned, and taken again. */

const item = (n: number, o: Partial<JoinItem> = {}): JoinItem => ({
  start: `line-${n}/`,
  end: prefixEnd(`line-${n}/`),
  maxCreateRevision: 7,
  key: `line-${n}/me`,
  value: "",
  lease: 0n,
  readLimit: 2,
  absent: `marker-${n}`,
  ...o,
});

/** A read txn answering each item's reads with its index (as the count), at `now` when unpinned. */
function scripted(now: number, refuse: (call: number, at: number | undefined) => boolean) {
  const calls: { items: number; at: number | undefined }[] = [];
  const read: PinnedRead<JoinItem, RangeRead> = async (chunk, at) => {
    calls.push({ items: chunk.length, at });
    if (refuse(calls.length - 1, at)) return "compacted";
    const ranges: RangeRead[] = chunk.flatMap((i) => {
      const n = Number(i.start.slice(5, -1));
      return Array.from({ length: readsOf(i) }, (_, k) => ({ kvs: [], count: k === 0 ? n : 0 }));
    });
    // As etcd: the header holds the current revision, whatever revision the reads were at.
    return { revision: now, reads: ranges };
  };
  return { read, calls };
}

describe("readFailedJoin", () => {
  it("splits the reads into txns of at most etcd's operations, all at the failed txn's revision", async () => {
    const items = Array.from({ length: 64 }, (_, n) => item(n));
    const { read, calls } = scripted(99, () => false);
    const r = await readFailedJoin(items, 12, read);
    expect(calls).toEqual([
      { items: Math.floor(MAX_TXN_OPS / 3), at: 12 },
      { items: 64 - Math.floor(MAX_TXN_OPS / 3), at: 12 },
    ]);
    expect(r.applied).toBe(false);
    if (r.applied) return;
    expect(r.revision).toBe(12);
    expect(r.reads.map((x) => x.count)).toEqual(items.map((_, n) => n));
  });

  it("items that read less share a txn with more of them", async () => {
    const items = Array.from({ length: 64 }, (_, n) => item(n, { maxCreateRevision: 0, absent: undefined }));
    const { read, calls } = scripted(99, () => false);
    const r = await readFailedJoin(items, 12, read);
    expect(calls).toEqual([{ items: 64, at: 12 }]);
    expect(r.applied ? [] : r.reads.map((x) => x.count)).toEqual(items.map((_, n) => n));
  });

  it("when the revision was compacted away, reads everything again at the one the first answer gives", async () => {
    const items = Array.from({ length: 64 }, (_, n) => item(n));
    const { read, calls } = scripted(40, (_, at) => at === 12);
    const r = await readFailedJoin(items, 12, read);
    expect(calls.map((c) => c.at)).toEqual([12, undefined, 40]);
    expect(r).toMatchObject({ applied: false, revision: 40 });
    if (r.applied) return;
    expect(r.reads.map((x) => x.count)).toEqual(items.map((_, n) => n));
  });

  it("a revision compacted away under the second reading too is an unavailable etcd", async () => {
    const { read } = scripted(40, (call) => call !== 1);
    await expect(
      readFailedJoin(
        Array.from({ length: 64 }, (_, n) => item(n)),
        12,
        read,
      ),
    ).rejects.toBeInstanceOf(EtcdUnavailableError);
  });
});

describe("readKeysAt", () => {
  it("reads each key once, at most etcd's operations per txn, all at the failed txn's revision", async () => {
    const keys = Array.from({ length: 200 }, (_, n) => `k${n}`);
    const calls: { keys: number; at: number | undefined }[] = [];
    const r = await readKeysAt(keys, 5, async (chunk, at) => {
      calls.push({ keys: chunk.length, at });
      return {
        revision: 9,
        reads: chunk.map((key) => ({ key, value: "", createRevision: 1, modRevision: 2, lease: 0n })),
      };
    });
    expect(calls).toEqual([
      { keys: 128, at: 5 },
      { keys: 72, at: 5 },
    ]);
    expect(r).toMatchObject({ applied: false, revision: 5 });
    expect(r.kvs.map((kv) => kv?.key)).toEqual(keys);
  });
});
