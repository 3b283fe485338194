import { describe, expect, it } from "vitest";
import type { GuardedWrite } from "../../src/etcd/types.js";
import { createLines, FenceStale, LockHeld, LockLost } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import { decodeParticipant } from "../../src/lock/participant.js";
import type { LineRef } from "../../src/lock/types.js";
import { etcdWithClients, RUNTIMES } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { lagging } from "../support/lagging.js";
import { grantOf } from "../support/locks.js";

const PREFIX = "fences-attack/";
const keys = new LineKeys(PREFIX);

/**
 * The fences' bad paths on a real etcd: a grant that ends between a step's read and its
 * txn, stale handles of a name that was granted again, and what a lock-delay marker
 * does when its grant ends each way.
 */
describe("attacks on fences (real etcd)", () => {
  const shared = etcdWithClients();

  describe.each(RUNTIMES)("with $how", ({ runtime }) => {
    const engine = (client = shared.client()) => createLines(client, { prefix: PREFIX, maxWaiters: 100, ...runtime });
    const lock = (label: string): LineRef => ({ kind: "lock", name: uniqueName(label) });
    const marker = async (line: LineRef) => (await shared.client().get(keys.delayMarker(line))).kv;
    const stateOf = async (line: LineRef) => (await shared.client().get(keys.state(line))).kv;

    it("a state write whose grant is forced out between its read and its txn writes nothing", async () => {
      const lag = lagging(shared.client());
      const x = engine(lag.client);
      const admin = engine();
      const line = lock("state-race");
      const { grant } = grantOf(await x.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      // Held after the handle check read the grant, before the guarded write is sent.
      const writing = lag.pauseNext(
        "guardedWrite",
        (w) => (w as GuardedWrite).put?.[0]?.key === keys.state(line),
        true,
      );
      const write = x.writeState(line, grant.lease, "from a holder that is about to be forced out");
      await writing.reached;
      expect(await admin.forceRelease(line)).toBeDefined();
      const next = grantOf(await admin.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
      writing.release();
      await expect(write).rejects.toBeInstanceOf(LockLost);
      expect(await stateOf(line)).toBeUndefined();
      // The new holder writes, and its token is what the state records.
      expect((await admin.writeState(line, next.lease, "b")).token).toBe(next.token);
      await Promise.all([x.close(), admin.close()]);
    });

    it("a fence check is answered from etcd: a grant forced out by another instance is stale at once", async () => {
      const x = engine();
      const y = engine();
      const line = lock("fence");
      const { grant } = grantOf(await x.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      await x.fence(line, grant.token);
      await y.forceRelease(line, grant.token);
      const err = await x.fence(line, grant.token).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FenceStale);
      expect((err as FenceStale).current).toEqual([]);
      await Promise.all([x.close(), y.close()]);
    });

    it("a lock-delay marker lives on its own lease, renewed with the grant's, and goes with a release", async () => {
      const x = engine();
      const line = lock("marker");
      const { grant } = grantOf(await x.acquire(line, { ttl: 5, wait: 0, limit: 1, lockDelay: 20 }));
      const m = await marker(line);
      expect(m).toBeDefined();
      const held = (await shared.client().get(keys.participant(line, grant.lease.slice(16, 32)))).kv;
      expect(held && decodeParticipant(held.value).dl).toBe(m?.lease.toString(16));
      expect(m?.lease).not.toBe(held?.lease);
      const { ttl } = await shared.client().leaseTimeToLive(m?.lease ?? 0n);
      expect(ttl).toBeGreaterThan(20);
      expect(ttl).toBeLessThanOrEqual(25);
      await x.renew(line, grant.lease);
      expect((await shared.client().leaseTimeToLive(m?.lease ?? 0n)).ttl).toBeGreaterThan(20);
      await x.release(line, grant.lease);
      expect(await marker(line)).toBeUndefined();
      await until(
        async () => (await shared.client().leaseTimeToLive(m?.lease ?? 0n)).ttl < 0,
        "the marker's lease revoked",
      );
      await x.close();
    });

    it("a former holder's handle never ends the next holder's lock-delay marker", async () => {
      const x = engine();
      const line = lock("marker-stale");
      const a = grantOf(await x.acquire(line, { ttl: 2, wait: 0, limit: 1, lockDelay: 1 })).grant;
      // a expires; the next grant comes once its delay is over.
      const b = grantOf(await x.acquire(line, { ttl: 30, wait: 20, limit: 1, lockDelay: 30 })).grant;
      expect(b.token).toBeGreaterThan(a.token);
      const m = await marker(line);
      // The same instance made a's grant: its release would skip the read, and must still refuse.
      await expect(x.release(line, a.lease)).rejects.toBeInstanceOf(LockLost);
      await expect(engine().release(line, a.lease)).rejects.toBeInstanceOf(LockLost);
      await expect(x.writeState(line, a.lease, "stale")).rejects.toBeInstanceOf(LockLost);
      expect(await marker(line)).toEqual(m);
      // Forced, b's grant keeps the lock back: the marker is on a fresh lease of the delay.
      await x.forceRelease(line);
      const after = await marker(line);
      expect(after?.lease).not.toBe(m?.lease);
      expect((await shared.client().leaseTimeToLive(after?.lease ?? 0n)).ttl).toBeLessThanOrEqual(30);
      const refused = await x.acquire(line, { ttl: 30, wait: 0, limit: 1 }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(LockHeld);
      expect((refused as LockHeld).reason).toBe("lock-delay");
      await until(
        async () => (await shared.client().leaseTimeToLive(m?.lease ?? 0n)).ttl < 0,
        "the forced grant's old marker lease revoked",
      );
      await x.close();
    });

    it("a lock without lockDelay is not held back: its expiry frees it as before", async () => {
      const x = engine();
      const line = lock("no-delay");
      grantOf(await x.acquire(line, { ttl: 2, wait: 0, limit: 1 }));
      expect(await marker(line)).toBeUndefined();
      await until(async () => (await x.inspect(line)) === undefined, "the grant to expire");
      grantOf(await x.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      await x.close();
    });
  });
});
