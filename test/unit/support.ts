/**
 * The fast unit tier: every file under test/unit/ runs against FakeEtcd
 * (test/support/fake-etcd.ts), starts no etcd or server, uses no fixed sleeps, and takes
 * well under a second. Run them alone with `npx vitest run test/unit`.
 */
import { onTestFinished, vi } from "vitest";
import { createLocks, type Locks, type LocksOptions, workerStrategies } from "../../src/lock/index.js";
import { parseHandle } from "../../src/lock/names.js";
import { FakeEtcd } from "../support/fake-etcd.js";

/**
 * A LockService on a fresh FakeEtcd, with `Date.now` reading the fake's clock so that the
 * service's own time (pool ages, expiry estimates, wait deadlines) and etcd's lease
 * deadlines move together under `fake.advance(ms)`.
 */
export function fakeLocks(
  /** `worker`: the strategies the Worker entry chooses (no I/O shared across requests). */
  { worker = false, ...o }: Partial<LocksOptions> & { worker?: boolean } = {},
  /** Another instance on the same etcd: pass the first one's fake. */
  fake = new FakeEtcd(),
): { fake: FakeEtcd; locks: Locks } {
  const now = vi.spyOn(Date, "now").mockImplementation(() => fake.now());
  onTestFinished(() => now.mockRestore());
  const locks = createLocks(fake, {
    prefix: "t/",
    maxWaiters: 100,
    ...(worker ? { strategies: workerStrategies } : {}),
    ...o,
  });
  return { fake, locks };
}

/**
 * Resolves after everything already queued has run: microtasks (the fake's watch
 * deliveries, fire-and-forget revokes) and the current turn's setImmediate callbacks
 * (the txn coalescer's flush).
 */
export function settled(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** The lease ID in a grant's handle. */
export function leaseOf(handle: string): bigint {
  const h = parseHandle(handle);
  if (!h) throw new Error("not a lease handle");
  return h.lease;
}
