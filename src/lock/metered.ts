import type { Metrics } from "../metrics.js";
import { LockHeld, LockLost } from "./errors.js";
import type { AcquireOptions, Ended, Locks } from "./types.js";

/** The lock operations, counted: outcomes, wait times and hold times. */
export function metered(locks: Locks, metrics: Metrics): Locks {
  const held = (ended: Ended) => {
    if (ended.grantedAt !== undefined) metrics.held(Math.max(0, Date.now() - ended.grantedAt) / 1000);
  };
  return {
    get activeWaiters() {
      return locks.activeWaiters;
    },
    sweepLeases: () => locks.sweepLeases(),
    close: () => locks.close(),
    inspect: (name) => locks.inspect(name),
    list: (o) => locks.list(o),

    async acquire(name: string, o: AcquireOptions) {
      const started = performance.now();
      const waited = () => {
        if (o.wait > 0) metrics.waited((performance.now() - started) / 1000);
      };
      try {
        const acquired = await locks.acquire(name, o);
        waited();
        metrics.acquire("granted", name);
        return acquired;
      } catch (err) {
        if (err instanceof LockHeld) waited();
        metrics.acquire(err instanceof LockHeld ? (o.wait > 0 ? "timeout" : "held") : "error", name);
        throw err;
      }
    },

    async renew(name, handle) {
      try {
        const grant = await locks.renew(name, handle);
        metrics.renew("renewed", name);
        return grant;
      } catch (err) {
        metrics.renew(err instanceof LockLost ? "lost" : "error", name);
        throw err;
      }
    },

    async release(name, handle) {
      try {
        const ended = await locks.release(name, handle);
        metrics.release("released", name);
        held(ended);
        return ended;
      } catch (err) {
        metrics.release(err instanceof LockLost ? "lost" : "error", name);
        throw err;
      }
    },

    async forceRelease(name) {
      const ended = await locks.forceRelease(name);
      if (ended) {
        metrics.release("forced", name);
        held(ended);
      }
      return ended;
    },
  };
}
