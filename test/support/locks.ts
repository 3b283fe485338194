import type { EtcdClient } from "../../src/etcd/types.js";
import { createLines, type LinesOptions } from "../../src/lock/index.js";
import type { Acquired, AcquireOptions, Grant, LineInfo, Lines } from "../../src/lock/types.js";

/** A lock as the engine's tests used to see it: a line of limit 1, by name. */
export interface LockView {
  name: string;
  token: number;
  ttl: number;
  expiresAt: string;
  owner?: string;
  waiters?: number;
}

/** The engine's lock operations by name (the line kind "lock", limit 1), for tests. */
export interface TestLocks {
  readonly lines: Lines;
  acquire(
    name: string,
    o: Partial<AcquireOptions> & { ttl: number; wait: number },
  ): Promise<{ grant: Grant; replayed: boolean }>;
  renew(name: string, handle: string): Promise<Grant>;
  release(name: string, handle: string): Promise<unknown>;
  forceRelease(name: string): Promise<unknown>;
  inspect(name: string): Promise<LockView | undefined>;
  readonly activeWaiters: number;
  close(): Promise<void>;
}

export function lockView(info: LineInfo | undefined): LockView | undefined {
  const h = info?.holders[0];
  if (!info || !h) return undefined;
  return { name: info.name, ...h, ...(info.waiters > 0 ? { waiters: info.waiters } : {}) };
}

/** A grant, or a failure naming the ticket an acquire answered instead. */
export function grantOf(a: Acquired): { grant: Grant; replayed: boolean } {
  if ("ticket" in a) throw new Error("expected a grant, got a ticket");
  return a;
}

export function locksOver(lines: Lines): TestLocks {
  const ref = (name: string) => ({ kind: "lock" as const, name });
  return {
    lines,
    acquire: async (name, o) => grantOf(await lines.acquire(ref(name), { limit: 1, ...o })),
    renew: (name, handle) => lines.renew(ref(name), handle),
    release: (name, handle) => lines.release(ref(name), handle),
    forceRelease: (name) => lines.forceRelease(ref(name)),
    inspect: async (name) => lockView(await lines.inspect(ref(name))),
    get activeWaiters() {
      return lines.activeWaiters;
    },
    close: () => lines.close(),
  };
}

/** `createLines` seen as locks by name. */
export function createTestLocks(etcd: EtcdClient, o: LinesOptions): TestLocks {
  return locksOver(createLines(etcd, o));
}
