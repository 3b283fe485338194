/**
 * The fast unit tier: every file under test/unit/ runs against FakeEtcd
 * (test/support/fake-etcd.ts), starts no etcd or server, uses no fixed sleeps, and takes
 * well under a second. Run them alone with `npx vitest run test/unit`.
 */
import { onTestFinished, vi } from "vitest";
import type { KeyValue } from "../../src/etcd/types.js";
import { createLines, type Lines, type LinesOptions, workerStrategies } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import { parseHandle } from "../../src/lock/names.js";
import { decodeParticipant } from "../../src/lock/participant.js";
import type { LineKind, LineRef } from "../../src/lock/types.js";
import { FakeEtcd } from "../support/fake-etcd.js";
import { locksOver, type TestLocks } from "../support/locks.js";

/** The etcd key prefix the unit tier's engines use. */
export const PREFIX = "t/";
const keys = new LineKeys(PREFIX);

/**
 * The line engine on a fresh FakeEtcd, with `Date.now` reading the fake's clock so that
 * the engine's own time (pool ages, expiry estimates, wait deadlines) and etcd's lease
 * deadlines move together under `fake.advance(ms)`. `locks`: the same engine seen as
 * locks by name (limit 1).
 */
export function fakeLines(
  /** `worker`: the strategies the Worker entry chooses (no I/O shared across requests). */
  { worker = false, ...o }: Partial<LinesOptions> & { worker?: boolean } = {},
  /** Another instance on the same etcd: pass the first one's fake. */
  fake = new FakeEtcd(),
): { fake: FakeEtcd; lines: Lines; locks: TestLocks } {
  const now = vi.spyOn(Date, "now").mockImplementation(() => fake.now());
  onTestFinished(() => now.mockRestore());
  const lines = createLines(fake, {
    prefix: PREFIX,
    maxWaiters: 100,
    ...(worker ? { strategies: workerStrategies } : {}),
    ...o,
  });
  return { fake, lines, locks: locksOver(lines) };
}

/** The lock line of `name`. */
export const lockLine = (name: string): LineRef => ({ kind: "lock", name });

/** The etcd key of the participant a handle or ticket names. */
export function keyOf(name: string, handle: string, kind: LineKind = "lock"): string {
  const h = parseHandle(handle);
  if (!h) throw new Error("not a handle");
  return keys.participant({ kind, name }, h.keyId);
}

/** The line's keys in etcd, oldest first. */
export function lineIn(fake: FakeEtcd, name: string, kind: LineKind = "lock"): KeyValue[] {
  const { start, end } = keys.range({ kind, name });
  return fake.peekRange(start, end);
}

/** The line's key range. */
export function rangeOf(name: string, kind: LineKind = "lock"): { start: string; end: string } {
  return keys.range({ kind, name });
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

/** The error `p` rejects with (fails the test when it resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => {
      throw new Error(`expected a refusal, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
}

/** Lets queued work run until `check` holds (at most `turns` event-loop turns), for waits on the fake. */
export async function turnsUntil(check: () => boolean, what: string, turns = 200): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (check()) return;
    await settled();
  }
  throw new Error(`not reached within ${turns} turns: ${what}`);
}

/** Until `n` participants wait in the line (behind its holders), with a watch open on it. */
export function untilWaiting(fake: FakeEtcd, name: string, n: number, kind: LineKind = "lock"): Promise<void> {
  const { start } = rangeOf(name, kind);
  return turnsUntil(
    () =>
      lineIn(fake, name, kind).filter((kv) => decodeParticipant(kv.value).h !== 1).length === n &&
      fake.openWatches(start) > 0,
    `${n} waiter(s) in line ${name}`,
  );
}
