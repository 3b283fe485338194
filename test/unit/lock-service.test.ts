import { describe, expect, it, onTestFinished, vi } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import {
  IdempotencyKeyMismatch,
  LockError,
  LockHeld,
  LockLost,
  ShuttingDown,
  TooManyWaiters,
} from "../../src/lock/index.js";
import { fakeLines, keyOf, leaseOf, lineIn, rangeOf, rejection, settled, untilWaiting } from "./support.js";

/**
 * The engine's decisions for locks (lines of limit 1), through its public API on a fake
 * etcd: what it answers, and what it leaves in etcd. Races are scripted with the fake's
 * pauses, and time is the fake's clock (Date.now reads it), so every outcome is decided
 * by events. (How each refusal becomes an HTTP answer is the HTTP layer's tests' part.)
 */

/** The engine's refusal `p` rejects with (fails the test when it resolves or fails otherwise). */
async function refusal(p: Promise<unknown>): Promise<LockError> {
  const err = await rejection(p);
  if (err instanceof LockError) return err;
  throw err;
}

const iso = (ms: number) => new Date(ms).toISOString();

const modes = [
  { worker: false, how: "shared I/O (Node)" },
  { worker: true, how: "no shared I/O (Workers)" },
];

describe.each(modes)("lock decisions on a fake etcd: $how", ({ worker }) => {
  const setup = () => fakeLines({ worker });

  it("acquires a free lock: the token is the key's create revision, the handle names its lease", async () => {
    const { fake, locks } = setup();
    const { grant, replayed } = await locks.acquire("n", { ttl: 30, wait: 0, owner: "me" });
    expect(replayed).toBe(false);
    const kv = fake.peek(keyOf("n", grant.lease));
    expect(lineIn(fake, "n")).toEqual([kv]);
    expect(grant).toEqual({
      name: "n",
      token: kv?.createRevision,
      lease: expect.stringMatching(/^[0-9a-f]{48}$/),
      ttl: 30,
      expiresAt: iso(fake.now() + 30_000),
      owner: "me",
    });
    expect(kv?.lease).toBe(leaseOf(grant.lease));
    // etcd holds no copy of the handle's secret part.
    expect(kv?.value).not.toContain(grant.lease.slice(32));
  });

  it("reports the TTL etcd granted when it raised a small one", async () => {
    const { locks } = setup();
    expect((await locks.acquire("n", { ttl: 1, wait: 0 })).grant.ttl).toBe(2);
  });

  it("a held lock is refused with the holder and a Retry-After, never an earlier expiry", async () => {
    const { fake, locks } = setup();
    const { grant } = await locks.acquire("n", { ttl: 30, wait: 0, owner: "first" });
    fake.advance(10_500);
    const held = await refusal(locks.acquire("n", { ttl: 30, wait: 0, owner: "second" }));
    expect(held).toBeInstanceOf(LockHeld);
    // etcd says 19 whole seconds are left; this instance told the holder the lease ends
    // at grant + 30 s, and says the same now.
    expect(held).toMatchObject({
      holder: { owner: "first", token: grant.token, expiresAt: grant.expiresAt },
      retryAfter: 20,
      position: undefined,
    });
    // A refused acquire that does not wait writes nothing.
    expect(lineIn(fake, "n")).toHaveLength(1);
  });

  it("another instance estimates the expiry from etcd's whole seconds, as a lower bound", async () => {
    const { fake, locks } = setup();
    const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
    fake.advance(10_500);
    const other = fakeLines({ worker }, fake).locks;
    const held = await refusal(other.acquire("n", { ttl: 30, wait: 0 }));
    expect(held).toMatchObject({ holder: { token: grant.token, expiresAt: iso(fake.now() + 19_000) }, retryAfter: 19 });
    expect((held as LockHeld).holder).not.toHaveProperty("owner");
  });

  it("a lock whose lease expired is free again, with a larger token", async () => {
    const { fake, locks } = setup();
    const first = await locks.acquire("n", { ttl: 5, wait: 0 });
    fake.advance(5_000);
    const second = await locks.acquire("n", { ttl: 5, wait: 0 });
    expect(second.grant.token).toBeGreaterThan(first.grant.token);
  });

  it("a waiter is woken by the release and gets the lock: its token is when it joined the line", async () => {
    const { fake, locks } = setup();
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const waiter = locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    const joined = lineIn(fake, "n")[1];
    expect(locks.activeWaiters).toBe(1);
    await locks.release("n", holder.grant.lease);
    const { grant } = await waiter;
    expect(grant.token).toBe(joined?.createRevision);
    expect(grant.token).toBeGreaterThan(holder.grant.token);
    expect(lineIn(fake, "n")).toEqual([fake.peek(keyOf("n", grant.lease))]);
    expect(fake.peek(keyOf("n", grant.lease))?.lease).toBe(leaseOf(grant.lease));
    expect(locks.activeWaiters).toBe(0);
  });

  it("a waiter is woken by the holder's lease expiring, its place kept alive meanwhile", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = setup();
    await locks.acquire("n", { ttl: 10, wait: 0 });
    const waiter = locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    const place = lineIn(fake, "n")[1];
    // Both clocks move together: the engine's keep-alives hold the waiter's queue lease
    // (TTL 5 s) while the holder's 10 s run out.
    for (let t = 0; t < 40; t++) {
      await vi.advanceTimersByTimeAsync(250);
      fake.advance(250);
    }
    const { grant } = await waiter;
    expect(grant).toMatchObject({ ttl: 30, token: place?.createRevision });
  });

  it("a wait that runs out is refused as held, and leaves the line", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { fake, locks } = setup();
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const waiter = refusal(locks.acquire("n", { ttl: 30, wait: 5 }));
    await untilWaiting(fake, "n", 1);
    await vi.advanceTimersByTimeAsync(5_000);
    const held = await waiter;
    expect(held).toBeInstanceOf(LockHeld);
    expect(held).toMatchObject({ holder: { token: holder.grant.token }, position: 0 });
    expect(lineIn(fake, "n").map((kv) => kv.createRevision)).toEqual([holder.grant.token]);
    expect(locks.activeWaiters).toBe(0);
  });

  it("beyond maxWaiters, a waiting acquire is refused at once", async () => {
    const { fake, locks } = fakeLines({ worker, maxWaiters: 1 });
    const holder = await locks.acquire("n", { ttl: 30, wait: 0 });
    const first = locks.acquire("n", { ttl: 30, wait: 60 });
    await untilWaiting(fake, "n", 1);
    const refused = await refusal(locks.acquire("n", { ttl: 30, wait: 60 }));
    expect(refused).toBeInstanceOf(TooManyWaiters);
    // Refused before joining: no second waiter in line.
    expect(lineIn(fake, "n")).toHaveLength(2);
    await locks.release("n", holder.grant.lease);
    await first;
  });

  it("shutting down lets waiters go (ShuttingDown), leaving the line", async () => {
    const shutdown = new AbortController();
    const { fake, locks } = fakeLines({ worker, shutdownSignal: shutdown.signal });
    await locks.acquire("n", { ttl: 30, wait: 0 });
    const waiter = refusal(locks.acquire("n", { ttl: 30, wait: 60 }));
    await untilWaiting(fake, "n", 1);
    shutdown.abort();
    expect(await waiter).toBeInstanceOf(ShuttingDown);
    expect(lineIn(fake, "n")).toHaveLength(1);
  });

  describe("idempotent acquires", () => {
    const idem = { idempotencyKey: "k-1", caller: "api-key-a" };

    it("the same caller repeating the same request gets the same grant, replayed", async () => {
      const { fake, locks } = setup();
      const first = await locks.acquire("n", { ttl: 30, wait: 0, owner: "o", ...idem });
      fake.advance(2_000);
      const again = await locks.acquire("n", { ttl: 30, wait: 0, owner: "o", ...idem });
      expect(again.replayed).toBe(true);
      expect(again.grant).toEqual(first.grant);
      // The replayed handle is the grant's own: it releases the lock.
      await locks.release("n", again.grant.lease);
      expect(lineIn(fake, "n")).toEqual([]);
    });

    it("a first attempt on a free lock costs the join alone: no read of its key first", async () => {
      const { fake, locks } = setup();
      fake.resetCalls();
      await locks.acquire("n", { ttl: 30, wait: 0, ...idem });
      expect(fake.count("get")).toBe(0);
      expect(fake.count("range") + fake.count("scan")).toBe(0);
      expect(fake.count("joinAll")).toBe(1);
    });

    it("a retry that may not wait finds the first attempt's place far back in line (not a plain 409)", async () => {
      const { fake, locks } = setup();
      await locks.acquire("n", { ttl: 30, wait: 0 });
      // Two others wait ahead of the first attempt, so the line read back (the holder and
      // one more) does not show its place.
      const others = [1, 2].map(() => refusal(locks.acquire("n", { ttl: 30, wait: 60 })));
      await untilWaiting(fake, "n", 2);
      const first = refusal(locks.acquire("n", { ttl: 30, wait: 60, ...idem }));
      await untilWaiting(fake, "n", 3);
      const mine = lineIn(fake, "n")[3];
      // The retry waits no longer: it answers for the first attempt's place (a plain
      // refusal has no position), and leaves it to the first attempt, still waiting.
      const err = await refusal(locks.acquire("n", { ttl: 30, wait: 0, ...idem }));
      expect(err).toBeInstanceOf(LockHeld);
      expect((err as LockHeld).position).toBe(2);
      expect(fake.peek(mine?.key ?? "")).toEqual(mine);
      expect(lineIn(fake, "n")).toHaveLength(4);
      void first;
      void others;
    });

    it("the same key with other fields is a mismatch", async () => {
      const { locks } = setup();
      await locks.acquire("n", { ttl: 30, wait: 0, ...idem });
      for (const other of [{ ttl: 31 }, { owner: "x" }]) {
        const err = await refusal(locks.acquire("n", { ttl: 30, wait: 0, ...idem, ...other }));
        expect(err).toBeInstanceOf(IdempotencyKeyMismatch);
      }
    });

    it("a retry may wait less than the first attempt: clients send the wait that is left", async () => {
      const { locks } = setup();
      const first = await locks.acquire("n", { ttl: 30, wait: 10, ...idem });
      const retry = await locks.acquire("n", { ttl: 30, wait: 7.5, ...idem });
      expect(retry).toMatchObject({ replayed: true, grant: { lease: first.grant.lease } });
    });

    it("another caller with the same key is just another acquire: lock-held, no handle", async () => {
      const { locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0, ...idem });
      const err = await refusal(locks.acquire("n", { ttl: 30, wait: 0, ...idem, caller: "api-key-b" }));
      expect(err).toBeInstanceOf(LockHeld);
      expect(JSON.stringify({ ...err, message: err.message })).not.toContain(grant.lease.slice(16));
    });
  });

  describe("release and renew", () => {
    it("releasing its own grant costs one guarded delete, and pools the lease", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      fake.resetCalls();
      await locks.release("n", grant.lease);
      expect(fake.calls.map((c) => c.method)).toEqual(["deleteAllIfUnchanged"]);
      expect(lineIn(fake, "n")).toEqual([]);
      expect(fake.lease(leaseOf(grant.lease))).toBeDefined();
    });

    it("another instance releases a grant after checking its handle", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      const other = fakeLines({ worker }, fake).locks;
      await other.release("n", grant.lease);
      expect(lineIn(fake, "n")).toEqual([]);
    });

    it("a former holder's handle on a reused lease is lock-lost and leaves the new grant alone", async () => {
      const { fake, locks } = setup();
      const a = await locks.acquire("n", { ttl: 30, wait: 0 });
      await locks.release("n", a.grant.lease);
      const b = await locks.acquire("n", { ttl: 30, wait: 0 });
      expect(leaseOf(b.grant.lease)).toBe(leaseOf(a.grant.lease));
      for (const stale of [locks.release("n", a.grant.lease), locks.renew("n", a.grant.lease)]) {
        expect(await refusal(stale)).toBeInstanceOf(LockLost);
      }
      expect(lineIn(fake, "n").map((kv) => kv.createRevision)).toEqual([b.grant.token]);
      expect((await locks.renew("n", b.grant.lease)).token).toBe(b.grant.token);
    });

    it("a grant that expired, and a handle that is no handle, are lock-lost", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 5, wait: 0 });
      fake.advance(5_000);
      expect(await refusal(locks.release("n", grant.lease))).toBeInstanceOf(LockLost);
      expect(await refusal(locks.renew("n", grant.lease))).toBeInstanceOf(LockLost);
      expect(await refusal(locks.release("n", "not-a-handle"))).toBeInstanceOf(LockLost);
    });

    it("renew resets the lease and moves the expiry on", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 10, wait: 0 });
      fake.advance(8_000);
      const renewed = await locks.renew("n", grant.lease);
      expect(renewed).toMatchObject({ token: grant.token, ttl: 10, expiresAt: iso(fake.now() + 10_000) });
      fake.advance(8_000);
      expect(fake.peek(keyOf("n", grant.lease))).toBeDefined();
    });

    it("inspect never reports an expiry earlier than the one the holder was given", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      fake.advance(1_500);
      expect(await locks.inspect("n")).toMatchObject({ ttl: 28, expiresAt: grant.expiresAt });
    });
  });

  describe("force release", () => {
    it("ends the current grant and revokes its lease", async () => {
      const { fake, locks } = setup();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      expect(await locks.forceRelease("n")).toBeDefined();
      await settled();
      expect(lineIn(fake, "n")).toEqual([]);
      expect(fake.lease(leaseOf(grant.lease))).toBeUndefined();
      expect(await locks.forceRelease("n")).toBeUndefined();
    });

    it("a lease read before the grant ended and reused for another name is left alone", async () => {
      const { fake, locks: holderSide } = setup();
      const adminSide = fakeLines({ worker }, fake).locks;
      const first = await holderSide.acquire("team-a:x", { ttl: 30, wait: 0 });
      const read = fake.pauseNext("scan", { applied: true, match: (start) => start === rangeOf("team-a:x").start });
      const forced = adminSide.forceRelease("team-a:x");
      await read.reached; // the admin's instance has read the grant and its lease, and lags
      await holderSide.release("team-a:x", first.grant.lease);
      const theirs = await holderSide.acquire("team-b:y", { ttl: 30, wait: 0 });
      const lease = leaseOf(first.grant.lease);
      expect(leaseOf(theirs.grant.lease)).toBe(lease);
      read.release();
      expect(await forced).toBeUndefined();
      await settled();
      expect(fake.argsOf("leaseRevoke")).not.toContainEqual([lease]);
      expect(lineIn(fake, "team-b:y").map((kv) => kv.createRevision)).toEqual([theirs.grant.token]);
      expect((await holderSide.renew("team-b:y", theirs.grant.lease)).token).toBe(theirs.grant.token);
    });

    it("a grant that changed hands between the read and the txn: the new one is ended", async () => {
      const { fake, locks: holderSide } = setup();
      const adminSide = fakeLines({ worker }, fake).locks;
      const first = await holderSide.acquire("n", { ttl: 30, wait: 0 });
      const read = fake.pauseNext("scan", { applied: true, match: (start) => start === rangeOf("n").start });
      const forced = adminSide.forceRelease("n");
      await read.reached;
      await holderSide.release("n", first.grant.lease);
      const second = await holderSide.acquire("n", { ttl: 30, wait: 0 });
      read.release();
      expect(await forced).toBeDefined();
      await settled();
      expect(lineIn(fake, "n")).toEqual([]);
      expect(fake.lease(leaseOf(second.grant.lease))).toBeUndefined();
      expect(await refusal(holderSide.renew("n", second.grant.lease))).toBeInstanceOf(LockLost);
    });
  });

  describe("leases that die or answers that are lost", () => {
    it("a pooled lease that died is skipped: the acquire gets a fresh lease", async () => {
      const { fake, locks } = setup();
      const a = await locks.acquire("a", { ttl: 30, wait: 0 });
      await locks.release("a", a.grant.lease);
      const dead = leaseOf(a.grant.lease);
      await fake.leaseRevoke(dead); // behind the service's back
      fake.resetCalls();
      const b = await locks.acquire("b", { ttl: 30, wait: 0 });
      expect(leaseOf(b.grant.lease)).not.toBe(dead);
      expect(fake.count("leaseGrant")).toBe(1);
      expect(lineIn(fake, "b").map((kv) => kv.lease)).toEqual([leaseOf(b.grant.lease)]);
    });

    it("in a shared txn, a dead pooled lease fails only its own acquire's attempt", async () => {
      const { fake, locks } = setup();
      const first = await Promise.all(["a", "b"].map((n) => locks.acquire(n, { ttl: 30, wait: 0 })));
      await Promise.all(first.map(({ grant }) => locks.release(grant.name, grant.lease)));
      const [dead, alive] = first.map(({ grant }) => leaseOf(grant.lease));
      await fake.leaseRevoke(dead ?? 0n);
      const next = await Promise.all(["c", "d"].map((n) => locks.acquire(n, { ttl: 30, wait: 0 })));
      const leases = next.map(({ grant }) => leaseOf(grant.lease));
      expect(leases).toContain(alive);
      expect(leases).not.toContain(dead);
      for (const { grant } of next) {
        expect(lineIn(fake, grant.name).map((kv) => kv.createRevision)).toEqual([grant.token]);
      }
    });

    it("a join whose answer was lost revokes its lease, so no key stays held by nobody", async () => {
      const { fake, locks } = setup();
      const joining = fake.nextCall("joinAll");
      fake.failNext("joinAll", { applied: true });
      await expect(locks.acquire("n", { ttl: 30, wait: 0 })).rejects.toBeInstanceOf(EtcdUnavailableError);
      const [[item]] = await joining;
      await settled();
      expect(fake.argsOf("leaseRevoke")).toEqual([[item?.lease]]);
      expect(lineIn(fake, "n")).toEqual([]);
      expect((await locks.acquire("n", { ttl: 30, wait: 0 })).grant.name).toBe("n");
    });

    it("a join the transport sent twice (its first answer lost) grants the key it made, never pooling its lease", async () => {
      const { fake, locks } = setup();
      const joinAll = fake.joinAll.bind(fake);
      fake.joinAll = async (items) => {
        // An engine that took its own key for someone else's would join again and again.
        if (fake.count("joinAll") > 10) throw new Error("the acquire keeps joining");
        await joinAll(items);
        return joinAll(items);
      };
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0 });
      expect(fake.count("joinAll")).toBe(2);
      expect(lineIn(fake, "n")).toEqual([
        expect.objectContaining({ createRevision: grant.token, lease: leaseOf(grant.lease) }),
      ]);
      // The lease was not pooled: the next grant gets another one, and the first stays held.
      const next = await locks.acquire("m", { ttl: 30, wait: 0 });
      expect(leaseOf(next.grant.lease)).not.toBe(leaseOf(grant.lease));
      expect((await locks.renew("n", grant.lease)).token).toBe(grant.token);
    });

    it("a grant whose caller hung up is ended by its own revision", async () => {
      const { fake, locks } = setup();
      const gone = new AbortController();
      const { grant } = await locks.acquire("n", { ttl: 30, wait: 0, signal: gone.signal });
      const deleting = fake.nextCall("deleteAllIfUnchanged");
      gone.abort();
      expect((await deleting)[0]).toEqual([{ key: keyOf("n", grant.lease), modRevision: grant.token }]);
      await settled();
      expect(lineIn(fake, "n")).toEqual([]);
    });
  });
});
