import { afterAll, beforeAll, expect, it } from "vitest";
import { type EtcdCluster, startEtcdCluster } from "../../scripts/verify/etcd-cluster.js";
import { type ServiceInstance, startInstance } from "../../scripts/verify/instance.js";
import { stillAfter } from "../support/http.js";

// Found by verify's long form: with more than 10 concurrent waiting acquires, the Node
// entry printed "MaxListenersExceededWarning: Possible EventTarget memory leak detected"
// on stderr, because every waiter listens to the one shutdown signal. Many waiters are
// normal; the process must stay quiet.
let cluster: EtcdCluster;
let service: ServiceInstance;
beforeAll(async () => {
  cluster = await startEtcdCluster(1);
  service = await startInstance({
    endpoints: cluster.endpoints,
    transport: "http",
    etcdTimeoutMs: 1_000,
    prefix: "w/",
  });
});
afterAll(async () => {
  await service?.kill();
  await cluster?.destroy();
});

it("serves 30 concurrent waiters without a warning", async () => {
  const post = (body: object) =>
    fetch(`${service.url}/locks/busy`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  expect((await post({ ttl: 10 })).status).toBe(201);
  const statuses = await Promise.all(Array.from({ length: 30 }, () => post({ wait: 1 }).then((r) => r.status)));
  expect(statuses.every((s) => s === 409)).toBe(true);
  expect(await stillAfter(200, () => service.errors())).toEqual([]);
});
