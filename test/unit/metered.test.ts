import { describe, expect, it } from "vitest";
import {
  IdempotencyKeyMismatch,
  LimitMismatch,
  type Lines,
  LockHeld,
  LockLost,
  ticketLost,
} from "../../src/lock/index.js";
import { metered } from "../../src/lock/metered.js";
import type { Metrics } from "../../src/metrics.js";

const LEASE = "6c1f2a9be0d34f176c1f2a9be0d34f17";
const TICKET = "9d2e4b1c07a35f689d2e4b1c07a35f68";
const grant = { grant: { name: "n", token: 1, lease: LEASE, ttl: 30, expiresAt: "x" }, replayed: false };
const lock = { kind: "lock", name: "n" } as const;
const semaphore = { kind: "semaphore", name: "s" } as const;

/** An engine whose every operation answers (or throws) the next scripted value. */
function engine(script: unknown[]): Lines {
  const next = async () => {
    const out = script.shift();
    if (out instanceof Error) throw out;
    return out;
  };
  return {
    activeWaiters: 0,
    acquire: next,
    redeem: next,
    leave: next,
    renew: next,
    release: next,
    forceRelease: next,
    inspect: next,
    list: next,
    sweepLeases() {},
    close: async () => {},
  } as unknown as Lines;
}

/** Metrics that write down every call with its arguments, as text. */
function recording(): { metrics: Metrics; seen: string[] } {
  const seen: string[] = [];
  const line = (op: string) => (outcome: string, l: { kind: string; name: string }) =>
    seen.push(`${op}:${outcome}:${l.kind}:${l.name}`);
  return {
    seen,
    metrics: {
      acquire: line("acquire"),
      renew: line("renew"),
      release: line("release"),
      waited: () => seen.push("waited"),
      held: () => seen.push("held"),
      etcd: () => {},
    },
  };
}

const held = new LockHeld("lock n", undefined, 1);

describe("the metrics decorator", () => {
  it("counts every outcome by kind and name, never with a ticket or a lease", async () => {
    const { metrics, seen } = recording();
    const lines = metered(
      engine([
        grant,
        { ticket: { ticket: TICKET, position: 0, ttl: 30 } },
        held,
        held,
        new LimitMismatch("semaphore s", 2, 3),
        new IdempotencyKeyMismatch(),
        { ticket: { ticket: TICKET, position: 0, ttl: 30 } },
        grant,
        ticketLost("lock n"),
        undefined,
        ticketLost("lock n"),
        grant.grant,
        new LockLost("lock n"),
        { grantedAt: Date.now() },
        new LockLost("lock n"),
        { grantedAt: Date.now() },
        undefined,
      ]),
      metrics,
    );
    const o = { ttl: 30, wait: 0, limit: 1 };
    const settle = (p: Promise<unknown>) => p.catch(() => {});
    await lines.acquire(lock, o);
    await lines.acquire(lock, { ...o, queue: true });
    await settle(lines.acquire(lock, o));
    await settle(lines.acquire(lock, { ...o, wait: 1 }));
    await settle(lines.acquire(semaphore, { ...o, limit: 3 }));
    await settle(lines.acquire(lock, o));
    await lines.redeem(lock, TICKET, { wait: 0 });
    await lines.redeem(lock, TICKET, { wait: 2 });
    await settle(lines.redeem(lock, TICKET, { wait: 0 }));
    await lines.leave(semaphore, TICKET);
    await settle(lines.leave(lock, TICKET));
    await lines.renew(lock, LEASE);
    await settle(lines.renew(lock, LEASE));
    await lines.release(semaphore, LEASE);
    await settle(lines.release(lock, LEASE));
    await lines.forceRelease(semaphore, 7);
    await lines.forceRelease(lock);
    expect(seen).toEqual([
      "acquire:granted:lock:n",
      "acquire:queued:lock:n",
      "acquire:held:lock:n",
      "waited",
      "acquire:timeout:lock:n",
      "acquire:limit-mismatch:semaphore:s",
      "acquire:error:lock:n",
      "acquire:queued:lock:n",
      "waited",
      "acquire:granted:lock:n",
      "acquire:lost:lock:n",
      "release:left:semaphore:s",
      "release:lost:lock:n",
      "renew:renewed:lock:n",
      "renew:lost:lock:n",
      "release:released:semaphore:s",
      "held",
      "release:lost:lock:n",
      "release:forced:semaphore:s",
      "held",
    ]);
    expect(seen.join("\n")).not.toMatch(new RegExp(`${TICKET}|${LEASE}`));
  });
});
