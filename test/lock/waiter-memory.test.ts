import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { type EtcdClient, type KeyValue, prefixEnd } from "../../src/etcd/types.js";
import { createLines } from "../../src/lock/index.js";
import type { LineRef } from "../../src/lock/types.js";
import { etcdWithClients } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { grantOf } from "../support/locks.js";

/**
 * What a parked waiter keeps alive, against a real etcd over both transports. A waiter
 * waits for up to a minute, and an instance may have 10,000 of them: whatever each keeps
 * beyond its own place costs memory times that many. The line read that sent an acquire
 * into the line (its oldest participants, fresh from etcd) has served its purpose once the
 * acquire waits; the wait's own copy of the line is the one that counts.
 */

// A full collection on demand, for this test process only.
setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;

const TRANSPORTS = [
  { transport: "grpc", make: (endpoint: string) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
  { transport: "gateway", make: (endpoint: string) => createGatewayEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
] as const;

const lineRange = (line: LineRef): [string, string] => {
  const start = `waiter-memory/lock/${line.name}#`;
  return [start, prefixEnd(start)];
};

describe.each(TRANSPORTS)("a parked waiter over $transport (real etcd)", ({ make }) => {
  const shared = etcdWithClients(make);

  it("keeps none of the line read that sent it to wait", async () => {
    const inner = shared.client();
    // Every key the engine's reads of the line's oldest participants returned.
    const read: WeakRef<KeyValue>[] = [];
    const client: EtcdClient = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === "scan") {
          return async (...args: Parameters<EtcdClient["scan"]>) => {
            const r = await target.scan(...args);
            if (args[2].byCreate && args[2].limit !== undefined) for (const kv of r.kvs) read.push(new WeakRef(kv));
            return r;
          };
        }
        return Reflect.get(target, prop, receiver);
      },
    });
    const lines = createLines(client, { prefix: "waiter-memory/", maxWaiters: 100 });
    const line: LineRef = { kind: "lock", name: uniqueName("parked") };
    const holder = grantOf(await lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
    const waiting = [1, 2, 3].map(() => lines.acquire(line, { ttl: 30, wait: 30, limit: 1 }));
    for (const w of waiting) w.catch(() => {});
    await until(
      async () => (await inner.scan(...lineRange(line), { limit: 10 })).kvs.length === 4,
      "three waiters in line",
    );
    await until(() => lines.activeWaiters === 3, "three waiters parked");
    // The later waiters found the line watched, so they read its oldest before joining.
    expect(read.length).toBeGreaterThan(0);
    // Each check collects in a job after the one that made the WeakRefs (their targets
    // live to its end). A read kept by the acquire would live as long as its wait (30 s).
    await until(() => {
      collect();
      return read.every((r) => r.deref() === undefined);
    }, "the line reads collected while the waiters wait");
    expect(lines.activeWaiters).toBe(3);

    await lines.release(line, holder.lease);
    // Each releases once granted: they hold in the order they joined, not the array's.
    await Promise.all(waiting.map(async (w) => lines.release(line, grantOf(await w).grant.lease)));
    await lines.close();
  });
});
