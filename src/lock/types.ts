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
  /** The value the holder publishes. */
  value?: string;
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
  /** The value the holder publishes. */
  value?: string;
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
  /** Published while the grant holds (a waiter publishes it at its turn). */
  value?: string;
  /** Seconds to wait for the grant; fractions allowed. */
  wait: number;
  /** Holders allowed at once: 1 for a lock, the limit for a semaphore. */
  limit: number;
  /** When not granted within `wait`, keep a place in line (answer a Ticket) instead of refusing. */
  queue?: boolean;
  /** A ticket's time to live without being redeemed, seconds. */
  ticketTtl?: number;
  /**
   * Locks only: when this grant ends without a clean release (its lease expires, or an
   * admin forces it), nobody is granted the lock for this many (whole) seconds.
   */
  lockDelay?: number;
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
  value?: string;
  limit?: number;
  lockDelay?: number;
  signal?: AbortSignal;
}

export interface RenewOptions {
  /** Replaces the published value (absent: keeps it). */
  value?: string;
}

export type Acquired =
  | {
      grant: Grant;
      /** The same grant again: an Idempotency-Key retry, or a ticket redeemed twice. */
      replayed: boolean;
    }
  | { ticket: Ticket };

/** A line's guarded state, as written by a holder. */
export interface StateView {
  value: string;
  /** The fencing token of the grant that wrote it. */
  token: number;
  /** The etcd revision it was written at. */
  revision: number;
  /** When it was written, by the writing instance's clock (informational). */
  updatedAt: string;
}

/** A grant that ended by release or force: when it was made (ms), for the hold-time metric. */
export interface Ended {
  grantedAt?: number;
}

export interface ReadOptions {
  /** Wait for a change of the line after this etcd revision (an earlier answer's `index`). */
  after?: number;
  /** Seconds to wait for it (fractions allowed); then the state as it is. */
  wait?: number;
  /** Fires when the caller has gone away. */
  signal?: AbortSignal;
}

/** A line as one read found it. */
export interface LineState {
  /** Absent when nobody holds it. */
  info?: LineInfo;
  /**
   * The etcd revision the state was read at: the line was exactly this then, and every
   * later change of it (any of its keys put or deleted) happens at a larger revision.
   */
  index: number;
}

/** What a stream of holder changes covers (see feed.ts). */
export interface FeedOptions {
  kinds: readonly LineKind[];
  /** Names under this prefix ("" = all)... */
  prefix: string;
  /** ...that the caller may see: its allowed name prefixes. */
  within: readonly string[];
  /** Resume after this etcd revision (an earlier event's id); absent: start from the current holders. */
  after?: number;
  /** Fires when the caller has gone away: the feed ends. */
  signal: AbortSignal;
  /**
   * A feed whose `alive()` was not called for this long stops counting against the cap:
   * a runtime may drop a feed without running its clean-up (Workers cancel the tasks of
   * a request whose caller went away once its response is streaming). Absent: counts
   * until closed.
   */
  staleAfterMs?: number;
}

/** One change of a holder (or, for `reset`, the start of a full state). */
export type FeedEvent =
  | {
      event: "held";
      kind: LineKind;
      name: string;
      token: number;
      owner?: string;
      value?: string;
      /** The TTL the grant was given, seconds. */
      ttl: number;
    }
  | { event: "free"; kind: LineKind; name: string; token: number }
  | { event: "reset"; index: number; reason: "start" | "compacted" | "ahead" };

/** The events of one etcd revision, in order. */
export interface FeedBatch {
  revision: number;
  events: FeedEvent[];
}

/** An open stream of holder changes; holds one of the instance's stream places until closed. */
export interface Feed {
  /** What to send first: a reset and the current holders, when the feed starts from them. */
  readonly first: FeedBatch | undefined;
  /**
   * Reports each later revision's events, in order, none twice; resolves when the feed's
   * signal fires (or the instance shuts down), rejects when etcd fails.
   */
  run(onBatch: (batch: FeedBatch) => void): Promise<void>;
  /** Ends the feed and gives back its place (idempotent). */
  close(): void;
  /** The feed is still being served (see `FeedOptions.staleAfterMs`). */
  alive(): void;
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
  /** Keeps the grant; with `value`, replaces the value it publishes first. */
  renew(line: LineRef, handle: string, o?: RenewOptions): Promise<Grant>;
  release(line: LineRef, handle: string): Promise<Ended>;
  /**
   * Admin release regardless of holder: the oldest holder, or the one with `token`;
   * `undefined` when nothing (or no such holder) was held.
   */
  forceRelease(line: LineRef, token?: number): Promise<Ended | undefined>;
  /** `undefined` when the line has no holder. */
  inspect(line: LineRef): Promise<LineInfo | undefined>;
  /** Whether `token` is a current holder's (a linearizable read); FenceStale when not. */
  fence(line: LineRef, token: number): Promise<void>;
  /**
   * Writes the line's state in the txn that proves the handle's grant is current
   * (LockLost otherwise, nothing written).
   */
  writeState(line: LineRef, handle: string, value: string): Promise<StateView>;
  /** The line's state; StateNotFound when none was ever written. */
  readState(line: LineRef): Promise<StateView>;
  /**
   * The line's state and the revision it was read at; with `after` and `wait`, first
   * waits until the line changed after that revision (at most `wait` seconds).
   */
  read(line: LineRef, o?: ReadOptions): Promise<LineState>;
  /**
   * A stream of holder changes of the lines `o` covers; its first read is done when this
   * resolves. Rejects with TooManyStreams at this instance's cap.
   */
  openFeed(o: FeedOptions): Promise<Feed>;
  /** Lines with holders, in name order within the caller's scopes, starting after `after`. */
  list(kind: LineKind, o: ListOptions): Promise<{ items: LineInfo[]; next?: string }>;
  readonly activeWaiters: number;
  /** Blocking reads waiting in this instance. */
  readonly activeReads: number;
  /** Open feeds (event streams) in this instance. */
  readonly activeFeeds: number;
  /** Hands back leases nobody reused (Node also calls it on a timer, for idle instances). */
  sweepLeases(): void;
  /** Shutdown: revokes the leases kept for reuse and the waiters' session. */
  close(): Promise<void>;
}

export interface EngineOptions {
  /** etcd key prefix under which every line lives. */
  prefix: string;
  /** Cap on concurrent waiting acquires in this instance (and, separately, on blocking reads). */
  maxWaiters: number;
  /** Cap on open feeds (event streams) in this instance (default 1000). */
  maxFeeds?: number;
  /** Fires when the instance shuts down: waiters give up at once (ShuttingDown). */
  shutdownSignal?: AbortSignal;
}
