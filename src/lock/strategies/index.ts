import type { EtcdClient } from "../../etcd/types.js";
import { coalescedTxns, type SingleKeyTxns, singleTxns } from "./group-commit.js";
import { type LeaseSource, PooledLeases } from "./lease-pool.js";
import { SharedWatches } from "./shared-watches.js";
import type { Waits } from "./waits.js";
import { WatchPerWaiter } from "./watch-per-waiter.js";

/**
 * The performance mechanisms the lock engine is given. The protocol (engine.ts) is the
 * same whichever are chosen; each strategy's file says what it saves and why.
 */
export interface Strategies {
  /** Where grants' leases come from and go back to (pooling saves two raft writes per cycle). */
  leases: LeaseSource;
  /** How create and delete txns reach etcd (group commit coalesces concurrent ones). */
  txns: SingleKeyTxns;
  /** How waiters learn of releases (one shared watch per key, or one per waiter). */
  waits: Waits;
}

/** Node: one process serves many requests, so they can share I/O. */
export function nodeStrategies(etcd: EtcdClient): Strategies {
  return { leases: new PooledLeases(etcd), txns: coalescedTxns(etcd), waits: new SharedWatches(etcd) };
}

/** Workers: I/O started by one request cannot be awaited by another (the runtime cancels it as hung). */
export function workerStrategies(etcd: EtcdClient): Strategies {
  return { leases: new PooledLeases(etcd), txns: singleTxns(etcd), waits: new WatchPerWaiter(etcd) };
}
