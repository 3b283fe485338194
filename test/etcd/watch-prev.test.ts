import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { type EtcdClient, prefixEnd } from "../../src/etcd/types.js";
import { createIfAbsent } from "../../src/lock/strategies/group-commit.js";
import { gatewayOnNode } from "../../src/node/gateway.js";
import { startTestEtcd, type TestEtcd } from "../support/etcd.js";
import { until } from "../support/http.js";
import { watchingRange } from "../support/watches.js";

/**
 * What event feeds need of a transport beyond the conformance suite: a watch that
 * carries each key's previous version, and a scan pinned to one revision (a listing
 * read a page at a time at one revision).
 */
const transports = [
  { name: "gateway", create: (e: string) => createGatewayEtcd({ endpoints: [e], timeoutMs: 2000 }) },
  { name: "grpc", create: (e: string) => createGrpcEtcd({ endpoints: [e], timeoutMs: 2000 }) },
  { name: "gateway on Node", create: (e: string) => gatewayOnNode({ endpoints: [e], timeoutMs: 2000 }) },
];

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startTestEtcd();
});
afterAll(async () => {
  await etcd?.destroy();
});

let seq = 0;
const uniquePrefix = (label: string) => `prev/${label}/${Date.now()}-${seq++}/`;

describe.each(transports)("$name", (transport) => {
  let client: EtcdClient;
  beforeAll(() => {
    client = transport.create(etcd.endpoint);
  });
  afterAll(async () => {
    await client?.close();
  });

  it("watchRange with prevKv: a put's and a delete's previous version, none for a creation", async () => {
    const prefix = uniquePrefix("watch");
    const key = `${prefix}a`;
    const r1 = (await createIfAbsent(client, key, "one", 0n)).revision;
    const r2 = await client.putIfUnchanged({ key, modRevision: r1, value: "two", lease: 0n });
    const r3 = (await client.deleteAllIfUnchanged([{ key, modRevision: r2 }])).revision;
    const plain = watchingRange(client, prefix, prefixEnd(prefix), r1);
    const w = watchingRange(client, prefix, prefixEnd(prefix), r1, { prevKv: true });
    await until(() => w.calls.length >= 3 && plain.calls.length >= 3, "three revisions on both watches");
    const first = { key, value: "one", createRevision: r1, modRevision: r1, lease: 0n };
    const second = { ...first, value: "two", modRevision: r2 };
    expect(w.calls).toEqual([
      [r1, [{ type: "put", kv: first }]],
      [r2, [{ type: "put", kv: second, prev: first }]],
      [r3, [{ type: "delete", key, revision: r3, prev: second }]],
    ]);
    // Without the option, no previous versions.
    expect(plain.calls.flatMap(([, events]) => events).some((e) => "prev" in e)).toBe(false);
    w.stop();
    plain.stop();
  });

  it("scan at a revision reads the range as it was then", async () => {
    const prefix = uniquePrefix("scan");
    const end = prefixEnd(prefix);
    const r1 = (await createIfAbsent(client, `${prefix}a`, "a", 0n)).revision;
    await createIfAbsent(client, `${prefix}b`, "b", 0n);
    await client.deleteAllIfUnchanged([{ key: `${prefix}a`, modRevision: r1 }]);
    const now = await client.scan(prefix, end, {});
    expect(now.kvs.map((kv) => kv.value)).toEqual(["b"]);
    const then = await client.scan(prefix, end, { revision: r1 });
    expect(then.kvs.map((kv) => kv.value)).toEqual(["a"]);
    expect(then.count).toBe(1);
  });
});
