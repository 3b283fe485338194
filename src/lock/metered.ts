import type { AcquireOutcome, Metrics } from "../metrics.js";
import { LimitMismatch, LockHeld, LockLost } from "./errors.js";
import type { Acquired, Ended, LineRef, Lines } from "./types.js";

/**
 * The engine's operations, counted: outcomes per line kind (and name, where the backend
 * is told to label by it), wait times and hold times. Tickets and leases are never
 * passed on: they are secrets, and one label value per ticket would be unbounded.
 */
export function metered(lines: Lines, metrics: Metrics): Lines {
  const held = (ended: Ended) => {
    if (ended.grantedAt !== undefined) metrics.held(Math.max(0, Date.now() - ended.grantedAt) / 1000);
  };

  /** Runs an acquire or a redeem, counting its outcome and, when it could wait, the time it waited. */
  async function counted(line: LineRef, wait: number, run: () => Promise<Acquired>): Promise<Acquired> {
    const started = performance.now();
    const waited = () => {
      if (wait > 0) metrics.waited((performance.now() - started) / 1000);
    };
    try {
      const acquired = await run();
      waited();
      metrics.acquire("grant" in acquired ? "granted" : "queued", line);
      return acquired;
    } catch (err) {
      if (err instanceof LockHeld) waited();
      metrics.acquire(refusal(err, wait), line);
      throw err;
    }
  }

  return {
    get activeWaiters() {
      return lines.activeWaiters;
    },
    get activeReads() {
      return lines.activeReads;
    },
    get activeFeeds() {
      return lines.activeFeeds;
    },
    read: (line, o) => lines.read(line, o),
    openFeed: (o) => lines.openFeed(o),
    sweepLeases: () => lines.sweepLeases(),
    close: () => lines.close(),
    inspect: (line) => lines.inspect(line),
    fence: (line, token) => lines.fence(line, token),
    writeState: (line, handle, value) => lines.writeState(line, handle, value),
    readState: (line) => lines.readState(line),
    list: (kind, o) => lines.list(kind, o),

    acquire: (line, o) => counted(line, o.wait, () => lines.acquire(line, o)),
    redeem: (line, ticket, o) => counted(line, o.wait, () => lines.redeem(line, ticket, o)),

    async leave(line, ticket) {
      try {
        await lines.leave(line, ticket);
        metrics.release("left", line);
      } catch (err) {
        metrics.release(err instanceof LockLost ? "lost" : "error", line);
        throw err;
      }
    },

    async renew(line, handle, o) {
      try {
        const grant = await lines.renew(line, handle, o);
        metrics.renew("renewed", line);
        return grant;
      } catch (err) {
        metrics.renew(err instanceof LockLost ? "lost" : "error", line);
        throw err;
      }
    },

    async release(line, handle) {
      try {
        const ended = await lines.release(line, handle);
        metrics.release("released", line);
        held(ended);
        return ended;
      } catch (err) {
        metrics.release(err instanceof LockLost ? "lost" : "error", line);
        throw err;
      }
    },

    async forceRelease(line, token) {
      const ended = await lines.forceRelease(line, token);
      if (ended) {
        metrics.release("forced", line);
        held(ended);
      }
      return ended;
    },
  };
}

/** How a refused acquire or redeem counts. */
function refusal(err: unknown, wait: number): AcquireOutcome {
  if (err instanceof LockHeld) return wait > 0 ? "timeout" : "held";
  if (err instanceof LimitMismatch) return "limit-mismatch";
  // Only a redeem refuses with LockLost: its ticket is no longer in line.
  if (err instanceof LockLost) return "lost";
  return "error";
}
