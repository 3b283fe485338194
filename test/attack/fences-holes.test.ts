import { describe, expect, it } from "vitest";
import { createLines, LockHeld } from "../../src/lock/index.js";
import type { LineRef } from "../../src/lock/types.js";
import { etcdWithClients, RUNTIMES } from "../support/etcd.js";
import { uniqueName } from "../support/http.js";
import { grantOf } from "../support/locks.js";

const PREFIX = "fences-holes/";

describe("fences: holes found by attack (real etcd)", () => {
  const shared = etcdWithClients();

  describe.each(RUNTIMES)("with $how", ({ runtime }) => {
    const engine = (client = shared.client()) => createLines(client, { prefix: PREFIX, maxWaiters: 100, ...runtime });
    const lock = (label: string): LineRef => ({ kind: "lock", name: uniqueName(label) });

    it("a lock held by a grant with a lockDelay is refused as held (with its holder), not as in its lock-delay", async () => {
      const x = engine();
      const line = lock("held-delay");
      const { grant } = grantOf(await x.acquire(line, { ttl: 30, wait: 0, limit: 1, owner: "a", lockDelay: 20 }));
      // From another instance (a blind join) and from the same one.
      for (const e of [engine(), x]) {
        const err = await e.acquire(line, { ttl: 30, wait: 0, limit: 1 }).catch((r: unknown) => r);
        expect(err).toBeInstanceOf(LockHeld);
        expect((err as LockHeld).reason).toBeUndefined();
        expect((err as LockHeld).holder?.token).toBe(grant.token);
        expect((err as LockHeld).holder?.owner).toBe("a");
        expect((err as LockHeld).retryAfter).toBeLessThanOrEqual(30);
      }
      await x.close();
    });
  });
});
