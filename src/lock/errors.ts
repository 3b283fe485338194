/**
 * What the lock engine reports when it cannot do what was asked. Plain domain errors:
 * the HTTP layer alone decides their status codes, problem bodies and headers.
 */

/** Base of every refusal the engine makes (anything else is a fault). */
export class LockError extends Error {}

/** What others may know about the grant that holds a lock. */
export interface HolderInfo {
  owner?: string;
  token: number;
  expiresAt: string;
}

/** Someone else holds the lock, or the semaphore is full (after any wait). */
export class LockHeld extends LockError {
  override name = "LockHeld";
  constructor(
    /** "lock NAME" or "semaphore NAME". */
    readonly what: string,
    /** The oldest holder; absent for a semaphore. */
    readonly holder: HolderInfo | undefined,
    /** Whole seconds until a holder's lease runs out, at least 1. */
    readonly retryAfter: number,
    /** Waiters that were ahead when a waiting acquire gave up. */
    readonly position?: number,
    /** Why nobody could take it although nobody holds it. */
    readonly reason?: "lock-delay",
  ) {
    super(
      reason === "lock-delay"
        ? `${what} is in its lock-delay: its last grant ended without a release (it expired or was forced), ` +
            `so it is granted to nobody for a while; retry in ${retryAfter} s`
        : holder
          ? `${what} is held by ${holder.owner === undefined ? "another holder" : JSON.stringify(holder.owner)}`
          : what.startsWith("lock ")
            ? `${what} is held`
            : `${what} has no free permit`,
    );
  }
}

/** The fencing token sent is not a current holder's. */
export class FenceStale extends LockError {
  override name = "FenceStale";
  constructor(
    readonly what: string,
    readonly token: number,
    /** The current holders' tokens, oldest first (empty when nobody holds it). */
    readonly current: number[],
  ) {
    super(
      current.length === 0
        ? `token ${token} is not current: nobody holds ${what}`
        : `token ${token} is not current: ${what} is held with ${current.length === 1 ? "token" : "tokens"} ${current.join(", ")}`,
    );
  }
}

/** Nothing was ever written as the line's guarded state. */
export class StateNotFound extends LockError {
  override name = "StateNotFound";
  constructor(readonly what: string) {
    super(`${what} has no state: no holder has written one`);
  }
}

/** The caller asked for a semaphore with another limit than its holders'. */
export class LimitMismatch extends LockError {
  override name = "LimitMismatch";
  constructor(
    readonly what: string,
    /** The holders' limit. */
    readonly limit: number,
    sent: number,
  ) {
    super(`${what} has limit ${limit}, got ${sent}; every caller of one semaphore must send the same limit`);
  }
}

/** A ticket redeem sent ttl, owner or limit other than the ticket was taken with. */
export class TicketMismatch extends LockError {
  override name = "TicketMismatch";
}

/** The handle no longer names the lock's grant (expired, released, or someone else's now). */
export class LockLost extends LockError {
  override name = "LockLost";
  constructor(
    /** "lock NAME" or "semaphore NAME". */
    readonly what: string,
    message = `${what} is not held with this lease: it expired, was released, or now belongs to someone else`,
  ) {
    super(message);
  }
}

/** The ticket is not in line any more (not redeemed within its TTL, or it left). */
export function ticketLost(what: string): LockLost {
  return new LockLost(what, `this ticket is no longer in line for ${what}: it expired or left`);
}

/** This instance's cap on concurrent waiting acquires is reached. */
export class TooManyWaiters extends LockError {
  override name = "TooManyWaiters";
  constructor(
    readonly limit: number,
    message = `this instance already has ${limit} waiting acquires; retry later or with a shorter wait`,
  ) {
    super(message);
  }
}

/** This instance's cap on open event streams is reached. */
export class TooManyStreams extends LockError {
  override name = "TooManyStreams";
  constructor(readonly limit: number) {
    super(`this instance already serves ${limit} event streams; retry later or on another instance`);
  }
}

/** The instance is shutting down: a waiter is let go so another instance can serve it. */
export class ShuttingDown extends LockError {
  override name = "ShuttingDown";
  constructor() {
    super("this instance is shutting down; retry (another instance will serve you)");
  }
}

/** The caller reused its Idempotency-Key with other request fields. */
export class IdempotencyKeyMismatch extends LockError {
  override name = "IdempotencyKeyMismatch";
  constructor() {
    super(
      "this Idempotency-Key was used with other request fields (ttl or owner); use a new key for a different request",
    );
  }
}

/** The key under a lock name has no lease: something other than leasehold wrote it. */
export class ForeignKey extends LockError {
  override name = "ForeignKey";
  constructor(readonly what: string) {
    super(`a key of ${what} has no lease; it was not written by leasehold`);
  }
}

/** The caller hung up; nobody will read the answer. */
export class CallerGone extends LockError {
  override name = "CallerGone";
  constructor(message = "the caller went away", options?: { cause?: unknown }) {
    super(message, options);
  }
}
