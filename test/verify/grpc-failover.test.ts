import { afterAll, beforeAll, expect, it } from "vitest";
import { type EtcdCluster, startEtcdCluster } from "../../scripts/verify/etcd-cluster.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { until } from "../support/http.js";

// Found by the verify "cluster" scenario: with one member of a 3-member cluster down,
// the gRPC transport sent every call to a random member, dead or not, so about a third
// of all requests answered 503 for as long as the member stayed down (the JSON gateway
// transport moved on to the next endpoint). A call must go to a live member.
let cluster: EtcdCluster;
beforeAll(async () => {
  cluster = await startEtcdCluster(3);
});
afterAll(async () => {
  await cluster?.destroy();
});

async function outcomes(n: number, call: () => Promise<unknown>) {
  const errors: unknown[] = [];
  for (let i = 0; i < n; i++) await call().catch((err) => errors.push(err));
  return errors;
}

it("routes around a dead member of the cluster, and every call fails as unavailable when all are down", async () => {
  const etcd = createGrpcEtcd({ endpoints: cluster.endpoints, timeoutMs: 1_000 });
  try {
    expect(await outcomes(10, () => etcd.get("k"))).toEqual([]);
    const leader = (await cluster.leader()) ?? 0;
    const follower = (leader + 1) % 3;
    await cluster.kill(follower);
    // At most the first call that lands on the dead member fails.
    expect((await outcomes(30, () => etcd.get("k"))).length).toBeLessThanOrEqual(1);
    await cluster.start(follower);

    for (let i = 0; i < 3; i++) await cluster.kill(i);
    const started = Date.now();
    const down = await outcomes(5, () => etcd.get("k"));
    expect(down).toHaveLength(5);
    for (const err of down) expect(err).toBeInstanceOf(EtcdUnavailableError);
    expect(Date.now() - started).toBeLessThan(5 * 1_000 + 1_000);
    await Promise.all([0, 1, 2].map((i) => cluster.start(i)));
    // Back without a restart of the client, once the members answer again.
    const answers = () =>
      etcd.get("k").then(
        () => true,
        () => false,
      );
    await until(answers, "a read once the members answer again", 20_000);
    expect(await answers()).toBe(true);
  } finally {
    await etcd.close();
  }
}, 60_000);
