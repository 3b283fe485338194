import type { EtcdClient } from "../etcd/types.js";

interface Waiter {
  wake(): void;
  /** The shared watch failed (etcd unreachable). */
  fail(err: unknown): void;
}

interface KeyWatch {
  /** The revision the running etcd watch started from (moves past each DELETE seen). */
  from: number;
  queue: Waiter[];
  stop: AbortController;
}

/**
 * One etcd watch per lock key per instance, shared by all of this instance's waiters
 * for that key. Each DELETE wakes only the longest-waiting waiter, so a release sends
 * one acquire attempt per instance to etcd instead of one per waiter (no thundering
 * herd of failed transactions). A woken waiter that leaves without taking the lock
 * passes the wake-up on (`passOn`), so a free lock is never left with sleeping waiters.
 */
export class SharedWatches {
  private readonly watches = new Map<string, KeyWatch>();
  /** Waiters per key when not sharing. */
  private readonly solo = new Map<string, number>();

  /**
   * `share` false gives every waiter its own watch: on Workers, I/O started by one
   * request cannot be awaited by another (the runtime cancels it as hung).
   */
  constructor(
    private readonly etcd: EtcdClient,
    private readonly share = true,
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
        if (w.queue.length === 0) w.stop.abort();
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
    try {
      const r = await this.etcd.watchDelete(key, from, signal);
      return r.outcome === "aborted" ? "aborted" : "wake";
    } finally {
      const left = (this.solo.get(key) ?? 1) - 1;
      if (left > 0) this.solo.set(key, left);
      else this.solo.delete(key);
    }
  }

  /** Wakes the next waiter for `key`, if any (the previous one left without the lock). */
  passOn(key: string): void {
    this.watches.get(key)?.queue.shift()?.wake();
  }

  private async run(key: string, watch: KeyWatch): Promise<void> {
    try {
      while (watch.queue.length > 0) {
        const r = await this.etcd.watchDelete(key, watch.from, watch.stop.signal);
        if (r.outcome === "aborted") break;
        if (r.outcome === "compacted") {
          // History is gone: everyone re-reads the key and waits again from there.
          for (const w of watch.queue.splice(0)) w.wake();
          break;
        }
        watch.from = r.revision + 1;
        watch.queue.shift()?.wake();
      }
    } catch (err) {
      for (const w of watch.queue.splice(0)) w.fail(err);
    } finally {
      if (this.watches.get(key) === watch) this.watches.delete(key);
    }
  }
}
