import { afterAll, describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { createLines, LockLost } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import type { FeedBatch, LineRef } from "../../src/lock/types.js";
import { etcdWithClients } from "../support/etcd.js";
import { leaseIdOf as leaseOf, uniqueName, until } from "../support/http.js";
import { heldWatches } from "../support/lagging.js";
import { watchLineRules } from "../support/line-rules.js";
import { grantOf } from "../support/locks.js";

/**
 * Attacks on local handoff (a release that makes its instance's next waiter the holder in
 * its own txn) against a real etcd, over both transports: a release judged from a copy
 * of the line that lags behind etcd.
 */

const PREFIX = "attack-handoff/";
const keys = new LineKeys(PREFIX);

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
    const x = grantOf(await b.acquire(m, { ttl, wait: 0, limit: 1 })).grant;
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

  it("the events feed shows each handed-over grant free before its successor held, in one revision", async () => {
    const lines = createLines(shared.client(), { prefix: PREFIX, maxWaiters: 100 });
    const line: LineRef = { kind: "semaphore", name: uniqueName("feed") };
    const o = { ttl: 30, wait: 30, limit: 1 };
    const stop = new AbortController();
    const feed = await lines.openFeed({ kinds: ["semaphore"], prefix: line.name, within: [""], signal: stop.signal });
    const batches: FeedBatch[] = [];
    const ended = feed.run((b) => batches.push(b));
    // A chain of handoffs: each grant released while the next caller waits on this instance.
    const grants = [grantOf(await lines.acquire(line, o)).grant];
    for (let i = 0; i < 4; i++) {
      const next = lines.acquire(line, o);
      await until(async () => (await lines.inspect(line))?.waiters === 1, "the next caller in line");
      await lines.release(line, grants[i]?.lease ?? "");
      grants.push(grantOf(await next).grant);
    }
    await until(() => batches.length >= 5, "the feed's batches");
    const events = batches.slice(1).map((b) => b.events.map((e) => ("token" in e ? [e.event, e.token] : [e.event])));
    expect(events).toEqual(
      grants.slice(1).map((g, i) => [
        ["free", grants[i]?.token],
        ["held", g.token],
      ]),
    );
    stop.abort();
    await ended;
    await lines.release(line, grants.at(-1)?.lease ?? "");
    await lines.close();
  });

  let [ran, handedOver] = [0, 0];
  afterAll(() => {
    // The runs exercised the mechanism they attack.
    if (ran > 0) expect(handedOver).toBeGreaterThan(0);
  });

  it.each([1, 2, 3])(
    "random runs, limit %i: three instances whose copies lag at random, callers releasing anywhere or hanging up; the line's rules hold at every revision",
    async (limit) => {
      const direct = shared.client();
      const instances = [0, 1, 2].map(() => {
        const watches = heldWatches(shared.client());
        return { ...watches, lines: createLines(watches.client, { prefix: PREFIX, maxWaiters: 100 }) };
      });
      const line: LineRef =
        limit === 1 ? { kind: "lock", name: uniqueName("random") } : { kind: "semaphore", name: uniqueName("random") };
      const rules = await watchLineRules(direct, keys.range(line), limit);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;
      /** Lets up to `most` round trips to etcd go by (the pace of the run, not a wait for an outcome). */
      const ticks = async (most: number) => {
        for (let n = Math.floor(Math.random() * most); n > 0; n--) await direct.get(PREFIX);
      };
      let running = true;
      const chaos = (async () => {
        while (running) {
          const i = pick(instances);
          if (Math.random() < 0.5) i.hold();
          else i.flush();
          await ticks(3);
        }
        for (const i of instances) i.flush();
      })();
      const failures: unknown[] = [];
      const client = async () => {
        for (let round = 0; round < 4; round++) {
          const here = pick(instances);
          const gone = Math.random() < 0.15 ? new AbortController() : undefined;
          const acquired = here.lines.acquire(line, {
            ttl: Math.random() < 0.8 ? 30 : 20,
            wait: 20,
            limit,
            ...(gone ? { signal: gone.signal } : {}),
          });
          if (gone) {
            await ticks(5);
            gone.abort();
            await acquired.catch(() => {});
            continue;
          }
          const grant = await acquired.then(
            (a) => grantOf(a).grant,
            (err: unknown) => {
              failures.push(err);
            },
          );
          if (!grant) continue;
          await ticks(3);
          const there = Math.random() < 0.7 ? here : pick(instances);
          await there.lines.release(line, grant.lease).catch((err: unknown) => failures.push(err));
        }
      };
      // Enough callers that most wait, so that turns come by handoff as well as by watch.
      await Promise.all(Array.from({ length: 4 * limit + 4 }, client));
      running = false;
      await chaos;
      await until(
        async () => (await direct.scan(keys.range(line).start, keys.range(line).end, {})).kvs.length === 0,
        "the line to empty",
      );
      rules.stop();
      expect(failures).toEqual([]);
      expect(rules.broken).toEqual([]);
      expect(instances.map((i) => i.lines.activeWaiters)).toEqual([0, 0, 0]);
      handedOver += rules.handedOver;
      ran++;
      await Promise.all(instances.map((i) => i.lines.close()));
    },
  );
});
