import { describe, expect, it } from "vitest";
import { prefixEnd } from "../../src/etcd/types.js";
import { createLines, LockLost } from "../../src/lock/index.js";
import type { LineRef } from "../../src/lock/types.js";
import { counting, grpcOnTestEtcd, RUNTIMES } from "../support/etcd.js";
import { uniqueName } from "../support/http.js";
import { grantOf } from "../support/locks.js";

const PREFIX = "values/";

/**
 * A published value moves the holder's key's mod revision: what the engine's other
 * steps, which guard on that revision, make of it (on a real etcd).
 */
describe.each(RUNTIMES)("published values with $how", ({ runtime }) => {
  const shared = grpcOnTestEtcd();
  const engine = () => {
    const etcd = counting(shared.client);
    return { etcd, lines: createLines(etcd.client, { prefix: PREFIX, maxWaiters: 100, ...runtime }) };
  };
  const keysOf = async (line: LineRef) => {
    const start = `${PREFIX}lock/${line.name}#`;
    return (await shared.client.range(start, prefixEnd(start), 0)).kvs;
  };

  it("the instance that made a grant still releases it without a read after it published a value", async () => {
    const { etcd, lines } = engine();
    const line: LineRef = { kind: "lock", name: uniqueName("own") };
    const { grant } = grantOf(await lines.acquire(line, { ttl: 30, wait: 0, limit: 1, value: "a" }));
    const renewed = await lines.renew(line, grant.lease, { value: "b" });
    expect(renewed).toMatchObject({ token: grant.token, value: "b" });
    expect((await lines.inspect(line))?.holders[0]?.value).toBe("b");
    etcd.reset();
    await lines.release(line, grant.lease);
    expect(etcd.calls.get).toBeUndefined();
    expect(await keysOf(line)).toEqual([]);
  });

  it("another instance releases it after a read, whoever published last", async () => {
    const a = engine();
    const b = engine();
    const line: LineRef = { kind: "lock", name: uniqueName("other") };
    const { grant } = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
    await b.lines.renew(line, grant.lease, { value: "from b" });
    await a.lines.renew(line, grant.lease, { value: "from a" });
    expect((await b.lines.inspect(line))?.holders[0]?.value).toBe("from a");
    await b.lines.release(line, grant.lease);
    expect(await keysOf(line)).toEqual([]);
  });

  it("a former holder's handle never writes: LockLost before any write, and the value stays the new holder's", async () => {
    const { etcd, lines } = engine();
    const line: LineRef = { kind: "lock", name: uniqueName("stale") };
    const old = grantOf(await lines.acquire(line, { ttl: 30, wait: 0, limit: 1, value: "old" })).grant;
    await lines.release(line, old.lease);
    const now = grantOf(await lines.acquire(line, { ttl: 30, wait: 0, limit: 1, value: "new" })).grant;
    etcd.reset();
    await expect(lines.renew(line, old.lease, { value: "usurper" })).rejects.toBeInstanceOf(LockLost);
    expect(etcd.calls.putIfUnchanged).toBeUndefined();
    expect((await lines.inspect(line))?.holders[0]).toMatchObject({ token: now.token, value: "new" });
  });

  it("the same value again writes nothing; an Idempotency-Key retry after a new value still gets the grant", async () => {
    const { etcd, lines } = engine();
    const line: LineRef = { kind: "lock", name: uniqueName("idem") };
    const ask = { ttl: 30, wait: 0, limit: 1, value: "v1", idempotencyKey: "k-1", caller: "c" };
    const { grant } = grantOf(await lines.acquire(line, ask));
    await lines.renew(line, grant.lease, { value: "v2" });
    etcd.reset();
    await lines.renew(line, grant.lease, { value: "v2" });
    expect(etcd.calls.putIfUnchanged).toBeUndefined();
    const again = await lines.acquire(line, ask);
    expect(again).toMatchObject({ replayed: true, grant: { token: grant.token, lease: grant.lease, value: "v2" } });
    // The claim moved the key's revision again: publishing reads it first, and still works.
    expect(await lines.renew(line, grant.lease, { value: "v3" })).toMatchObject({ value: "v3" });
    await lines.release(line, grant.lease);
    expect(await keysOf(line)).toEqual([]);
  });
});
