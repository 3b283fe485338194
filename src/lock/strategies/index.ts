import type { EtcdClient } from "../../etcd/types.js";
import { coalescedTxns, type SingleKeyTxns, singleTxns } from "./group-commit.js";
import { type LeaseSource, PooledLeases } from "./lease-pool.js";
import { ChangesPerReader, type LineChanges, SharedLineChanges } from "./line-changes.js";
import { LineViewPerWaiter, type LineWaits, SharedLineViews } from "./line-views.js";
import { type LocalHandoff, LocalWaiters, NoLocalHandoff } from "./local-handoff.js";
import { LeasePerWaiter, type QueueLeases, SessionLease } from "./queue-leases.js";

/**
 * The performance mechanisms the engine is given. The protocol (engine.ts) is the same
 * whichever are chosen; each strategy's file says what it saves and why.
 */
export interface Strategies {
  /** Where grants' leases come from and go back to (pooling saves two raft writes per cycle). */
  leases: LeaseSource;
  /** How txns reach etcd (group commit coalesces concurrent ones). */
  txns: SingleKeyTxns;
  /** How waiters learn their turn came (one copy of a line per instance, or per waiter). */
  waits: LineWaits;
  /** The short leases waiters' places are bound to (one per instance, or per waiter). */
  queue: QueueLeases;
  /** How blocking reads learn their line changed (one watch per line per instance, or per reader). */
  changes: LineChanges;
  /** Who may be handed the turn by a release on this instance (its own waiters, or nobody). */
  handoff<W, O>(): LocalHandoff<W, O>;
}

/**
 * Node: one process serves many requests, so they can share I/O. `sessionIdleMs`: how
 * long the waiters' session lease outlives its last waiter (SessionLease).
 */
export function nodeStrategies(etcd: EtcdClient, o: { sessionIdleMs?: number } = {}): Strategies {
  return {
    leases: new PooledLeases(etcd),
    txns: coalescedTxns(etcd),
    waits: new SharedLineViews(etcd),
    queue: new SessionLease(etcd, o.sessionIdleMs),
    changes: new SharedLineChanges(etcd),
    handoff: () => new LocalWaiters(),
  };
}

/** Workers: I/O started by one request cannot be awaited by another (the runtime cancels it as hung). */
export function workerStrategies(etcd: EtcdClient): Strategies {
  return {
    leases: new PooledLeases(etcd),
    txns: singleTxns(etcd),
    waits: new LineViewPerWaiter(etcd),
    queue: new LeasePerWaiter(etcd),
    changes: new ChangesPerReader(etcd),
    handoff: () => new NoLocalHandoff(),
  };
}
