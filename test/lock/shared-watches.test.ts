import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { type EtcdClient, EtcdUnavailableError } from "../../src/etcd/types.js";
import { createIfAbsent } from "../../src/lock/strategies/group-commit.js";
import { SharedWatches } from "../../src/lock/strategies/shared-watches.js";
import type { Waits } from "../../src/lock/strategies/waits.js";
import { WatchPerWaiter } from "../../src/lock/strategies/watch-per-waiter.js";
import { startTestEtcd, untilWatches } from "../support/etcd.js";
import { stillAfter, until } from "../support/http.js";

/**
 * SharedWatches against a real etcd on both transports. `opens` counts the etcd watches
 * SharedWatches opens (watchDeletes calls); on the gateway, `streams` counts the
 * `/v3/watch` requests actually sent, reconnects included.
 */
let etcd: Awaited<ReturnType<typeof startTestEtcd>>;
beforeAll(async () => {
  etcd = await startTestEtcd();
});
afterAll(async () => {
  await etcd?.destroy();
});

const transports = [
  {
    name: "grpc",
    create: (endpoint: string, timeoutMs: number) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs }),
  },
  {
    name: "gateway",
    create: (endpoint: string, timeoutMs: number, onWatch?: () => void) =>
      createGatewayEtcd({
        endpoints: [endpoint],
        timeoutMs,
        fetch: (input, init) => {
          if (String(input).endsWith("/v3/watch")) onWatch?.();
          return fetch(input, init);
        },
      }),
  },
];

let seq = 0;
const uniqueKey = (label: string) => `shared/${label}/${Date.now()}-${seq++}`;

