import { describe, expect, it } from "vitest";
import type { GuardedWrite } from "../../src/etcd/types.js";
import { createLines, LockHeld } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import type { LineRef } from "../../src/lock/types.js";
import { etcdWithClients, RUNTIMES } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { lagging } from "../support/lagging.js";
import { grantOf } from "../support/locks.js";

const PREFIX = "fences-holes/";
const keys = new LineKeys(PREFIX);

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

    it("two attempts of one idempotent lockDelay waiter: the one whose turn's txn lost gets the same grant at once", async () => {
      const lag = lagging(shared.client());
      const x = engine(lag.client);
      const y = engine();
      const line = lock("idem-turn");
      const holder = grantOf(await y.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
      const o = { ttl: 30, wait: 8, limit: 1, lockDelay: 30, idempotencyKey: "turn-1" };
      // x's turn txn is held before it is sent, so y's (a retry waiting on the same place) wins.
      const turn = lag.pauseNext(
        "guardedWrite",
        (w) => (w as GuardedWrite).put?.[0]?.key.startsWith(keys.range(line).start) === true,
        true,
      );
      const first = x.acquire(line, o);
      await until(async () => (await y.inspect(line))?.waiters === 1, "the first attempt to wait");
      const retry = y.acquire(line, o);
      await y.release(line, holder.lease);
      const won = grantOf(await retry).grant;
      await turn.reached;
      const sent = Date.now();
      turn.release();
      const again = grantOf(await first);
      expect(again.replayed).toBe(true);
      expect(again.grant.token).toBe(won.token);
      // Claimed from the line's next copy, not after waiting out its own grant's marker.
      expect(Date.now() - sent).toBeLessThan(3_000);
      await Promise.all([x.close(), y.close()]);
    });
  });
});
