/**
 * The shape of `joinAll`, shared by both transports. Its txn holds, per item, one compare
 * (no key in its range created after `maxCreateRevision`), and with `absent` a second
 * (that key does not exist); one Put, and its `with` Put; and no failure branch. When
 * a compare fails, a read-only txn at the failed txn's revision reads, per item in this
 * order: the range oldest first (at most `readLimit`; its count is the whole range's),
 * when `maxCreateRevision` > 0 the range newest first (limit 1), and with `absent` that
 * key. Read at that revision, they are what a failure branch would have read.
 *
 * Why not a failure branch: etcd stores the whole txn request in its raft log, failure
 * branch included, and each member decodes it (through the gateway, from JSON first), on
 * every join, although a join fails only when the line changed under it. Measured
 * (BENCHMARKS.md, session 9), a 42-item join txn through the gateway cost etcd 5.7 ms of
 * CPU with its failure branch and 3.7 without; a failed join now costs a second round
 * trip instead.
 *
 * The reads need only what settles the join: a join into an empty line
 * (`maxCreateRevision` 0: every acquire that does not expect the line busy) needs no
 * newest key, since the line's count says whether its compare held; and the item's own
 * key is not read, since only a send retried after an attempt broke off needs it (the
 * gateway reads it then, apart: see gateway.ts).
 */

import {
  EtcdUnavailableError,
  type JoinAllResult,
  type JoinItem,
  type JoinRead,
  type KeyValue,
  MAX_TXN_OPS,
} from "./types.js";

/** One failure-branch range, decoded. */
export interface RangeRead {
  kvs: KeyValue[];
  count: number;
}

/** How many ranges a failed join reads for `item` (at most JOIN_READS_PER_ITEM). */
export function readsOf(item: JoinItem): number {
  return 1 + (readsNewest(item) ? 1 : 0) + (item.absent === undefined ? 0 : 1);
}

/** Whether the txn reads the range's newest key for `item` (see above). */
export function readsNewest(item: JoinItem): boolean {
  return item.maxCreateRevision > 0;
}

/** The join's answer: on failure its reads (`readsOf` each item, in order) as JoinReads. */
export function joinOutcome(
  items: readonly JoinItem[],
  succeeded: boolean,
  revision: number,
  ranges: RangeRead[],
): JoinAllResult {
  if (succeeded) return { applied: true, revision };
  const reads: JoinRead[] = [];
  let n = 0;
  for (const item of items) {
    const oldest = ranges[n] as RangeRead;
    const newestRead = readsNewest(item) ? ranges[n + 1] : undefined;
    const blocker = item.absent === undefined ? undefined : ranges[n + readsOf(item) - 1];
    n += readsOf(item);
    const found = blocker?.kvs[0];
    const newest = newestRead ? (newestRead.kvs[0]?.createRevision ?? 0) : newestOf(oldest);
    reads.push({
      kvs: oldest.kvs,
      count: oldest.count,
      ...(newest !== undefined ? { newest } : {}),
      ...(found ? { blocker: found } : {}),
    });
  }
  return { applied: false, revision, reads };
}

/**
 * The newest create revision in a range read oldest first, when the read holds all of it
 * (an empty line: 0); `undefined` otherwise. For a join into an empty line that is enough:
 * its compare held exactly when the count is 0.
 */
export function newestOf(oldest: RangeRead): number | undefined {
  if (oldest.count > oldest.kvs.length) return undefined;
  let newest = 0;
  for (const kv of oldest.kvs) newest = Math.max(newest, kv.createRevision);
  return newest;
}

/**
 * What a failed join says about an earlier attempt of the same call that broke off:
 * "applied" (with the create revision) when every item's key holds that item's value
 * and lease, all from one revision; "none" when no item's key exists; else "unknown"
 * (some are there, or a key holds something else).
 */
export function earlierJoin(
  items: JoinItem[],
  own: (KeyValue | undefined)[],
): { applied: number } | "none" | "unknown" {
  if (own.every((kv) => kv === undefined)) return "none";
  const first = own[0]?.createRevision;
  const ours = items.every((i, n) => {
    const kv = own[n];
    return kv !== undefined && kv.value === i.value && kv.lease === i.lease && kv.createRevision === first;
  });
  return ours && first !== undefined ? { applied: first } : "unknown";
}

/**
 * A read-only txn of `items`' join reads (`readsOf` each, in order) at `revision`, or at
 * the current one when `undefined`; "compacted" when etcd no longer has that revision.
 */
export type JoinReadTxn = (
  items: JoinItem[],
  revision: number | undefined,
) => Promise<{ revision: number; ranges: RangeRead[] } | "compacted">;

/**
 * What a join that failed at `revision` read, in read-only txns of at most MAX_TXN_OPS
 * reads each, all at that revision: the same snapshot however many it takes. If etcd
 * compacted that revision away in the meantime (rare: the txn failed moments ago), the
 * reads are taken at the current revision instead, all at one: each item's read is then
 * a later snapshot of its line, which is what a join sent again would be told anyway.
 */
export async function readFailedJoin(items: JoinItem[], revision: number, read: JoinReadTxn): Promise<JoinAllResult> {
  const chunks: JoinItem[][] = [];
  let ops = MAX_TXN_OPS;
  for (const item of items) {
    if (ops + readsOf(item) > MAX_TXN_OPS) {
      chunks.push([]);
      ops = 0;
    }
    chunks[chunks.length - 1]?.push(item);
    ops += readsOf(item);
  }
  // Every chunk at `at`; with `undefined`, at the revision the first chunk's answer gives.
  const readAll = async (at: number | undefined) => {
    const ranges: RangeRead[] = [];
    for (const chunk of chunks) {
      const r = await read(chunk, at);
      if (r === "compacted") return "compacted";
      at = r.revision;
      ranges.push(...r.ranges);
    }
    return { revision: at ?? revision, ranges };
  };
  const r = await readAll(revision);
  const now = r === "compacted" ? await readAll(undefined) : r;
  if (now === "compacted") {
    throw new EtcdUnavailableError("etcd compacted the revision a join's reads were pinned to, twice");
  }
  return joinOutcome(items, false, now.revision, now.ranges);
}
