import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { LockHeld } from "../../src/lock/index.js";
import { parseHandle } from "../../src/lock/names.js";
import { gatewayOnNode } from "../../src/node/gateway.js";
import { startTestEtcd, type TestEtcd } from "../support/etcd.js";
import { uniqueName } from "../support/http.js";
import { createTestLocks as createLocks } from "../support/locks.js";

/**
 * Attack on the gateway transport's retry of a txn on the next endpoint. When a txn's
 * first attempt fails mid-flight (the connection to one endpoint drops) it is sent again
 * to the next endpoint, and a delete txn that then finds its keys absent is taken to have
 * been applied by the first attempt. But "absent" only says *someone* deleted the key: here
 * the holder's own release through another instance did (a client retrying a release
 * that timed out does exactly this). Both instances then believe they deleted the grant
 * and both pool its still-live lease. Each hands it to a new grant: one lease, two locks
 * (here two tenants'). Ending one (a release left unused in the pool and swept, close(), a
 * force release, an expiry) revokes or expires the lease and deletes the other tenant's lock.
 */

/**
 * A TCP proxy to etcd that can swallow the next gateway txn (the request never reaches
 * etcd) and then drop that connection without an answer. Streams pass through untouched.
 */
async function cuttingProxy(upstream: string) {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  let armed = false;
  let held: Socket | undefined;
  let onHeld: () => void = () => {};
  const server = createServer((client) => {
    const up = connect(Number(target.port), target.hostname);
    let holding = false;
    client.on("data", (chunk: Buffer) => {
      if (holding) return;
      if (armed && chunk.toString("latin1", 0, 20).startsWith("POST /v3/kv/txn ")) {
        armed = false;
        holding = true;
        held = client;
        onHeld();
        return;
      }
      up.write(chunk);
    });
    up.on("data", (chunk: Buffer) => {
      if (!holding) client.write(chunk);
    });
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on("close", end);
    up.on("close", end);
    client.on("error", end);
    up.on("error", end);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** The next txn is held; resolves once it has arrived. */
    holdNextTxn(): Promise<void> {
      armed = true;
      return new Promise((r) => {
        onHeld = r;
      });
    },
    /** Drops the held txn's connection without an answer. */
    cut() {
      held?.destroy();
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startTestEtcd();
});
afterAll(async () => {
  await etcd?.destroy();
});

it("a release whose txn is retried on another endpoint never pools a lease another instance pooled too", async () => {
  const p1 = await cuttingProxy(etcd.endpoint);
  const p2 = await cuttingProxy(etcd.endpoint);
  const e1 = gatewayOnNode({ endpoints: [p1.url, p2.url], timeoutMs: 3000 });
  const e2 = gatewayOnNode({ endpoints: [etcd.endpoint], timeoutMs: 3000 });
  const direct = gatewayOnNode({ endpoints: [etcd.endpoint], timeoutMs: 3000 });
  const one = createLocks(e1, { prefix: "g/", maxWaiters: 10 });
  const two = createLocks(e2, { prefix: "g/", maxWaiters: 10 });
  try {
    const x = uniqueName("x");
    const granted = await two.acquire(x, { ttl: 30, wait: 0 });
    const lease = parseHandle(granted.grant.lease)?.lease;

    // The holder releases through instance 1; its delete txn's first attempt hangs on p1...
    const held = p1.holdNextTxn();
    const viaOne = one.release(x, granted.grant.lease);
    await held;
    // ...so the holder's retry goes through instance 2 and releases (204), pooling the lease there.
    await two.release(x, granted.grant.lease);
    // p1's connection drops; instance 1 sends the txn again through p2: the key is gone.
    p1.cut();
    // Instance 1 cannot know whether its first attempt deleted the key: it must say so
    // (503, outcome unknown) and keep the lease out of its pool, not answer 204 and pool it.
    await expect(viaOne).rejects.toBeInstanceOf(EtcdUnavailableError);

    // Two tenants' acquires, one on each instance.
    const mine = await one.acquire(`team-a:${uniqueName()}`, { ttl: 30, wait: 0 });
    const theirs = await two.acquire(`team-b:${uniqueName()}`, { ttl: 30, wait: 0 });
    const l1 = parseHandle(mine.grant.lease)?.lease;
    const l2 = parseHandle(theirs.grant.lease)?.lease;
    // Evidence: one lease, two locks.
    expect.soft(l1 === lease && l2 === lease, `leases ${l1} ${l2} (released ${lease})`).toBe(false);

    // team-a releases; instance 1 shuts down (revoking its pooled leases).
    await one.release(mine.grant.name, mine.grant.lease);
    await one.close();
    // team-b still holds its lock: nobody else may take it.
    const info = await two.inspect(theirs.grant.name);
    expect(info?.token, "team-b's lock was deleted by instance 1 revoking a lease it shared").toBe(theirs.grant.token);
    await expect(two.acquire(theirs.grant.name, { ttl: 30, wait: 0 })).rejects.toBeInstanceOf(LockHeld);
  } finally {
    await Promise.allSettled([one.close(), two.close()]);
    await Promise.allSettled([e1.close(), e2.close(), direct.close(), p1.stop(), p2.stop()]);
  }
});
