import { comparesHold } from "../../etcd/guarded.js";
import {
  type AllOrNothing,
  type CreateItem,
  type CreateResult,
  type DeleteItem,
  type EtcdClient,
  type GuardedAllResult,
  type GuardedWrite,
  JOIN_ITEMS_PER_TXN,
  type JoinAllResult,
  type JoinItem,
  type JoinRead,
  type KeyValue,
  LeaseNotFoundError,
} from "../../etcd/types.js";
import { KeyCounts } from "./key-counts.js";

/** A join's outcome: the key was put, or what the line held instead. */
export type JoinOutcome = { joined: true; revision: number } | { joined: false; revision: number; read: JoinRead };

/** The txns the engine sends, one participant each. */
export interface SingleKeyTxns {
  /** Txn: if no key in the item's line is newer than its revision then Put(key) else read the line. */
  join(item: JoinItem): Promise<JoinOutcome>;
  /**
   * Txn: if create_revision(key) == 0 then Put(key, value, lease) else Range(key).
   * Items naming the same `line` (a participant's line start) never share a txn.
   */
  createIfAbsent(item: CreateItem & { line?: string }): Promise<CreateResult>;
  /** Txn: if mod_revision(key) == modRevision then Delete(key). `true` when it deleted. */
  deleteIfUnchanged(item: DeleteItem): Promise<boolean>;
  /**
   * The guarded write `write` (see EtcdClient.guardedWrite): its revision, or 0 when a
   * compare failed. Writes naming the same `line` (their keys' line start) never share a
   * txn; each may compare 3 keys at most (a local handoff's: the released key, the waiter's,
   * the lock-delay marker), so that a batch stays within etcd's --max-txn-ops.
   */
  guardedWrite(item: { write: GuardedWrite; line: string }): Promise<number>;
}

/** Txn: join one line (see `SingleKeyTxns.join`). */
export async function join(etcd: EtcdClient, item: JoinItem): Promise<JoinOutcome> {
  return settleJoin(await etcd.joinAll([item]), item, 0, false) ?? notReached();
}

/** Txn: if create_revision(key) == 0 then Put(key, value, lease) else Range(key). */
export async function createIfAbsent(
  etcd: EtcdClient,
  key: string,
  value: string,
  lease: bigint,
): Promise<CreateResult> {
  return settleCreate(await etcd.createAllIfAbsent([{ key, value, lease }]), 0, false) ?? notReached();
}

/** Txn: if mod_revision(key) == modRevision then Delete(key). `true` when it deleted. */
export async function deleteIfUnchanged(etcd: EtcdClient, key: string, modRevision: number): Promise<boolean> {
  return settleDelete(await etcd.deleteAllIfUnchanged([{ key, modRevision }]), { key, modRevision }, 0, false) ?? false;
}

/** Each txn on its own: where I/O cannot be shared across requests (Workers). */
export function singleTxns(etcd: EtcdClient): SingleKeyTxns {
  return {
    join: (i) => join(etcd, i),
    createIfAbsent: (i) => createIfAbsent(etcd, i.key, i.value, i.lease),
    deleteIfUnchanged: (i) => deleteIfUnchanged(etcd, i.key, i.modRevision),
    guardedWrite: (i) => etcd.guardedWrite(i.write),
  };
}

/**
 * Coalesces the single-key txns that concurrent requests start within one event-loop
 * turn into one multi-key txn: one etcd call, one raft proposal and one fsync for many
 * locks, which is what lets the service beat a client doing its own txns.
 *
 * An etcd txn is all-or-nothing, so one taken key fails the whole batch. Its failure
 * branch reads every key, which settles the items whose own compare failed; the others
 * failed only because of a neighbour and go into the next batch. Every retry settles at
 * least one item, so this ends. Fencing tokens stay per-name: locks created in one txn
 * share its revision, and each name's successive grants still get increasing revisions.
 *
 * Measured (BENCHMARKS.md, at 5e17ae3): at 32 concurrent callers, about 5 locks per txn,
 * raft proposals per lock cycle 2.0 → 0.40, cycles per second 0.34× → 0.71× of a client
 * doing its own txns. Workers use `singleTxns` (see strategies/index.ts).
 *
 * One partial batch in flight at a time (`maxInFlight`), so batches grow with load; but
 * a full batch never waits (up to `maxFullInFlight` txns in all): with a batch size
 * capped (by etcd's op limit; joins were 32 when this was measured) and one txn at a
 * time, a cycle rate is capped
 * at a batch per round trip. Measured (BENCHMARKS.md, session 8): at 256 callers on the
 * gateway, joins of 32 one at a time gave 0.7× the rate of 64-item creates.
 */
