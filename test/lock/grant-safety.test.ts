import { describe, expect, it } from "vitest";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import type { EtcdClient, JoinItem, ScanQuery, ScanResult } from "../../src/etcd/types.js";
import { LockHeld, LockLost } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import { parseHandle } from "../../src/lock/names.js";
import { gatewayOnNode } from "../../src/node/gateway.js";
import { etcdWithClients, RUNTIMES } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { createTestLocks as createLocks } from "../support/locks.js";

/**
 * Paths where a grant could be ended on the strength of something read earlier. Each
 * test stops one instance between two of its etcd calls (a scripted pause around the
 * real client, so the race happens every time), lets another instance change the lock
 * meanwhile, then resumes it.
 */

/** Where a lock line's keys start (what a force release reads). */
const lineStart = (name: string) => new LineKeys("t/").range({ kind: "lock", name }).start;

/** Pauses a `scan` of one line after etcd answered it, until `resume` is called. */
function pausingScans(inner: EtcdClient) {
  let target: string | undefined;
  let paused: (() => void) | undefined;
  let reached: () => void = () => {};
  const client = new Proxy(inner, {
    get(obj, prop, receiver) {
      if (prop !== "scan") return Reflect.get(obj, prop, receiver);
      return async (start: string, end: string, q: ScanQuery): Promise<ScanResult> => {
        const result = await inner.scan(start, end, q);
        if (start === target) {
          target = undefined;
          reached();
          await new Promise<void>((r) => {
            paused = r;
          });
        }
        return result;
      };
    },
  });
  return {
    client,
    /** The next `scan` from `start` waits after its answer; resolves when it is waiting. */
    pauseNext(start: string): Promise<void> {
      target = start;
      return new Promise<void>((r) => {
        reached = r;
      });
    },
    resume() {
      paused?.();
    },
  };
}

