import type { EtcdClient } from "../../etcd/types.js";
import type { Waits } from "./waits.js";

/**
 * Every waiter opens its own etcd watch, closed at its first DELETE. For Workers, where
 * I/O started by one request cannot be awaited by another (the runtime cancels it as
 * hung), so the shared watch Node uses (shared-watches.ts) is not possible there. Every
 * release wakes all of the instance's waiters; one wins the create txn.
 */
export class WatchPerWaiter implements Waits {
  private readonly waiting = new Map<string, number>();

  constructor(private readonly etcd: EtcdClient) {}

  hasWaiters(key: string): boolean {
    return (this.waiting.get(key) ?? 0) > 0;
  }

  async wait(key: string, from: number, signal: AbortSignal): Promise<"wake" | "aborted"> {
    if (signal.aborted) return "aborted";
    this.waiting.set(key, (this.waiting.get(key) ?? 0) + 1);
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
      const left = (this.waiting.get(key) ?? 1) - 1;
      if (left > 0) this.waiting.set(key, left);
      else this.waiting.delete(key);
    }
  }

  /** Every waiter was woken by the DELETE already. */
  passOn(): void {}
}
