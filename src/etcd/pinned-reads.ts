/**
 * The reads that settle a multi-key txn whose compares failed, taken after it instead of
 * in its failure branch, by both transports. etcd stores the whole txn request in its
 * raft log, failure branch included, and each member decodes it (through the gateway,
 * from JSON first), on every txn, although most txns apply: their compares fail only
 * when something changed under them. So none of our txns carries a failure branch;
 * when one fails, read-only txns at its revision read what it compared. Read at that
 * revision, they see exactly what its failure branch would have seen, however many read
 * txns it takes (etcd caps the operations of one).
 *
 * Measured (BENCHMARKS.md, session 9), etcd's CPU per txn through the gateway: a 42-item
 * join 5.1 → 3.0 ms, a 64-item delete 4.1 → 3.1 ms (medians of 4 rounds of
 * scripts/bench/txn-cost.ts).
 */

import { EtcdUnavailableError, type KeyValue, MAX_TXN_OPS } from "./types.js";

/**
 * A read-only txn of `items`' reads at `revision`, or at the current one when
 * `undefined`: the revision in its answer's header and its reads, in item order;
 * "compacted" when etcd no longer has that revision.
 */
export type PinnedRead<I, R> = (
  items: I[],
  revision: number | undefined,
) => Promise<{ revision: number; reads: R[] } | "compacted">;

/**
 * Every item's reads (`opsOf` each) at `revision`, in read txns of at most MAX_TXN_OPS
 * reads. If etcd compacted that revision away meanwhile (rare: the txn failed moments
 * ago), all are read again at the current revision, which the first answer pins for the
 * rest: a later snapshot, which is what the txn sent again would be judged on anyway.
 */
export async function readPinned<I, R>(
  items: readonly I[],
  opsOf: (item: I) => number,
  revision: number,
  read: PinnedRead<I, R>,
): Promise<{ revision: number; reads: R[] }> {
  const chunks: I[][] = [];
  let ops = MAX_TXN_OPS;
  for (const item of items) {
    if (ops + opsOf(item) > MAX_TXN_OPS) {
      chunks.push([]);
      ops = 0;
    }
    chunks[chunks.length - 1]?.push(item);
    ops += opsOf(item);
  }
  const readAll = async (at: number | undefined) => {
    const reads: R[] = [];
    for (const chunk of chunks) {
      const r = await read(chunk, at);
      if (r === "compacted") return "compacted";
      // A read at a given revision is answered with etcd's current revision in its header,
      // not the one it read at: only an unpinned read's header says what it saw. Taking
      // the header's for a pinned read let a line's later keys pass a join's compare
      // unseen (the fault checker found semaphores over their limit).
      at ??= r.revision;
      reads.push(...r.reads);
    }
    return { revision: at ?? revision, reads };
  };
  const pinned = await readAll(revision);
  const now = pinned === "compacted" ? await readAll(undefined) : pinned;
  if (now === "compacted") {
    throw new EtcdUnavailableError("etcd compacted the revision a failed txn's reads were pinned to, twice");
  }
  return now;
}

/** Each key (one read each) as it was at `revision`, when a txn comparing them failed there. */
export async function readKeysAt(
  keys: readonly string[],
  revision: number,
  read: PinnedRead<string, KeyValue | undefined>,
): Promise<{ applied: false; revision: number; kvs: (KeyValue | undefined)[] }> {
  const r = await readPinned(keys, () => 1, revision, read);
  return { applied: false, revision: r.revision, kvs: r.reads };
}