describe.each(transports)("SharedWatches over $name", (transport) => {
  let raw: EtcdClient;
  let streams = 0;
  /** The ends of the watches SharedWatches opened, in order. */
  const opened: { settled: boolean }[] = [];
  let client: EtcdClient;

  beforeAll(() => {
    raw = transport.create(etcd.endpoint, 2_000, () => streams++);
    client = {
      ...raw,
      watchDeletes: (key, from, onDelete, signal) => {
        const state = { settled: false };
        opened.push(state);
        return raw.watchDeletes(key, from, onDelete, signal).finally(() => {
          state.settled = true;
        });
      },
    };
  });
  afterAll(async () => {
    await raw?.close();
  });

  const counts = () => ({ opens: opened.length, streams });
  const since = (before: { opens: number; streams: number }) => ({
    opens: opened.length - before.opens,
    streams: transport.name === "gateway" ? streams - before.streams : 0,
  });

  /** A key held on a lease of its own; `release` deletes it (as a release does). */
  async function held(key: string) {
    const id = BigInt(Date.now()) * 1000n + BigInt(seq++);
    await raw.leaseGrant(id, 60);
    const { revision } = await createIfAbsent(raw, key, "x", id);
    return { revision, release: () => raw.leaseRevoke(id) };
  }

  function waiter(watches: Waits, key: string, from: number) {
    const ac = new AbortController();
    const state: { outcome?: "wake" | "aborted" | unknown } = {};
    const done = watches.wait(key, from, ac.signal).then(
      (o) => {
        state.outcome = o;
      },
      (err: unknown) => {
        state.outcome = err;
      },
    );
    return { state, done, leave: () => ac.abort() };
  }

  it("one etcd watch serves many waiters across several releases, waking one per release in order", async () => {
    const watches = new SharedWatches(client);
    const key = uniqueKey("many");
    let holder = await held(key);
    const before = counts();
    const waiters = Array.from({ length: 5 }, () => waiter(watches, key, holder.revision + 1));
    // The watch replays DELETEs from the waiters' revision: it need not be established in
    // etcd before a release, only opened.
    await until(() => since(before).opens === 1, "the five waiters to open one watch");
    const woken = () => waiters.filter((w) => w.state.outcome === "wake").length;
    for (let i = 1; i <= 4; i++) {
      // Other keys move the store revision between releases, as on a busy etcd.
      await createIfAbsent(raw, uniqueKey("other"), "y", 0n);
      await holder.release();
      await until(() => woken() >= i, `release ${i} to wake a waiter`);
      // ...and only one.
      expect(await stillAfter(50, woken)).toBe(i);
      // The woken waiter takes the lock.
      holder = await held(key);
    }
    expect(waiters.map((w) => w.state.outcome)).toEqual(["wake", "wake", "wake", "wake", undefined]);
    expect(watches.hasWaiters(key)).toBe(true);
    expect(since(before)).toEqual({ opens: 1, streams: transport.name === "gateway" ? 1 : 0 });
    waiters[4]?.leave();
    await holder.release();
  });

  it("the watch lingers after the last waiter leaves, so the next one finds it open; then it closes", async () => {
    const watches = new SharedWatches(client, 400);
    const key = uniqueKey("linger");
    let holder = await held(key);
    const before = counts();
    const a = waiter(watches, key, holder.revision + 1);
    await until(() => since(before).opens === 1, "a to open a watch");
    await holder.release();
    await a.done;
    expect(watches.hasWaiters(key)).toBe(false);
    holder = await held(key);
    const b = waiter(watches, key, holder.revision + 1);
    await until(() => watches.hasWaiters(key), "b to wait");
    await holder.release();
    await b.done;
    expect(b.state.outcome).toBe("wake");
    expect(since(before).opens).toBe(1);
    const first = opened[opened.length - 1];
    await until(() => first?.settled === true, "the watch to close after lingering", 2_000);
    holder = await held(key);
    const c = waiter(watches, key, holder.revision + 1);
    await until(() => since(before).opens >= 2, "c to open a watch of its own");
    expect(since(before).opens).toBe(2);
    c.leave();
    await c.done;
    expect(c.state.outcome).toBe("aborted");
    await holder.release();
  });

  it("a waiter whose read is older than the watch's progress wakes at once; a newer one waits", async () => {
    const watches = new SharedWatches(client);
    const key = uniqueKey("stale");
    const first = await held(key);
    const a = waiter(watches, key, first.revision + 1);
    await until(() => watches.hasWaiters(key), "a to wait");
    await first.release();
    await a.done;
    const second = await held(key);
    // Read before the release the watch has already seen: that release may be the one it missed.
    const stale = waiter(watches, key, first.revision + 1);
    const fresh = waiter(watches, key, second.revision + 1);
    await stale.done;
    expect(stale.state.outcome).toBe("wake");
    expect(await stillAfter(200, () => fresh.state.outcome)).toBeUndefined();
    await second.release();
    await fresh.done;
    expect(fresh.state.outcome).toBe("wake");
  });

  it("compaction of the start revision wakes every waiter", async () => {
    const watches = new SharedWatches(client);
    const key = uniqueKey("compacted");
    const holder = await held(key);
    for (let i = 0; i < 2; i++) await createIfAbsent(raw, uniqueKey("bump"), "y", 0n);
    const current = (await raw.get(key)).revision;
    await fetch(`${etcd.endpoint}/v3/kv/compaction`, {
      method: "POST",
      body: JSON.stringify({ revision: String(current), physical: true }),
    });
    const waiters = Array.from({ length: 3 }, () => waiter(watches, key, holder.revision + 1));
    await Promise.all(waiters.map((w) => w.done));
    expect(waiters.map((w) => w.state.outcome)).toEqual(["wake", "wake", "wake"]);
    await holder.release();
  });

  it("without sharing, every waiter has its own watch, closed at its first DELETE", async () => {
    const watches = new WatchPerWaiter(client);
    const key = uniqueKey("solo");
    const holder = await held(key);
    const before = counts();
    const waiters = Array.from({ length: 3 }, () => waiter(watches, key, holder.revision + 1));
    await until(() => watches.hasWaiters(key) && opened.length - before.opens === 3, "three watches");
    await holder.release();
    await Promise.all(waiters.map((w) => w.done));
    expect(waiters.map((w) => w.state.outcome)).toEqual(["wake", "wake", "wake"]);
    expect(since(before).opens).toBe(3);
    await until(() => opened.slice(before.opens).every((o) => o.settled), "every watch to close", 2_000);
    expect(watches.hasWaiters(key)).toBe(false);
  });

  it("a watch that cannot be reopened after etcd went away fails its waiters", async () => {
    const c = transport.create(etcd.endpoint, 1_000);
    try {
      const watches = new SharedWatches(c);
      const key = uniqueKey("down");
      const { revision } = await createIfAbsent(c, key, "x", 0n);
      const waiters = Array.from({ length: 2 }, () => waiter(watches, key, revision + 1));
      // Established in etcd (earlier tests' watches closed), so etcd going away breaks it.
      await untilWatches(etcd.endpoint, 1, "the waiters' watch to be open in etcd");
      await etcd.stop();
      try {
        await Promise.all(waiters.map((w) => w.done));
        for (const w of waiters) expect(w.state.outcome).toBeInstanceOf(EtcdUnavailableError);
        expect(watches.hasWaiters(key)).toBe(false);
      } finally {
        await etcd.restart();
      }
    } finally {
      await c.close();
    }
  });
});
