import { describe, expect, it } from "vitest";
import type { EtcdClient, GuardedWrite } from "../../src/etcd/types.js";
import { CallerGone, createLines, LockHeld, LockLost } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import { parseHandle } from "../../src/lock/names.js";
import type { Acquired, Grant, LineRef, Lines, Ticket } from "../../src/lock/types.js";
import { etcdWithClients, RUNTIMES } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { lagging } from "../support/lagging.js";
import { grantOf } from "../support/locks.js";

/**
 * Attacks on the line engine's paths, each taking the bad path on purpose: an
 * instance's call is held between etcd answering it and the engine reading the answer
 * (as a lagging instance would be), while other requests change the line meanwhile.
 */

const PREFIX = "attack/";
const keys = new LineKeys(PREFIX);

function ticketOf(a: Acquired): Ticket {
  if (!("ticket" in a)) throw new Error("expected a ticket, got a grant");
  return a.ticket;
}

/** Settles to the value or the error. */
const settle = <T>(p: Promise<T>) =>
  p.then(
    (v) => v,
    (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
  );

/** A lock's conversion: the guarded write that puts a participant key of `line`. */
const keyOfItem = (line: LineRef) => (arg: unknown) =>
  (arg as GuardedWrite).put?.[0]?.key.startsWith(keys.range(line).start) ?? false;

describe("attacks on waiting, tickets and force release (real etcd)", () => {
  const shared = etcdWithClients();

  describe.each(RUNTIMES)("with $how", ({ runtime }) => {
    const engine = (client: EtcdClient = shared.client()) =>
      createLines(client, { prefix: PREFIX, maxWaiters: 100, ...runtime });
    const lock = (label: string): LineRef => ({ kind: "lock", name: uniqueName(label) });

    /** What a line holds now: its holders' tokens and how many wait. */
    async function standing(l: Lines, line: LineRef) {
      const info = await l.inspect(line);
      return { tokens: info?.holders.map((h) => h.token) ?? [], waiters: info?.waiters ?? 0 };
    }

    /** Asserts `grant` holds the line alone (as a lock) and nobody else can take it. */
    async function holdsAlone(l: Lines, line: LineRef, grant: Grant) {
      expect(await standing(l, line)).toEqual({ tokens: [grant.token], waiters: 0 });
      expect((await l.renew(line, grant.lease)).token).toBe(grant.token);
      await expect(l.acquire(line, { ttl: 30, wait: 0, limit: 1, caller: "someone-else" })).rejects.toBeInstanceOf(
        LockHeld,
      );
    }

    /**
     * A lock held on `x`, and a waiter in line behind it on `x` whose caller can hang up
     * (`gone`); `o`: what it sent (with an Idempotency-Key unless `idempotent` is false),
     * for its retries.
     */
    async function waiterBehindHolder(x: Lines, label: string, idempotent = true) {
      const line = lock(label);
      const holder = grantOf(await x.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      const gone = new AbortController();
      const o = {
        ttl: 30,
        wait: 20,
        limit: 1,
        caller: "key-a",
        ...(idempotent ? { idempotencyKey: crypto.randomUUID() } : {}),
      };
      const waiter = settle(x.acquire(line, { ...o, signal: gone.signal }));
      await until(async () => (await standing(x, line)).waiters === 1, "the waiter in line");
      return { line, o, gone, waiter, release: () => x.release(line, holder.grant.lease) };
    }

    // (a) An idempotent retry racing its first attempt while that attempt waits in line.
    for (const where of ["the same instance", "another instance"] as const) {
      it(`an idempotent retry waiting beside its first attempt (on ${where}): one grant, handed to both`, async () => {
        const x = engine();
        const y = where === "the same instance" ? x : engine();
        const line = lock("idem-wait");
        const holder = grantOf(await x.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
        const o = { ttl: 30, wait: 20, limit: 1, idempotencyKey: crypto.randomUUID(), caller: "key-a" };
        const first = x.acquire(line, o);
        await until(async () => (await standing(x, line)).waiters === 1, "the first attempt in line");
        const retry = y.acquire(line, o);
        await until(
          () => y.activeWaiters === (where === "the same instance" ? 2 : 1),
          "the retry to wait for its place",
        );
        // Still one place in line: the retry waits for the first attempt's (same key ID).
        expect((await standing(x, line)).waiters).toBe(1);
        await x.release(line, holder.grant.lease);
        const [a, b] = (await Promise.all([first, retry])).map(grantOf) as [
          { grant: Grant; replayed: boolean },
          { grant: Grant; replayed: boolean },
        ];
        // Never two grants, nor one grant bound to two leases: the same handle to both.
        const { expiresAt: _, ...same } = a.grant;
        expect(b.grant).toMatchObject(same);
        expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
        await holdsAlone(x, line, a.grant);
        await x.release(line, a.grant.lease);
        await Promise.all([x.close(), y === x ? undefined : y.close()]);
      });
    }

    // (b) A waiter converted after its caller hung up.
    it("a waiter converted after its caller hung up is ended: no lock is held by nobody", async () => {
      const lag = lagging(shared.client());
      const x = engine(lag.client);
      const { line, gone, waiter, release } = await waiterBehindHolder(x, "gone-wait", false);
      // Its turn comes; the conversion is applied, and its answer lags (on Node the
      // release itself converts it, the waiter being of the same instance)...
      const converting = lag.pauseNext("guardedWrite", keyOfItem(line));
      const released = release();
      await converting.reached;
      // ...while the caller hangs up.
      gone.abort();
      converting.release();
      await released;
      expect(await waiter).toBeInstanceOf(CallerGone);
      await until(async () => (await x.inspect(line)) === undefined, "the abandoned grant to end");
      const next = grantOf(await x.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      await x.release(line, next.grant.lease);
      await x.close();
    });

    it("a waiter converted after its caller hung up is not ended once its idempotent retry claimed it", async () => {
      const lag = lagging(shared.client());
      const x = engine(lag.client);
      const y = engine();
      const { line, o, gone, waiter, release } = await waiterBehindHolder(x, "gone-claimed");
      const converting = lag.pauseNext("guardedWrite", keyOfItem(line));
      await release();
      await converting.reached;
      // The caller hangs up and retries through another instance: the retry gets the grant.
      gone.abort();
      const retry = grantOf(await y.acquire(line, o));
      expect(retry.replayed).toBe(true);
      // Only now does the first instance learn its conversion applied, for a caller that left.
      converting.release();
      expect(await waiter).toBeInstanceOf(CallerGone);
      // Let its clean-up reach etcd: a write after it is ordered after it.
      const probe = grantOf(await x.acquire(lock("probe"), { ttl: 30, wait: 0, limit: 1 }));
      await x.release({ kind: "lock", name: probe.grant.name }, probe.grant.lease);
      await holdsAlone(y, line, retry.grant);
      await Promise.all([x.close(), y.close()]);
    });

    it("an abandoned attempt's conversion that lags behind its retry's own fails, and the retry's grant stays", async () => {
      const lag = lagging(shared.client());
      const x = engine(lag.client);
      const y = engine();
      const { line, o, gone, waiter, release } = await waiterBehindHolder(x, "gone-late");
      // The first attempt's conversion is held before it is sent; its caller hangs up, and
      // the retry, finding the place at its turn, converts it itself.
      const converting = lag.pauseNext("guardedWrite", keyOfItem(line), true);
      await release();
      await converting.reached;
      gone.abort();
      const retry = grantOf(await y.acquire(line, o));
      converting.release();
      expect(await waiter).toBeInstanceOf(CallerGone);
      await holdsAlone(y, line, retry.grant);
      await Promise.all([x.close(), y.close()]);
    });

    it("an abandoned attempt's conversion that lands first, racing its waiting retry, leaves one live grant", async () => {
      const lagX = lagging(shared.client());
      const lagY = lagging(shared.client());
      const x = engine(lagX.client);
      const y = engine(lagY.client);
      const { line, o, gone, waiter, release } = await waiterBehindHolder(x, "gone-first");
      const retry = y.acquire(line, o);
      await until(() => y.activeWaiters === 1, "the retry to wait for the same place");
      // Both are woken. The first attempt's conversion applies (its answer lags); the
      // retry's is held before it is sent.
      const xConverts = lagX.pauseNext("guardedWrite", keyOfItem(line));
      const yConverts = lagY.pauseNext("guardedWrite", keyOfItem(line), true);
      await release();
      await Promise.all([xConverts.reached, yConverts.reached]);
      // The first caller has hung up: its grant is abandoned (deleted at its revision)
      // while the retry finds its own conversion refused and looks again.
      gone.abort();
      xConverts.release();
      yConverts.release();
      expect(await waiter).toBeInstanceOf(CallerGone);
      // Whichever won (the retry's claim, or the clean-up and then the retry's new join),
      // the retry holds a grant that is live, and alone.
      const got = grantOf(await retry);
      await holdsAlone(y, line, got.grant);
      await Promise.all([x.close(), y.close()]);
    });

    // (c) A ticket's secret names one participant of one line.
    it("a ticket never redeems, leaves, renews or releases anything in another line", async () => {
      const l = engine();
      const name = uniqueName("team-a:x");
      const mine: LineRef = { kind: "lock", name };
      const sameName: LineRef = { kind: "semaphore", name };
      const theirs: LineRef = { kind: "lock", name: uniqueName("team-b:y") };
      const q = { ttl: 30, wait: 0, limit: 1, queue: true };
      // One caller, one Idempotency-Key, three lines: its participants share a key ID.
      const idem = { idempotencyKey: crypto.randomUUID(), caller: "key-a" };
      const holders = [
        grantOf(await l.acquire(mine, q)),
        grantOf(await l.acquire(theirs, { ...q, caller: "key-b" })),
        grantOf(await l.acquire(sameName, { ...q, limit: 1 })),
      ];
      const t1 = ticketOf(await l.acquire(mine, { ...q, ...idem }));
      const t2 = ticketOf(await l.acquire(theirs, { ...q, ...idem }));
      const t3 = ticketOf(await l.acquire(sameName, { ...q, ...idem }));
      expect(parseHandle(t1.ticket)?.keyId).toBe(parseHandle(t2.ticket)?.keyId);
      const other = ticketOf(await l.acquire(theirs, { ...q, caller: "key-b" }));
      const before = await Promise.all([mine, theirs, sameName].map((line) => standing(l, line)));
      for (const [ticket, line] of [
        [t1.ticket, theirs],
        [t1.ticket, sameName],
        [t2.ticket, mine],
        [other.ticket, mine],
        [holders[1]?.grant.lease ?? "", mine],
      ] as const) {
        await expect(l.redeem(line, ticket, { wait: 0 })).rejects.toBeInstanceOf(LockLost);
        await expect(l.leave(line, ticket)).rejects.toBeInstanceOf(LockLost);
        await expect(l.renew(line, ticket)).rejects.toBeInstanceOf(LockLost);
        await expect(l.release(line, ticket)).rejects.toBeInstanceOf(LockLost);
      }
      // Nothing moved: every holder and every place is as it was.
      expect(await Promise.all([mine, theirs, sameName].map((line) => standing(l, line)))).toEqual(before);
      for (const [ticket, line, position] of [
        [t1, mine, 0],
        [t2, theirs, 0],
        [t3, sameName, 0],
        [other, theirs, 1],
      ] as const) {
        expect(ticketOf(await l.redeem(line, ticket.ticket, { wait: 0 })).position).toBe(position);
      }
      for (const [i, line] of [mine, theirs, sameName].entries()) {
        expect((await l.renew(line, holders[i]?.grant.lease ?? "")).token).toBe(holders[i]?.grant.token);
      }
      await l.close();
    });

    // (d) Force release by token on a semaphore, racing the permit's release.
    it("a force release by token never ends another permit when the target left and a new permit came between read and delete", async () => {
      const holderSide = engine();
      const admin = lagging(shared.client());
      const adminSide = engine(admin.client);
      const line: LineRef = { kind: "semaphore", name: uniqueName("sem") };
      const o = { ttl: 30, wait: 0, limit: 2 };
      const p1 = grantOf(await holderSide.acquire(line, o)).grant;
      const p2 = grantOf(await holderSide.acquire(line, o)).grant;
      const start = keys.range(line).start;
      const reading = admin.pauseNext("scan", (s) => s === start);
      const forced = adminSide.forceRelease(line, p1.token);
      await reading.reached; // the admin's instance has read the permits (keys, leases) and lags
      // Meanwhile p1 is released, and a new permit takes its place (on p1's pooled lease).
      await holderSide.release(line, p1.lease);
      const p3 = grantOf(await holderSide.acquire(line, o)).grant;
      expect(parseHandle(p3.lease)?.lease).toBe(parseHandle(p1.lease)?.lease);
      reading.release();
      expect(await forced).toBeUndefined();
      // p2 and p3 are intact: held, renewable, and p1's reused lease was not revoked.
      expect((await holderSide.inspect(line))?.holders.map((h) => h.token)).toEqual([p2.token, p3.token]);
      for (const p of [p2, p3]) expect((await holderSide.renew(line, p.lease)).token).toBe(p.token);
      await expect(holderSide.acquire(line, o)).rejects.toBeInstanceOf(LockHeld);
      for (const p of [p2, p3]) await holderSide.release(line, p.lease);
      await Promise.all([holderSide.close(), adminSide.close()]);
    });
  });
});