const transports: { name: string; create(endpoint: string): EtcdClient }[] = [
  { name: "grpc", create: (endpoint) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
  { name: "gateway", create: (endpoint) => gatewayOnNode({ endpoints: [endpoint], timeoutMs: 3000 }) },
];

describe.each(transports)("grants are only ever ended by their own revision ($name)", (transport) => {
  const shared = etcdWithClients(transport.create);
  const client = () => shared.client();

  for (const { how, runtime } of RUNTIMES) {
    it(`force release that read a lease which was then released and reused for another tenant's lock leaves that lock alone (${how})`, async () => {
      const holderSide = createLocks(client(), { prefix: "t/", maxWaiters: 10, ...runtime });
      const admin = pausingScans(client());
      const adminSide = createLocks(admin.client, { prefix: "t/", maxWaiters: 10, ...runtime });
      const mine = `team-a:${uniqueName()}`;
      const theirs = `team-b:${uniqueName()}`;

      const first = await holderSide.acquire(mine, { ttl: 30, wait: 0 });
      const reading = admin.pauseNext(lineStart(mine));
      const forced = adminSide.forceRelease(mine);
      await reading; // the admin's instance has read the line (the holder's key and lease) and is lagging

      // Meanwhile: the holder releases, and the pooled lease goes to another tenant's lock.
      await holderSide.release(mine, first.grant.lease);
      const other = await holderSide.acquire(theirs, { ttl: 30, wait: 0 });
      expect(parseHandle(other.grant.lease)?.lease).toBe(parseHandle(first.grant.lease)?.lease);

      admin.resume();
      expect(await forced).toBeUndefined(); // the grant it read is gone, and nothing else is held there

      // The other tenant's lock is intact: still held, by the same grant, renewable.
      expect((await holderSide.inspect(theirs))?.token).toBe(other.grant.token);
      expect((await holderSide.renew(theirs, other.grant.lease)).token).toBe(other.grant.token);
      // And nobody else can take it.
      await expect(adminSide.acquire(theirs, { ttl: 30, wait: 0 })).rejects.toBeInstanceOf(LockHeld);
      await holderSide.release(theirs, other.grant.lease);
      await Promise.all([holderSide.close(), adminSide.close()]);
    });

    it(`force release that read a grant which then changed hands ends the new grant, not a stale lease (${how})`, async () => {
      const holderSide = createLocks(client(), { prefix: "t/", maxWaiters: 10, ...runtime });
      const admin = pausingScans(client());
      const adminSide = createLocks(admin.client, { prefix: "t/", maxWaiters: 10, ...runtime });
      const name = uniqueName("forced");
      const first = await holderSide.acquire(name, { ttl: 30, wait: 0 });
      const reading = admin.pauseNext(lineStart(name));
      const forced = adminSide.forceRelease(name);
      await reading;
      await holderSide.release(name, first.grant.lease);
      const second = await holderSide.acquire(name, { ttl: 30, wait: 0 });
      admin.resume();
      expect(await forced).toBeDefined();
      expect(await holderSide.inspect(name)).toBeUndefined();
      await expect(holderSide.renew(name, second.grant.lease)).rejects.toBeInstanceOf(LockLost);
      // The forced grant's lease was revoked: a lease bound to nothing does not linger.
      const lease = parseHandle(second.grant.lease)?.lease ?? 0n;
      await until(
        async () => (await client().leaseTimeToLive(lease)).ttl === -1,
        "the forced grant's lease to be revoked",
      );
      await Promise.all([holderSide.close(), adminSide.close()]);
    });

    it(`a grant whose first caller hung up after an idempotent retry received it is not revoked through a reused lease (${how})`, async () => {
      const locks = createLocks(client(), { prefix: "t/", maxWaiters: 10, ...runtime });
      const mine = uniqueName("orphan");
      const theirs = uniqueName("bystander");
      const hangUp = new AbortController();
      const idem = { idempotencyKey: crypto.randomUUID(), caller: "" };
      // The first request's grant is made; its answer is still being written...
      const first = await locks.acquire(mine, { ttl: 30, wait: 0, signal: hangUp.signal, ...idem });
      // ...while the client's retry receives the same grant, releases it, and the lease
      // is reused for another lock.
      const retry = await locks.acquire(mine, { ttl: 30, wait: 0, ...idem });
      expect(retry).toMatchObject({ replayed: true, grant: { lease: first.grant.lease } });
      await locks.release(mine, retry.grant.lease);
      const other = await locks.acquire(theirs, { ttl: 30, wait: 0 });
      expect(parseHandle(other.grant.lease)?.lease).toBe(parseHandle(first.grant.lease)?.lease);
      // Now the first connection drops: the orphaned grant is cleaned up, by its own revision.
      hangUp.abort();
      // Let the clean-up reach etcd: a write after it is ordered after it.
      const probe = await locks.acquire(uniqueName("probe"), { ttl: 30, wait: 0 });
      await locks.release(probe.grant.name, probe.grant.lease);
      expect((await locks.inspect(theirs))?.token).toBe(other.grant.token);
      expect((await locks.renew(theirs, other.grant.lease)).token).toBe(other.grant.token);
      await locks.release(theirs, other.grant.lease);
      await locks.close();
    });

    it(`a join txn sent twice (its first answer lost) grants the key it made, never pooling its lease (${how})`, async () => {
      // A transport that resends a txn whose answer it lost: the second send finds the key
      // the first one made, bound to this very lease.
      const twice = new Proxy(client(), {
        get(obj, prop, receiver) {
          if (prop !== "joinAll") return Reflect.get(obj, prop, receiver);
          return async (items: JoinItem[]) => {
            await obj.joinAll(items);
            return obj.joinAll(items);
          };
        },
      });
      const locks = createLocks(twice, { prefix: "t/", maxWaiters: 10, ...runtime });
      const name = uniqueName("twice");
      const { grant } = await locks.acquire(name, { ttl: 30, wait: 0 });
      expect((await locks.inspect(name))?.token).toBe(grant.token);
      // The lease was not pooled: the next grant gets another one, and the first stays held.
      const next = await locks.acquire(uniqueName("next"), { ttl: 30, wait: 0 });
      expect(parseHandle(next.grant.lease)?.lease).not.toBe(parseHandle(grant.lease)?.lease);
      expect((await locks.renew(name, grant.lease)).token).toBe(grant.token);
      await locks.close();
    });

    it(`a grant whose caller hung up before the answer is ended (${how})`, async () => {
      const locks = createLocks(client(), { prefix: "t/", maxWaiters: 10, ...runtime });
      const name = uniqueName("gone");
      const hangUp = new AbortController();
      const { grant } = await locks.acquire(name, { ttl: 30, wait: 0, signal: hangUp.signal });
      hangUp.abort();
      await until(async () => (await locks.inspect(name)) === undefined, "the abandoned grant to end");
      await expect(locks.renew(name, grant.lease)).rejects.toBeInstanceOf(LockLost);
      await locks.close();
    });
  }
});
