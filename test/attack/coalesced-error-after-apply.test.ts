import { expect, it } from "vitest";
import type { JoinAllResult, JoinItem } from "../../src/etcd/types.js";
import { LockHeld } from "../../src/lock/index.js";
import { etcdWithClients } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { createTestLocks as createLocks } from "../support/locks.js";

/**
 * Attack on group commit: a multi-line join txn that etcd applied but whose answer came
 * back as an error that is not "unavailable" (gRPC INTERNAL/UNKNOWN/CANCELLED, e.g. a stream
 * reset after the write: translate() passes those through as plain errors) was once split
 * and each item sent again alone. Each then finds its own key, reads it as another holder's,
 * answers the caller 409 against itself and pools the lease, which is still bound to
 * that key. The pooled lease serves the next grant: a ghost lock nobody holds lives as
 * long as that lease is kept alive, and a force release of the ghost revokes the lease,
 * deleting the unrelated grant.
 */
const shared = etcdWithClients();

it("a multi-line join whose answer was an unclassified error never pools a lease still bound to a key", async () => {
  const inner = shared.client();
  let failNextBatch = true;
  const client = new Proxy(inner, {
    get(obj, prop, receiver) {
      if (prop !== "joinAll") return Reflect.get(obj, prop, receiver);
      return async (items: JoinItem[]): Promise<JoinAllResult> => {
        const r = await inner.joinAll(items);
        if (failNextBatch && items.length > 1) {
          failNextBatch = false;
          throw Object.assign(new Error("13 INTERNAL: Received RST_STREAM with code 2"), { code: 13 });
        }
        return r;
      };
    },
  });
  const locks = createLocks(client, { prefix: "c/", maxWaiters: 10 });
  const names = [uniqueName("first"), uniqueName("a"), uniqueName("b")];
  // Three concurrent acquires of three lines: their joins are coalesced.
  const results = await Promise.allSettled(names.map((n) => locks.acquire(n, { ttl: 30, wait: 0 })));
  const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
  const refusedNames = names.filter((_, i) => results[i]?.status === "rejected");
  expect(refusedNames.length, "no shared join txn was struck").toBeGreaterThan(1);
  // A new grant on this instance takes a pooled lease; then an admin force-releases the
  // refused callers' keys still there (their clean-up may not have landed yet): were one
  // of their leases pooled, that would delete the bystander's lock.
  const bystander = await locks.acquire(uniqueName("bystander"), { ttl: 30, wait: 0 });
  for (const name of refusedNames) await locks.forceRelease(name);
  // No key is left held by nobody: the clean-up of each refused create ends it.
  await until(
    async () => (await Promise.all(refusedNames.map((n) => locks.inspect(n)))).every((i) => i === undefined),
    "the refused callers' keys to be gone",
  );
  // A caller may be told the outcome is unknown (an error: 503 once the transport has
  // classified it, see test/unit/grpc-errors.test.ts), never 409 against its own key.
  for (const r of refused) expect(r).not.toBeInstanceOf(LockHeld);
  const info = await locks.inspect(bystander.grant.name);
  expect(info?.token, "a refused caller's lease was pooled and reused").toBe(bystander.grant.token);
  await locks.close();
});
