/**
 * The shape of `guardedWriteAll`'s txn, shared by both transports: every write's
 * compares, then its deletes and puts (each write's deletes before its own puts, as in
 * `guardedWrite`); and when it fails, a read of each compared key at its revision (see
 * pinned-reads.ts), write by write, in compare order (`unchanged`, then `created`), so
 * that each write can be judged on its own.
 */

import type { AllOrNothing, GuardedAllResult, GuardedWrite, KeyValue } from "./types.js";

/** The keys `w` compares, in the order of its compares (and of their reads on failure). */
export function comparedKeys(w: GuardedWrite): string[] {
  return [...(w.unchanged ?? []).map((i) => i.key), ...(w.created ?? []).map((i) => i.key)];
}

/** The txn's answer, its reads on failure (one per compared key, in order) split by write. */
export function splitReads(writes: readonly GuardedWrite[], r: AllOrNothing): GuardedAllResult {
  if (r.applied) return r;
  let at = 0;
  const reads = writes.map((w) => {
    const n = comparedKeys(w).length;
    const own: (KeyValue | undefined)[] = r.kvs.slice(at, at + n);
    at += n;
    return own;
  });
  return { applied: false, revision: r.revision, reads };
}

/** Whether every compare of `w` holds for its keys as `read` (in `comparedKeys` order) found them. */
export function comparesHold(w: GuardedWrite, read: readonly (KeyValue | undefined)[]): boolean {
  const unchanged = w.unchanged ?? [];
  return (
    unchanged.every((i, n) => (read[n]?.modRevision ?? 0) === i.modRevision) &&
    (w.created ?? []).every((i, n) => (read[unchanged.length + n]?.createRevision ?? 0) === i.createRevision)
  );
}
