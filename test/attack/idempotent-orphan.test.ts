import { describe, expect, it } from "vitest";
import { type EtcdClient, EtcdUnavailableError, type JoinAllResult, type JoinItem } from "../../src/etcd/types.js";
import { LockLost } from "../../src/lock/index.js";
import { etcdWithClients, RUNTIMES } from "../support/etcd.js";
import { uniqueName } from "../support/http.js";
import { createTestLocks as createLocks } from "../support/locks.js";

/**
 * Attack: an idempotent retry receives a grant (200, replayed) that the instance which
 * made it is at that moment cleaning up as orphaned. The clean-up then ends the grant the
 * retry was just handed, a second caller is granted the lock, and both have been told
 * they hold it. The caller that got the 200 learns only at its next renew (410).
 *
 * Expected (what these tests assert): a grant handed to a caller (a 200 replay) is never
 * ended behind its back by the clean-up of an earlier attempt of the same request.
 */

/**
 * Wraps a client: the next join txn is applied by etcd, then reported as unreachable.
 * From then on (an instance lagging behind etcd), every call that can end a grant (a read
 * before a delete, a delete txn, a revoke) waits until `open()`; `cleanedUp()` resolves
 * when every such call made so far, and any it led to, has been answered.
 */
function lostJoinAnswer(inner: EtcdClient) {
  let failNextJoin = false;
  let gate: Promise<void> | undefined;
  let open: () => void = () => {};
  const pending: Promise<unknown>[] = [];
  const held = new Set(["get", "deleteAllIfUnchanged", "leaseRevoke"]);
  const client = new Proxy(inner, {
    get(obj, prop, receiver) {
      if (prop === "joinAll") {
        return async (items: JoinItem[]): Promise<JoinAllResult> => {
          const r = await inner.joinAll(items);
          if (failNextJoin) {
            failNextJoin = false;
            gate = new Promise<void>((r) => {
              open = r;
            });
            // The txn applied; its answer is lost (a deadline, a connection cut after the write).
            throw new EtcdUnavailableError("etcd txn timed out after 3000 ms");
          }
          return r;
        };
      }
      const value = Reflect.get(obj, prop, receiver);
      if (typeof value !== "function" || !held.has(String(prop))) return value;
      return (...args: unknown[]) => {
        const wait = gate;
        const done = (async () => {
          if (wait) await wait;
          return value.apply(obj, args);
        })();
        pending.push(done.catch(() => {}));
        return done;
      };
    },
  });
  return {
    client,
    async cleanedUp() {
      for (let seen = -1; seen !== pending.length; ) {
        seen = pending.length;
        await Promise.all(pending);
        await new Promise((r) => setImmediate(r));
      }
    },
    loseNextJoinAnswer() {
      failNextJoin = true;
    },
    open() {
      open();
      gate = undefined;
    },
  };
}

describe("attack: idempotent replay vs. clean-up of the same request's earlier attempt", () => {
  const shared = etcdWithClients();
  const client = () => shared.client();

  for (const { how, runtime } of RUNTIMES) {
    it(`a hang-up's clean-up does not end the grant a retry was just given (${how})`, async () => {
      const locks = createLocks(client(), { prefix: "a/", maxWaiters: 10, ...runtime });
      const other = createLocks(client(), { prefix: "a/", maxWaiters: 10, ...runtime });
      const name = uniqueName("replayed");
      const idem = { idempotencyKey: crypto.randomUUID(), caller: "key-a" };
      const hangUp = new AbortController();

      // Attempt 1 is granted; its answer is still on its way when the caller times out.
      const first = await locks.acquire(name, { ttl: 30, wait: 0, signal: hangUp.signal, ...idem });
      // The caller's retry (same Idempotency-Key, here through another instance) gets it: 200.
      const retry = await other.acquire(name, { ttl: 30, wait: 0, ...idem });
      expect(retry.replayed).toBe(true);
      expect(retry.grant.lease).toBe(first.grant.lease);
      // Only now does instance 1 notice that attempt 1's connection is gone.
      hangUp.abort();

      // Caller A holds `retry.grant` and was told so. Nobody else may be granted the lock.
      const b = await other.acquire(name, { ttl: 30, wait: 2, caller: "key-b" }).then(
        (g) => g,
        (e: unknown) => e,
      );
      const twoHolders = !(b instanceof Error);
      if (twoHolders) {
        // Evidence: A's renew is refused only now.
        await expect(other.renew(name, retry.grant.lease)).rejects.toBeInstanceOf(LockLost);
      }
      expect(twoHolders, "B was granted a lock that A had been handed by a 200 replay").toBe(false);
      await Promise.all([locks.close(), other.close()]);
    });

    it(`an unknown-outcome join's clean-up does not end the grant a retry was given meanwhile (${how})`, async () => {
      const lagging = lostJoinAnswer(client());
      const locks = createLocks(lagging.client, { prefix: "a/", maxWaiters: 10, ...runtime });
      const other = createLocks(client(), { prefix: "a/", maxWaiters: 10, ...runtime });
      const name = uniqueName("unknown");
      const idem = { idempotencyKey: crypto.randomUUID(), caller: "key-a" };

      lagging.loseNextJoinAnswer();
      // Attempt 1: the txn applied, the answer was lost → 503 to the caller.
      await expect(locks.acquire(name, { ttl: 30, wait: 0, ...idem })).rejects.toBeInstanceOf(EtcdUnavailableError);
      // The caller retries at once (what leasehold/client does on a 503): 200, the grant.
      const retry = await other.acquire(name, { ttl: 30, wait: 0, ...idem });
      expect(retry.replayed).toBe(true);
      // Instance 1's clean-up of attempt 1 lands now.
      lagging.open();
      await lagging.cleanedUp();

      const b = await other.acquire(name, { ttl: 30, wait: 2, caller: "key-b" }).then(
        (g) => g,
        (e: unknown) => e,
      );
      const twoHolders = !(b instanceof Error);
      expect(twoHolders, "B was granted a lock that A had been handed by a 200 replay").toBe(false);
      await Promise.all([locks.close(), other.close()]);
    });
  }
});
