/**
 * How a waiting acquire learns that the lock it waits for may have been released. The
 * engine reads the key, finds it held at some revision, and waits from that revision
 * + 1: etcd replays every DELETE since, so a release between the read and the wait is
 * never missed.
 */
export interface Waits {
  /** Whether this instance has waiters for `key` (i.e. the lock is contended here). */
  hasWaiters(key: string): boolean;
  /**
   * Resolves "wake" when the waiter should try again: a DELETE of `key` at or after
   * `from`, or something it cannot replay may have happened since. Resolves "aborted"
   * when `signal` fires first. Rejects when etcd cannot be watched (unavailable).
   */
  wait(key: string, from: number, signal: AbortSignal): Promise<"wake" | "aborted">;
  /** A woken waiter left without the lock: wake the next one, if any. */
  passOn(key: string): void;
}
