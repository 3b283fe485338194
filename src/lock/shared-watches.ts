import type { EtcdClient } from "../etcd/types.js";

interface Waiter {
  wake(): void;
  /** The shared watch failed (etcd unreachable). */
  fail(err: unknown): void;
}

interface KeyWatch {
  /** Every DELETE of the key before this revision has reached the watch (moves past each one). */
  from: number;
  queue: Waiter[];
  stop: AbortController;
  /** Closes the watch when it has had no waiters for `lingerMs`. */
  idle?: ReturnType<typeof setTimeout>;
}

/**
 * One long-lived etcd watch per lock key per instance, shared by all of this instance's
 * waiters for that key. Each DELETE wakes only the longest-waiting waiter, so a release
 * sends one acquire attempt per instance to etcd instead of one per waiter (no thundering
 * herd of failed transactions). A woken waiter that leaves without taking the lock passes
 * the wake-up on (`passOn`), so a free lock is never left with sleeping waiters.
 *
 * The watch stays open while the key has waiters and `lingerMs` after the last one left.
 * etcd sends an open watch each DELETE as it commits; a watch opened from a revision etcd
 * has already passed is only caught up by etcd's background sync, every 100 ms, which a
 * watch reopened per release would pay on every handoff of a busy etcd.
 */
export class SharedWatches {
  private readonly watches = new Map<string, KeyWatch>();
  /** Waiters per key when not sharing. */
  private readonly solo = new Map<string, number>();

  /**
   * `share` false gives every waiter its own watch, closed at its first DELETE: on
   * Workers, I/O started by one request cannot be awaited by another (the runtime cancels
   * it as hung).
   */
  constructor(
    private readonly etcd: EtcdClient,
    private readonly share = true,
    private readonly lingerMs = 1_000,
  ) {}

  /** Whether this instance has waiters for `key` (i.e. the lock is contended here). */
  hasWaiters(key: string): boolean {
    return (this.watches.get(key)?.queue.length ?? 0) > 0 || (this.solo.get(key) ?? 0) > 0;
  }

  /**
   * Resolves "wake" when the waiter should read the key again: a DELETE at or after
   * `from` reached it, or the shared watch already moved past `from` (a DELETE it
   * cannot replay to this waiter may have happened since the waiter's read). Resolves
   * "aborted" when `signal` fires first. Rejects when the watch fails (etcd down).
   */
  wait(key: string, from: number, signal: AbortSignal): Promise<"wake" | "aborted"> {
    if (signal.aborted) return Promise.resolve("aborted");
    if (!this.share) return this.waitAlone(key, from, signal);
    const existing = this.watches.get(key);
    if (existing && from < existing.from) return Promise.resolve("wake");
    const w = existing ?? { from, queue: [], stop: new AbortController() };
    clearTimeout(w.idle);
    const started = new Promise<"wake" | "aborted">((resolve, reject) => {
      const waiter: Waiter = {
        wake: () => {
          signal.removeEventListener("abort", onAbort);
          resolve("wake");
        },
        fail: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        const i = w.queue.indexOf(waiter);
        if (i >= 0) w.queue.splice(i, 1);
        if (w.queue.length === 0) this.linger(key, w);
        resolve("aborted");
      };
      signal.addEventListener("abort", onAbort, { once: true });
      w.queue.push(waiter);
    });
    if (!existing) {
      this.watches.set(key, w);
      void this.run(key, w);
    }
    return started;
  }

  private async waitAlone(key: string, from: number, signal: AbortSignal): Promise<"wake" | "aborted"> {
    this.solo.set(key, (this.solo.get(key) ?? 0) + 1);
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let deleted = false;
    try {
      const end = await this.etcd.watchDeletes(
        key,
        from,
        () => {
          deleted = true;
          stop.abort();
        },
        stop.signal,
      );
      return deleted || end === "compacted" ? "wake" : "aborted";
    } finally {
      signal.removeEventListener("abort", onAbort);
      const left = (this.solo.get(key) ?? 1) - 1;
      if (left > 0) this.solo.set(key, left);
      else this.solo.delete(key);
    }
  }

  /** Wakes the next waiter for `key`, if any (the previous one left without the lock). */
  passOn(key: string): void {
    this.watches.get(key)?.queue.shift()?.wake();
  }

  private linger(key: string, watch: KeyWatch): void {
    clearTimeout(watch.idle);
    watch.idle = setTimeout(() => {
      if (watch.queue.length > 0) return;
      // Out of the map first: a waiter arriving now must not join a watch being closed.
      if (this.watches.get(key) === watch) this.watches.delete(key);
      watch.stop.abort();
    }, this.lingerMs);
  }

  private async run(key: string, watch: KeyWatch): Promise<void> {
    try {
      const end = await this.etcd.watchDeletes(
        key,
        watch.from,
        (revision) => {
          watch.from = revision + 1;
          const next = watch.queue.shift();
          if (!next) return;
          next.wake();
          if (watch.queue.length === 0) this.linger(key, watch);
        },
        watch.stop.signal,
      );
      // History is gone: everyone re-reads the key and waits again from there.
      if (end === "compacted") for (const w of watch.queue.splice(0)) w.wake();
    } catch (err) {
      for (const w of watch.queue.splice(0)) w.fail(err);
    } finally {
      clearTimeout(watch.idle);
      if (this.watches.get(key) === watch) this.watches.delete(key);
    }
  }
}
