/**
 * The shape of `joinAll`'s txn, shared by both transports: per item one compare (no key
 * in its range created after `maxCreateRevision`), and with `absent` a second (that key
 * does not exist); one Put, and its `with` Put; and on failure, in this order: the range
 * oldest first (at most `readLimit`; its count is the whole range's), the range newest
 * first (limit 1), the item's own key, and with `absent` that key. The own key lets a
 * retried call tell whether an attempt that broke off had applied: the item's key may
 * not be among the `readLimit` oldest.
 */

import { JOIN_READS_PER_ITEM, type JoinAllResult, type JoinItem, type JoinRead, type KeyValue } from "./types.js";

/** One failure-branch range, decoded. */
export interface RangeRead {
  kvs: KeyValue[];
  count: number;
}

/** A join's result, and on failure what each item's own key holds (for a retried call). */
export interface JoinOutcome {
  result: JoinAllResult;
  own: (KeyValue | undefined)[];
}

/** How many failure-branch ranges the txn reads for `item`. */
export function readsOf(item: JoinItem): number {
  return item.absent === undefined ? JOIN_READS_PER_ITEM - 1 : JOIN_READS_PER_ITEM;
}

/** The txn's answer: on failure its ranges (`readsOf` each item) as JoinReads. */
export function joinOutcome(
  items: readonly JoinItem[],
  succeeded: boolean,
  revision: number,
  ranges: RangeRead[],
): JoinOutcome {
  if (succeeded) return { result: { applied: true, revision }, own: [] };
  const reads: JoinRead[] = [];
  const own: JoinOutcome["own"] = [];
  let n = 0;
  for (const item of items) {
    const [oldest, newest, key, blocker] = ranges.slice(n, n + readsOf(item)) as [
      RangeRead,
      RangeRead,
      RangeRead,
      RangeRead | undefined,
    ];
    n += readsOf(item);
    const found = blocker?.kvs[0];
    reads.push({
      kvs: oldest.kvs,
      count: oldest.count,
      newest: newest.kvs[0]?.createRevision ?? 0,
      ...(found ? { blocker: found } : {}),
    });
    own.push(key.kvs[0]);
  }
  return { result: { applied: false, revision, reads }, own };
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
