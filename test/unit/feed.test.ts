import { describe, expect, it } from "vitest";
import { createLines, workerStrategies } from "../../src/lock/index.js";
import type { FeedBatch, LineRef } from "../../src/lock/types.js";
import { FakeEtcd } from "../support/fake-etcd.js";
import { grantOf } from "../support/locks.js";

/** Lets queued microtasks (watch deliveries) and the current turn's callbacks run. */
const flush = () => new Promise<void>((r) => setImmediate(r));

/** An engine on a fake etcd and a feed of everything on it, collecting its batches. */
async function feedOn(o: { after?: number; prefix?: string; within?: string[] } = {}) {
  const fake = new FakeEtcd();
  const lines = createLines(fake, { prefix: "t/", maxWaiters: 100, maxFeeds: 2, strategies: workerStrategies });
  const stop = new AbortController();
  const feed = await lines.openFeed({
    kinds: ["lock", "semaphore"],
    prefix: o.prefix ?? "",
    within: o.within ?? [""],
    signal: stop.signal,
    ...(o.after !== undefined ? { after: o.after } : {}),
  });
  const batches: FeedBatch[] = [];
  const ended = feed.run((b) => batches.push(b));
  const events = () => batches.flatMap((b) => b.events);
  return { fake, lines, feed, batches, events, stop, ended };
}

const lock = (name: string): LineRef => ({ kind: "lock", name });

describe("change feed (engine, fake etcd)", () => {
  it("starts with a reset at the read's revision; the current holders follow", async () => {
    const fake = new FakeEtcd();
    const lines = createLines(fake, { prefix: "t/", maxWaiters: 100, strategies: workerStrategies });
    const g = grantOf(await lines.acquire(lock("b"), { ttl: 5, wait: 0, limit: 1, owner: "o" })).grant;
    const feed = await lines.openFeed({
      kinds: ["lock"],
      prefix: "",
      within: [""],
      signal: new AbortController().signal,
    });
    expect(feed.first).toEqual({
      revision: fake.revision,
      events: [
        { event: "reset", index: fake.revision, reason: "start" },
        { event: "held", kind: "lock", name: "b", token: g.token, owner: "o", ttl: 5 },
      ],
    });
    feed.close();
  });

  it("a claim (an Idempotency-Key retry) and a renew with the same value are not events; a new value is", async () => {
    const f = await feedOn();
    const ask = { ttl: 5, wait: 0, limit: 1, idempotencyKey: "k", caller: "c", value: "v" };
    const g = grantOf(await f.lines.acquire(lock("a"), ask)).grant;
    await f.lines.acquire(lock("a"), ask);
    await f.lines.renew(lock("a"), g.lease, { value: "v" });
    await f.lines.renew(lock("a"), g.lease, { value: "w" });
    await flush();
    expect(f.events()).toEqual([
      { event: "held", kind: "lock", name: "a", token: g.token, value: "v", ttl: 5 },
      { event: "held", kind: "lock", name: "a", token: g.token, value: "w", ttl: 5 },
    ]);
    f.feed.close();
  });

  it("a waiter joining and giving up is nothing; its turn is held; a holder's end is free", async () => {
    const f = await feedOn();
    const a = grantOf(await f.lines.acquire(lock("x"), { ttl: 5, wait: 0, limit: 1 })).grant;
    const gaveUp = f.lines.acquire(lock("x"), { ttl: 5, wait: 0.05, limit: 1 });
    await expect(gaveUp).rejects.toThrow();
    const waiting = f.lines.acquire(lock("x"), { ttl: 7, wait: 5, limit: 1 });
    await flush();
    await f.lines.release(lock("x"), a.lease);
    const b = grantOf(await waiting).grant;
    await flush();
    expect(f.events()).toEqual([
      { event: "held", kind: "lock", name: "x", token: a.token, ttl: 5 },
      { event: "free", kind: "lock", name: "x", token: a.token },
      { event: "held", kind: "lock", name: "x", token: b.token, ttl: 7 },
    ]);
    // Each revision's batch carries the revision the events happened at.
    expect(f.batches.map((x) => x.revision)).toEqual([a.token, expect.any(Number), expect.any(Number)]);
    f.feed.close();
  });

  it("only names in the caller's scopes and under the prefix", async () => {
    const f = await feedOn({ prefix: "a", within: ["ab:", "b:"] });
    for (const name of ["ab:1", "ac:1", "b:1", "a"]) await f.lines.acquire(lock(name), { ttl: 5, wait: 0, limit: 1 });
    await flush();
    expect(f.events().map((e) => (e.event === "held" ? e.name : e.event))).toEqual(["ab:1"]);
    f.feed.close();
  });

  it("counts against the cap until closed; the run ends with its signal", async () => {
    const f = await feedOn();
    await f.lines.openFeed({ kinds: ["lock"], prefix: "", within: [""], signal: new AbortController().signal });
    await expect(
      f.lines.openFeed({ kinds: ["lock"], prefix: "", within: [""], signal: new AbortController().signal }),
    ).rejects.toThrow(/2 event streams/);
    expect(f.lines.activeFeeds).toBe(2);
    f.stop.abort();
    await f.ended;
    f.feed.close();
    expect(f.lines.activeFeeds).toBe(1);
    expect(f.fake.openWatches()).toBe(0);
  });

  it("resumes after a revision; from compacted history, a reset with the current holders", async () => {
    const fake = new FakeEtcd();
    const lines = createLines(fake, { prefix: "t/", maxWaiters: 100, strategies: workerStrategies });
    const a = grantOf(await lines.acquire(lock("a"), { ttl: 5, wait: 0, limit: 1 })).grant;
    const after = fake.revision;
    const b = grantOf(await lines.acquire(lock("b"), { ttl: 5, wait: 0, limit: 1 })).grant;
    const open = () =>
      lines.openFeed({ kinds: ["lock"], prefix: "", within: [""], after, signal: new AbortController().signal });
    const resumed = await open();
    expect(resumed.first).toBeUndefined();
    const seen: FeedBatch[] = [];
    void resumed.run((x) => seen.push(x));
    await flush();
    expect(seen).toEqual([
      { revision: b.token, events: [{ event: "held", kind: "lock", name: "b", token: b.token, ttl: 5 }] },
    ]);
    resumed.close();
    fake.put("elsewhere", "x");
    fake.compact(fake.revision);
    const late = await open();
    const got: FeedBatch[] = [];
    void late.run((x) => got.push(x));
    await flush();
    await flush();
    expect(got.flatMap((x) => x.events)).toEqual([
      { event: "reset", index: fake.revision, reason: "compacted" },
      { event: "held", kind: "lock", name: "a", token: a.token, ttl: 5 },
      { event: "held", kind: "lock", name: "b", token: b.token, ttl: 5 },
    ]);
    late.close();
  });
});
