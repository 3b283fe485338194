/**
 * The coordination engine's vocabulary: what callers pass in and get back.
 *
 * Every primitive is a *line* per name: an ordered set of participants in etcd, oldest
 * first (by the revision etcd recorded their joins). The first `limit` hold; the rest wait
 * in order. A lock is a line of limit 1; a semaphore, of its limit. A participant that
 * waits is a *waiter* (kept by the waiting request) or a *ticket* (a place kept across
 * requests by a caller who comes back).
 */

export type LineKind = "lock" | "semaphore";

/** Which line: locks and semaphores of one name are different lines. */
export interface LineRef {
  kind: LineKind;
  name: string;
}

/** What acquire and renew hand to the holder. */
export interface Grant {
  name: string;
  token: number;
  lease: string;
  ttl: number;
  expiresAt: string;
  owner?: string;
  /** Semaphores only: how many may hold at once. */
  limit?: number;
}

/** What anyone may see about one holder: no lease handle. */
export interface HolderView {
  token: number;
  /** Remaining seconds. */
  ttl: number;
  expiresAt: string;
  owner?: string;
}

/** What anyone may see about a line. */
export interface LineInfo {
  name: string;
  limit: number;
  /** Oldest first; at most `limit`. */
  holders: HolderView[];
  /** Participants in line behind the holders (waiters and tickets). */
  waiters: number;
}

/** A place in line, kept across requests. */
export interface Ticket {
  /** The secret that redeems or leaves the place (like a lease handle). */
  ticket: string;
  /** Waiters ahead (holders not counted; first in line = 0). */
  position: number;
  /** Seconds the ticket stays in line without being redeemed. */
  ttl: number;
}

export interface AcquireOptions {
  ttl: number;
  owner?: string;
  /** Seconds to wait for the grant; fractions allowed. */
  wait: number;
  /** Holders allowed at once: 1 for a lock, the limit for a semaphore. */
  limit: number;
  /** When not granted within `wait`, keep a place in line (answer a Ticket) instead of refusing. */
  queue?: boolean;
  /** A ticket's time to live without being redeemed, seconds. */
  ticketTtl?: number;
  idempotencyKey?: string;
  /**
   * Who is calling, as a secret only that caller can present (its API key; "" when auth
   * is off). An Idempotency-Key is bound to it: another caller's key is unknown here.
   */
  caller?: string;
  /** Fires when the caller has gone away. */
  signal?: AbortSignal;
}

export interface RedeemOptions {
  /** Seconds to wait for the ticket to reach its turn; fractions allowed. */
  wait: number;
  /** Fields the caller sent again with the ticket: they must match the ticket's. */
  ttl?: number;
  owner?: string;
  limit?: number;
  signal?: AbortSignal;
}

export type Acquired =
  | {
      grant: Grant;
      /** The same grant again: an Idempotency-Key retry, or a ticket redeemed twice. */
      replayed: boolean;
    }
  | { ticket: Ticket };

/** A grant that ended by release or force: when it was made (ms), for the hold-time metric. */
export interface Ended {
  grantedAt?: number;
}

export interface ListOptions {
  prefix: string;
  /** The caller's allowed name prefixes. */
  within: readonly string[];
  limit: number;
  /** Start after this name. */
  after?: string;
}

/** The operations the HTTP layer uses (the engine, or the engine with metrics). */
export interface Lines {
  acquire(line: LineRef, o: AcquireOptions): Promise<Acquired>;
  /** Comes back with a ticket: a grant at its turn, else the ticket's new position. */
  redeem(line: LineRef, ticket: string, o: RedeemOptions): Promise<Acquired>;
  /** Gives up a ticket's place (or ends the grant it became). */
  leave(line: LineRef, ticket: string): Promise<void>;
  renew(line: LineRef, handle: string): Promise<Grant>;
  release(line: LineRef, handle: string): Promise<Ended>;
  /**
   * Admin release regardless of holder: the oldest holder, or the one with `token`;
   * `undefined` when nothing (or no such holder) was held.
   */
  forceRelease(line: LineRef, token?: number): Promise<Ended | undefined>;
  /** `undefined` when the line has no holder. */
  inspect(line: LineRef): Promise<LineInfo | undefined>;
  /** Lines with holders, in name order within the caller's scopes, starting after `after`. */
  list(kind: LineKind, o: ListOptions): Promise<{ items: LineInfo[]; next?: string }>;
  readonly activeWaiters: number;
  /** Hands back leases nobody reused (Node also calls it on a timer, for idle instances). */
  sweepLeases(): void;
  /** Shutdown: revokes the leases kept for reuse and the waiters' session. */
  close(): Promise<void>;
}

export interface EngineOptions {
  /** etcd key prefix under which every line lives. */
  prefix: string;
  /** Cap on concurrent waiting acquires in this instance. */
  maxWaiters: number;
  /** Fires when the instance shuts down: waiters give up at once (ShuttingDown). */
  shutdownSignal?: AbortSignal;
}
