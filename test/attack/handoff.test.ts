import { describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { createLines, LockLost } from "../../src/lock/index.js";
import type { LineRef } from "../../src/lock/types.js";
import { etcdWithClients } from "../support/etcd.js";
import { leaseIdOf as leaseOf, uniqueName, until } from "../support/http.js";
import { heldWatches } from "../support/lagging.js";
import { grantOf } from "../support/locks.js";

/**
 * Attacks on local handoff (a release that makes its instance's next waiter the holder in
 * its own txn) against a real etcd, over both transports: a release judged from a copy
 * of the line that lags behind etcd.
 */

const PREFIX = "attack-handoff/";

const TRANSPORTS = [
  { transport: "grpc", make: (endpoint: string) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
  { transport: "gateway", make: (endpoint: string) => createGatewayEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
] as const;

describe.each(TRANSPORTS)("attacks on local handoff over $transport (real etcd)", ({ make }) => {
  const shared = etcdWithClients(make);

  it("a release that reaches an instance after its grant ended elsewhere never keeps alive the lease, now another grant's", async () => {
    const direct = shared.client();
    // Instance A, whose copies of lines can lag; instance B.
    const lagging = heldWatches(shared.client());
    const a = createLines(lagging.client, { prefix: PREFIX, maxWaiters: 100 });
    const b = createLines(shared.client(), { prefix: PREFIX, maxWaiters: 100 });
    const n: LineRef = { kind: "lock", name: uniqueName("n") };
    const m: LineRef = { kind: "lock", name: uniqueName("m") };
    const ttl = 10;
    const held = grantOf(await a.acquire(n, { ttl, wait: 0, limit: 1 })).grant;
    const lease = leaseOf(held.lease);
    const waiter = a.acquire(n, { ttl, wait: 30, limit: 1 });
    waiter.catch(() => {});
    await until(async () => (await a.inspect(n))?.waiters === 1, "A's waiter in line");
    lagging.hold();
    // The release reaches B first; B pools the lease, and its next grant of that TTL takes it.
    await b.release(n, held.lease);
    const x = grantOf(await b.acquire(m, { ttl, wait: 0, limit: 1, lockDelay: 1 })).grant;
    expect(leaseOf(x.lease)).toBe(lease);
    // X's lease counts down (etcd reports whole seconds)...
    await until(async () => (await direct.leaseTimeToLive(lease)).ttl <= ttl - 3, "X's lease to count down");
    // ... when the release reaches A, whose copy still shows its waiter next.
    await expect(a.release(n, held.lease)).rejects.toBeInstanceOf(LockLost);
    // Nobody but X's holder reset X's lease: it still runs out when X's TTL says.
    expect((await direct.leaseTimeToLive(lease)).ttl).toBeLessThanOrEqual(ttl - 3);
    lagging.flush();
    const w = grantOf(await waiter).grant;
    await Promise.all([a.release(n, w.lease), b.release(m, x.lease)]);
    await Promise.all([a.close(), b.close()]);
  });
});
