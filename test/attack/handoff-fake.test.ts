import { describe, expect, it } from "vitest";
import type { EtcdClient, WatchEvent } from "../../src/etcd/types.js";
import { createLines, LockHeld, LockLost } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import type { FakeEtcd } from "../support/fake-etcd.js";
import { locksOver } from "../support/locks.js";
import { fakeLines, leaseOf, lineIn, lockLine, PREFIX, rejection, untilWaiting } from "../unit/support.js";

/**
 * Attacks on local handoff (a release that makes this instance's next waiter the holder
 * in its own txn) on FakeEtcd, where a lagging instance's copy of a line, the pool of
 * another instance and the leases' clocks can be set up exactly.
 */

const keys = new LineKeys(PREFIX);

/**
 * Another instance on `fake` whose watch events can be held back (`hold`) until `flush`:
 * its copies of lines stay as they were, as a loaded instance's do.
 */
function laggingInstance(fake: FakeEtcd) {
  let holding = false;
  const held: (() => void)[] = [];
  const client = new Proxy(fake, {
    get(target, prop, receiver) {
      if (prop === "watchRange") {
        const watchRange: EtcdClient["watchRange"] = (start, end, from, onEvents, signal, options) =>
          target.watchRange(
            start,
            end,
            from,
            (revision: number, events: WatchEvent[]) => {
              if (holding) held.push(() => onEvents(revision, events));
              else onEvents(revision, events);
            },
            signal,
            options,
          );
        return watchRange;
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const lines = createLines(client, { prefix: PREFIX, maxWaiters: 100 });
  return {
    lines,
    locks: locksOver(lines),
    hold() {
      holding = true;
    },
    flush() {
      holding = false;
      for (const deliver of held.splice(0)) deliver();
    },
  };
}

describe("attacks on local handoff (FakeEtcd)", () => {
  it("a stale release never keeps alive the lease its grant had, now another grant's: that grant expires on time, and its lock-delay follows", async () => {
    // Instance B (no waiters) and instance A (its copies lag), on one etcd.
    const b = fakeLines();
    const { fake } = b;
    const a = laggingInstance(fake);
    // A grants H on "n"; a plain request waits behind it on A.
    const h = (await a.locks.acquire("n", { ttl: 30, wait: 0 })).grant;
    const lease = leaseOf(h.lease);
    const waiter = a.locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    a.hold();
    // H's release reaches B first (a client retrying a slow instance): B ends it and pools its lease.
    await b.locks.release("n", h.lease);
    // B's next grant of that TTL, on another lock, asking a lock-delay, takes the pooled lease.
    const x = (await b.locks.acquire("m", { ttl: 30, wait: 0, lockDelay: 1 })).grant;
    expect(leaseOf(x.lease)).toBe(lease);
    const xExpires = fake.lease(lease)?.expiresAt ?? 0;
    const marker = fake.peek(keys.delayMarker(lockLine("m")));
    expect(marker).toBeDefined();
    fake.advance(3_000);
    // Now the first release reaches A: its grant is gone, whatever A's copy of "n" still shows.
    expect(await rejection(a.locks.release("n", h.lease))).toBeInstanceOf(LockLost);
    // Nothing A did touched X's lease: X's grant still ends when its TTL runs out unrenewed.
    expect(fake.lease(lease)?.expiresAt).toBe(xExpires);
    fake.advance(xExpires - fake.now());
    expect(lineIn(fake, "m")).toEqual([]);
    // ... and its lock-delay runs after that expiry.
    expect(fake.peek(keys.delayMarker(lockLine("m")))).toBeDefined();
    const refused = await rejection(b.locks.acquire("m", { ttl: 30, wait: 0 }));
    expect(refused).toBeInstanceOf(LockHeld);
    expect((refused as LockHeld).reason).toBe("lock-delay");
    a.flush();
    await waiter.catch(() => {});
  });
});