export function coalescedTxns(
  etcd: EtcdClient,
  o: { maxBatch?: number; maxInFlight?: number; maxFullInFlight?: number } = {},
): SingleKeyTxns {
  const maxBatch = o.maxBatch ?? 64;
  const inFlight = { partial: o.maxInFlight ?? 1, full: o.maxFullInFlight ?? FULL_BATCHES_IN_FLIGHT };
  const byKey = (i: { key: string }) => i.key;
  // Two joins of one line in one txn would both pass their compare: one batch per line.
  const joins = new Coalescer<JoinItem, JoinOutcome, JoinAllResult>(
    (items) => etcd.joinAll(items),
    (r, item, i, shared) => settleJoin(r, item, i, shared),
    (i) => i.start,
    // Up to two compares and two puts each: 64 stay within etcd's default --max-txn-ops.
    Math.min(maxBatch, JOIN_ITEMS_PER_TXN),
    inFlight,
  );
  // Two participants of one line created in one txn would share its revision, their
  // order in the line and, in turn, one fencing token: one batch per line.
  const creates = new Coalescer<CreateItem & { line?: string }, CreateResult>(
    (items) => etcd.createAllIfAbsent(items.map(({ key, value, lease }) => ({ key, value, lease }))),
    (r, _item, i, shared) => settleCreate(r, i, shared),
    (i) => i.line ?? i.key,
    maxBatch,
    inFlight,
  );
  const deletes = new Coalescer<DeleteItem, boolean>(
    (items) => etcd.deleteAllIfUnchanged(items),
    (r, item, i, shared) => settleDelete(r, item, i, shared),
    byKey,
    maxBatch,
    inFlight,
  );
  // Local handoffs (a release that makes the next waiter the holder) of different lines,
  // one txn for all: 10 lines handed down at once cost one raft write per round, not ten.
  // A lone write goes as a plain guarded write, with no failure branch to read.
  const guarded = new Coalescer<{ write: GuardedWrite; line: string }, number, GuardedAllResult>(
    async (items) => {
      const [only] = items;
      if (items.length > 1 || !only) return etcd.guardedWriteAll(items.map((i) => i.write));
      const revision = await etcd.guardedWrite(only.write);
      return revision === 0 ? { applied: false, revision, reads: [[]] } : { applied: true, revision };
    },
    (r, item, i, shared) => settleGuarded(r, item.write, i, shared),
    (i) => i.line,
    // Up to 3 compares each: 3 × 32 stays within etcd's default --max-txn-ops of 128.
    Math.min(maxBatch, 32),
    inFlight,
  );
  return {
    join: (item) => joins.submit(item),
    createIfAbsent: (item) => creates.submit(item),
    deleteIfUnchanged: (item) => deletes.submit(item),
    guardedWrite: (item) => guarded.submit(item),
  };
}

/** `undefined`: every compare of the item's own held, so only another item failed the txn: retry it. */
function settleGuarded(r: GuardedAllResult, write: GuardedWrite, i: number, shared: boolean): number | undefined {
  if (r.applied) return r.revision;
  return shared && comparesHold(write, r.reads[i] ?? []) ? undefined : 0;
}

/**
 * `undefined`: the item's own compare held, so only another item failed the txn: retry it.
 * A join into an empty line whose read did not hold the whole line has no newest key: the
 * line is not empty, so its own compare failed.
 */
function settleJoin(r: JoinAllResult, item: JoinItem, i: number, shared: boolean): JoinOutcome | undefined {
  if (r.applied) return { joined: true, revision: r.revision };
  const read = r.reads[i] ?? notReached();
  const ownHeld = read.newest !== undefined && read.newest <= item.maxCreateRevision && read.blocker === undefined;
  if (shared && ownHeld) return undefined;
  return { joined: false, revision: r.revision, read };
}

/** `undefined`: the item's key was free, so only another item failed the txn: retry it. */
function settleCreate(r: AllOrNothing, i: number, shared: boolean): CreateResult | undefined {
  if (r.applied) return { created: true, revision: r.revision };
  const kv = r.kvs[i];
  if (kv) return { created: false, revision: r.revision, kv };
  return shared ? undefined : { created: false, revision: r.revision };
}

/** `undefined`: the item's key was still unchanged, so only another item failed the txn: retry it. */
function settleDelete(r: AllOrNothing, item: DeleteItem, i: number, shared: boolean): boolean | undefined {
  if (r.applied) return true;
  const kv: KeyValue | undefined = r.kvs[i];
  return shared && kv?.modRevision === item.modRevision ? undefined : false;
}

/** Full batches in flight at once (see coalescedTxns). */
const FULL_BATCHES_IN_FLIGHT = 4;

function notReached(): never {
  throw new Error("a single-item txn failed without reading what it compared");
}

