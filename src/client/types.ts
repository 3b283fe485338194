/**
 * The shapes of the service's answers, written out as plain types so the published client
 * (its `.d.ts` files) refers to nothing outside itself: no zod, no server modules.
 * test/client/types.test.ts checks at type-check time that each one is exactly the
 * output type of the server's schema for it, so the two cannot drift apart.
 */

/** The stable `code`s of the problems the service sends. */
export type ProblemCode =
  | "invalid-request"
  | "bad-request"
  | "unauthorized"
  | "forbidden"
  | "lock-not-found"
  | "state-not-found"
  | "not-found"
  | "method-not-allowed"
  | "request-timeout"
  | "lock-held"
  | "limit-mismatch"
  | "fence-stale"
  | "lock-lost"
  | "payload-too-large"
  | "unsupported-media-type"
  | "idempotency-key-mismatch"
  | "too-many-waiters"
  | "too-many-streams"
  | "headers-too-large"
  | "internal-error"
  | "backend-unavailable";

/** What acquire and renew return: `token` is the fencing token, `lease` the holder's secret. */
export interface Grant {
  name: string;
  /** Fencing token: the etcd revision that created the lock key. Strictly increases across grants. */
  token: number;
  /** Secret handle for renew and release. */
  lease: string;
  /** TTL etcd granted, in seconds. */
  ttl: number;
  /** Server-clock estimate of the expiry (ISO 8601); count from your own send time. */
  expiresAt: string;
  owner?: string | undefined;
  /** The value the holder publishes. */
  value?: string | undefined;
}

/** A semaphore's grant: one permit, with its own fencing token, and the semaphore's `limit`. */
export interface Permit extends Grant {
  /** How many may hold the semaphore at once. */
  limit: number;
}

/**
 * A place in line, kept across requests (answered instead of a grant to an acquire with
 * `queue: true`): `position` waiters ahead (next in line = 0), kept `ttl` s without being
 * redeemed. `ticket` is a secret like a lease: redeem it, or leave the line with it.
 */
export interface Ticket {
  ticket: string;
  position: number;
  ttl: number;
}

/**
 * A fence check's answer when the token is current: `token` is the current holder's (for
 * a semaphore, a current permit's) fencing token.
 */
export interface Fence {
  name: string;
  token: number;
  current: true;
}

/**
 * A lock's (or semaphore's) guarded state: a value that outlives the grants, written only
 * by a current holder. `token` is the fencing token of the grant that wrote it.
 */
export interface State {
  value: string;
  /** The fencing token of the grant that wrote it. */
  token: number;
  /** The etcd revision it was written at. */
  revision: number;
  /** When it was written (the service's clock, ISO 8601). */
  updatedAt: string;
}

/** What anyone may see about a held lock (no lease). `ttl` is the remaining seconds. */
export interface LockInfo {
  name: string;
  /** The holder's fencing token. */
  token: number;
  /** Remaining seconds. */
  ttl: number;
  expiresAt: string;
  owner?: string | undefined;
  /** The value the holder publishes. */
  value?: string | undefined;
  /** Callers in line for the lock; absent when none. */
  waiters?: number | undefined;
  /** The etcd revision this answer was read at (single-lock reads only). */
  index?: number | undefined;
}

/** A page of held locks; `cursor` is present when more remain. */
export interface LockList {
  items: LockInfo[];
  cursor?: string | undefined;
}

/** One holder of a semaphore, as anyone may see it (never its lease). */
export interface SemaphoreHolder {
  token: number;
  /** Remaining seconds. */
  ttl: number;
  expiresAt: string;
  owner?: string | undefined;
  value?: string | undefined;
}

/** What anyone may see about a semaphore: its holders (oldest first, no leases) and how many wait. */
export interface SemaphoreInfo {
  name: string;
  limit: number;
  holders: SemaphoreHolder[];
  /** Callers in line behind the holders (waiting acquires and tickets). */
  waiters: number;
  /** The etcd revision this answer was read at (single-semaphore reads only). */
  index?: number | undefined;
}

/** A page of semaphores with holders; `cursor` is present when more remain. */
export interface SemaphoreList {
  items: SemaphoreInfo[];
  cursor?: string | undefined;
}

/** Who holds a lock, as a 409 `lock-held` problem reports it. */
export interface Holder {
  owner?: string | undefined;
  token: number;
  expiresAt: string;
}

/** An RFC 9457 problem body as the service sends it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** Stable machine-readable code (see `ProblemCode`). */
  code: string;
  /** invalid-request: each value that was wrong or unknown, at most 20. */
  errors?: { field: string; message: string }[] | undefined;
  /** lock-held: the lock's holder (absent for a semaphore). */
  holder?: Holder | undefined;
  /** lock-held after a `wait`: the waiters that were still ahead when it gave up. */
  position?: number | undefined;
  /** lock-held with nobody holding: the lock's last grant ended without a release within its lockDelay. */
  reason?: "lock-delay" | undefined;
  /** limit-mismatch: the limit the semaphore's holders took it with. */
  limit?: number | undefined;
  /** fence-stale (locks): the current holder's token; absent when free. */
  current?: number | undefined;
  /** fence-stale (semaphores): the current permits' tokens. */
  holders?: number[] | undefined;
  [extension: string]: unknown;
}
