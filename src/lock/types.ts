/** The lock engine's vocabulary: what callers pass in and get back. */

/** What acquire and renew hand to the holder. */
export interface Grant {
  name: string;
  token: number;
  lease: string;
  ttl: number;
  expiresAt: string;
  owner?: string;
}

/** What anyone may see about a held lock: no lease handle. */
export interface LockInfo {
  name: string;
  token: number;
  /** Remaining seconds. */
  ttl: number;
  expiresAt: string;
  owner?: string;
}

export interface AcquireOptions {
  ttl: number;
  owner?: string;
  /** Seconds to wait for the lock; fractions allowed. */
  wait: number;
  idempotencyKey?: string;
  /**
   * Who is calling, as a secret only that caller can present (its API key; "" when auth
   * is off). An Idempotency-Key is bound to it: another caller's key is unknown here.
   */
  caller?: string;
  /** Fires when the caller has gone away. */
  signal?: AbortSignal;
}

export interface Acquired {
  grant: Grant;
  /** The same grant again, for a retry with the same Idempotency-Key. */
  replayed: boolean;
}

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

/** The lock operations the HTTP layer uses (the engine, or the engine with metrics). */
export interface Locks {
  acquire(name: string, o: AcquireOptions): Promise<Acquired>;
  renew(name: string, handle: string): Promise<Grant>;
  release(name: string, handle: string): Promise<Ended>;
  /** Admin release regardless of holder; `undefined` when nothing was held. */
  forceRelease(name: string): Promise<Ended | undefined>;
  inspect(name: string): Promise<LockInfo | undefined>;
  list(o: ListOptions): Promise<{ items: LockInfo[]; next?: string }>;
  readonly activeWaiters: number;
  /** Hands back leases nobody reused (Node also calls it on a timer, for idle instances). */
  sweepLeases(): void;
  /** Shutdown: revokes the leases kept for reuse. */
  close(): Promise<void>;
}

export interface EngineOptions {
  /** etcd key prefix under which lock names live. */
  prefix: string;
  /** Cap on concurrent waiting acquires in this instance. */
  maxWaiters: number;
  /** Fires when the instance shuts down: waiters give up at once (ShuttingDown). */
  shutdownSignal?: AbortSignal;
}
