/**
 * The shape of `joinAll`, shared by both transports. Its txn holds, per item, one compare
 * (no key in its range created after `maxCreateRevision`), and with `absent` a second
 * (that key does not exist); one Put, and its `with` Put; and no failure branch. When
 * a compare fails, a read-only txn at the failed txn's revision reads, per item in this
 * order: the range oldest first (at most `readLimit`; its count is the whole range's),
 * when `maxCreateRevision` > 0 the range newest first (limit 1), and with `absent` that
 * key. Read at that revision, they are what a failure branch would have read.
 * Why no failure branch: see pinned-reads.ts. A join fails only when its line changed
 * under it; a failed join costs a second round trip.
 *
 * The reads need only what settles the join: a join into an empty line
 * (`maxCreateRevision` 0: every acquire that does not expect the line busy) needs no
 * newest key, since the line's count says whether its compare held; and the item's own
 * key is not read, since only a send retried after an attempt broke off needs it (the
 * gateway reads it then, apart: see gateway.ts).
 */

import { type PinnedRead, readPinned } from "./pinned-reads.js";
import type { JoinAllResult, JoinItem, JoinRead, KeyValue } from "./types.js";

/** One range a failed join read, decoded. */
export interface RangeRead {
  kvs: KeyValue[];
  count: number;
}

/** How many ranges a failed join reads for `item`: 1 to 3. */
export function readsOf(item: JoinItem): number {
  return 1 + (readsNewest(item) ? 1 : 0) + (item.absent === undefined ? 0 : 1);
}

/** Whether the txn reads the range's newest key for `item` (see above). */
export function readsNewest(item: JoinItem): boolean {
  return item.maxCreateRevision > 0;
}

/** A failed join's answer: its reads (`readsOf` each item, in order) as JoinReads. */
function failedJoin(items: readonly JoinItem[], revision: number, ranges: RangeRead[]): JoinAllResult {
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

/** What a join that failed at `revision` read (see above and pinned-reads.ts). */
export async function readFailedJoin(
  items: JoinItem[],
  revision: number,
  read: PinnedRead<JoinItem, RangeRead>,
): Promise<JoinAllResult> {
  const r = await readPinned(items, readsOf, revision, read);
  return failedJoin(items, r.revision, r.reads);
}