interface Pending<I, R> {
  item: I;
  resolve(r: R): void;
  reject(err: unknown): void;
}

// Node runs setImmediate callbacks after all the I/O callbacks of a loop turn, so every
// request that arrived in that turn joins the batch; the wait costs no extra round trip.
const nextTurn: (fn: () => void) => void =
  typeof setImmediate === "function" ? (fn) => setImmediate(fn) : (fn) => setTimeout(fn, 0);

class Coalescer<I, R, T = AllOrNothing> {
  private queue: Pending<I, R>[] = [];
  private scheduled = false;
  private inFlight = 0;
  /** Conflict keys of the txns in flight, with how many carry each. */
  private readonly keysInFlight = new KeyCounts();
  /** The last flush had items enough but no full batch: the next waits for a txn to return. */
  private noFullBatch = false;

  constructor(
    private readonly send: (items: I[]) => Promise<T>,
    /** The item's result from the txn's outcome; `undefined` = send it again. */
    private readonly settle: (r: T, item: I, index: number, shared: boolean) => R | undefined,
    /** Items with the same conflict key never share a txn. */
    private readonly conflictKey: (item: I) => string,
    /** etcd refuses txns with more than --max-txn-ops (default 128) operations per branch. */
    private readonly maxBatch: number,
    /**
     * Txns in flight at once. While `partial` are, new items queue and go together when
     * one returns (group commit): under load the batches grow with the round-trip time,
     * while a lone request never waits for anything. A full batch goes while fewer than
     * `full` are in flight.
     */
    private readonly maxInFlight: { partial: number; full: number },
  ) {}

  submit(item: I): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    const { partial, full } = this.maxInFlight;
    const fullMayGo = !this.noFullBatch && this.queue.length >= this.maxBatch && this.inFlight < full;
    if (this.inFlight >= partial && !fullMayGo) return;
    this.scheduled = true;
    nextTurn(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    // etcd rejects a txn that names one key twice: such items go in different txns.
    const batches: { items: Pending<I, R>[] }[] = [];
    const slots = Math.max(this.maxInFlight.full, this.maxInFlight.partial) - this.inFlight;
    // One txn at a time per conflict key (a line's joins reach etcd in the order they
    // came): a key in flight, or in a batch of this flush, waits.
    const taken = new Set(this.keysInFlight.keys());
    for (const p of this.queue) {
      const key = this.conflictKey(p.item);
      if (taken.has(key)) continue;
      let batch = batches.find((b) => b.items.length < this.maxBatch);
      if (!batch && batches.length < slots) {
        batch = { items: [] };
        batches.push(batch);
      }
      if (!batch) continue;
      taken.add(key);
      batch.items.push(p);
    }
    // Full batches go at once; a partial one only while a partial slot is free.
    let partialSlots = this.maxInFlight.partial - this.inFlight;
    const ready = batches.filter((b) => b.items.length >= this.maxBatch || partialSlots-- > 0);
    // Enough items for a full batch, but too many of one line to make one: trying again
    // on every arrival would scan the queue each time for nothing; a returning txn retries.
    this.noFullBatch = this.queue.length >= this.maxBatch && !batches.some((b) => b.items.length >= this.maxBatch);
    const sent = new Set(ready.flatMap((b) => b.items));
    // What stays keeps its order: items of one line are sent in the order they came.
    this.queue = this.queue.filter((p) => !sent.has(p));
    for (const b of ready) void this.run(b.items);
  }

  private async run(batch: Pending<I, R>[]): Promise<void> {
    let r: T;
    this.inFlight++;
    const keys = batch.map((p) => this.conflictKey(p.item));
    for (const k of keys) this.keysInFlight.add(k);
    try {
      r = await this.send(batch.map((p) => p.item));
    } catch (err) {
      // A lease that just expired fails the whole txn, and etcd then wrote nothing: send
      // each item alone so only that one fails. Any other error leaves the outcome unknown
      // (the txn may have been applied and its answer lost): resending would find the
      // items' own keys and take them for someone else's.
      if (batch.length > 1 && err instanceof LeaseNotFoundError) {
        for (const p of batch) void this.run([p]);
      } else {
        for (const p of batch) p.reject(err);
      }
      return;
    } finally {
      this.inFlight--;
      for (const k of keys) this.keysInFlight.remove(k);
      this.noFullBatch = false;
      if (this.queue.length > 0) this.schedule();
    }
    const shared = batch.length > 1;
    batch.forEach((p, i) => {
      const result = this.settle(r, p.item, i, shared);
      if (result === undefined) this.queue.push(p);
      else p.resolve(result);
    });
    if (this.queue.length > 0) this.schedule();
  }
}
