import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { untilWatches } from "../support/etcd.js";
import { call, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { openSse, type SseEvent, type SseStream } from "../support/sse.js";
import { expectProblem } from "./lines.js";
import { targets } from "./targets.js";

const ALL = "all-names-key-5b1e09";
const A = "team-a-key-71c2d4";
const B = "team-b-key-0e93fa";
const keys = [
  { key: ALL, prefixes: [""], admin: true },
  { key: A, prefixes: ["a:"] },
  { key: B, prefixes: ["b:"] },
];
const as = (key: string) => ({ authorization: `Bearer ${key}` });
const MAX_STREAMS = 3;

/** What a test compares of an event: its name and data (ids are checked on their own). */
const shape = (e: SseEvent) => ({ event: e.event, data: e.data });

describe.each(targets)("event stream ($name)", (target) => {
  let svc: TestService;
  const open: SseStream[] = [];
  /** A stream as `key` sees it (closed after the test). */
  async function stream(query: string, key = ALL, headers: Record<string, string> = {}) {
    const s = await openSse(`${svc.url}/events${query}`, { ...as(key), ...headers });
    open.push(s);
    return s;
  }
  const post = (path: string, json: unknown = {}, key = ALL) => call(svc.url, "POST", path, { json, headers: as(key) });
  const put = (path: string, json: unknown, key = ALL) => call(svc.url, "PUT", path, { json, headers: as(key) });
  const del = (path: string, key = ALL) => call(svc.url, "DELETE", path, { headers: as(key) });
  /** The current etcd revision. */
  const revision = async () => (await svc.direct.get("any")).revision;

  beforeAll(async () => {
    svc = await target.start({
      LEASEHOLD_API_KEYS: JSON.stringify(keys),
      LEASEHOLD_MAX_STREAMS: String(MAX_STREAMS),
      LEASEHOLD_STREAM_HEARTBEAT: "1",
    });
  });
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  /**
   * Opens a stream once the instance has room again: a stream a test closed frees its
   * place at once on Node, within three keep-alives on Workers (whose runtime drops a
   * stream's clean-up when its caller goes away).
   */
  async function streamWhenFree(query: string, key = ALL, headers: Record<string, string> = {}) {
    let s: SseStream | undefined;
    await until(
      async () => {
        s = await openSse(`${svc.url}/events${query}`, { ...as(key), ...headers });
        return s.status !== 429;
      },
      "a free stream place",
      15_000,
    );
    open.push(s as SseStream);
    return s as SseStream;
  }

  /**
   * A stream that saw `${p}x` taken (with value "x"), then dropped: the grant, and the id
   * of the last event the stream delivered.
   */
  async function seenThenDropped(p: string) {
    const first = await streamWhenFree(`?prefix=${p}`);
    await first.untilEvents(1);
    const x = await post(`/locks/${p}x`, { value: "x" });
    const [, heldX] = await first.untilEvents(2);
    first.close();
    return { x, last: heldX?.id as string };
  }

  it("starts with a reset and the current holders, in name order; the id on the group's last event", async () => {
    const p = `${uniqueName("ev")}:`;
    const one = await post(`/locks/${p}one`, { value: "first" });
    const two = await post(`/locks/${p}two`, { owner: "host-b", ttl: 20 });
    const sem = await post(`/semaphores/${p}pool`, { limit: 2, value: "s" });
    const before = await revision();
    const s = await streamWhenFree(`?prefix=${p}`);
    expect(s.status).toBe(200);
    expect(s.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await s.untilEvents(4);
    expect(events.map(shape)).toEqual([
      { event: "reset", data: { index: expect.any(Number), reason: "start" } },
      {
        event: "held",
        data: { kind: "lock", name: `${p}one`, token: one.json.token, value: "first", ttl: 30 },
      },
      {
        event: "held",
        data: { kind: "lock", name: `${p}two`, token: two.json.token, owner: "host-b", ttl: 20 },
      },
      {
        event: "held",
        data: { kind: "semaphore", name: `${p}pool`, token: sem.json.token, value: "s", ttl: 30 },
      },
    ]);
    const index = events[0]?.data.index;
    expect(index).toBeGreaterThanOrEqual(before);
    expect(events.map((e) => e.id)).toEqual([undefined, undefined, undefined, String(index)]);
  });

  it("held and free, in order, with increasing ids; callers joining or leaving the line are not events", async () => {
    const p = `${uniqueName("ev")}:`;
    const name = `${p}leader`;
    const s = await streamWhenFree(`?prefix=${p}&kind=lock`);
    const [reset] = await s.untilEvents(1);
    expect(reset?.id).toBe(String(reset?.data.index));
    const a = await post(`/locks/${name}`, { value: "v1", ttl: 15 });
    await put(`/locks/${name}/renew`, { lease: a.json.lease, value: "v2" });
    await put(`/locks/${name}/renew`, { lease: a.json.lease });
    await put(`/locks/${name}/renew`, { lease: a.json.lease, value: "v2" });
    const waiter = post(`/locks/${name}`, { wait: 10, owner: "b" });
    await until(
      async () => (await call(svc.url, "GET", `/locks/${name}`, { headers: as(ALL) })).json.waiters === 1,
      "b in line",
    );
    const gaveUp = await post(`/locks/${name}`, { wait: 0.2 });
    expect(gaveUp.status).toBe(409);
    await del(`/locks/${name}?lease=${a.json.lease}`);
    const b = await waiter;
    expect((await del(`/locks/${name}?force=true`)).status).toBe(204);
    const events = (await s.untilEvents(6)).slice(1);
    expect(events.map(shape)).toEqual([
      { event: "held", data: { kind: "lock", name, token: a.json.token, value: "v1", ttl: 15 } },
      { event: "held", data: { kind: "lock", name, token: a.json.token, value: "v2", ttl: 15 } },
      { event: "free", data: { kind: "lock", name, token: a.json.token } },
      { event: "held", data: { kind: "lock", name, token: b.json.token, owner: "b", ttl: 30 } },
      { event: "free", data: { kind: "lock", name, token: b.json.token } },
    ]);
    // b waited on the instance that released a's grant, which may hand b the lock in the
    // releasing txn: a's free and b's held then share that revision, whose id only the
    // last of its events carries.
    expect(events.filter((e, i) => e.id === undefined && i !== 2)).toEqual([]);
    const ids = events.flatMap((e) => (e.id === undefined ? [] : [Number(e.id)]));
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1] as number);
    expect(ids[0]).toBeGreaterThan(Number(reset?.id));
  });

  it("kind=semaphore has only semaphores' events, one per permit", async () => {
    const p = `${uniqueName("ev")}:`;
    const s = await streamWhenFree(`?prefix=${p}&kind=semaphore`);
    await s.untilEvents(1);
    await post(`/locks/${p}x`);
    const one = await post(`/semaphores/${p}pool`, { limit: 2 });
    const two = await post(`/semaphores/${p}pool`, { limit: 2, value: "2" });
    await del(`/semaphores/${p}pool?lease=${one.json.lease}`);
    const events = (await s.untilEvents(4)).slice(1);
    expect(events.map(shape)).toEqual([
      { event: "held", data: { kind: "semaphore", name: `${p}pool`, token: one.json.token, ttl: 30 } },
      { event: "held", data: { kind: "semaphore", name: `${p}pool`, token: two.json.token, value: "2", ttl: 30 } },
      { event: "free", data: { kind: "semaphore", name: `${p}pool`, token: one.json.token } },
    ]);
  });

  it("resumes after a dropped stream from Last-Event-ID (or ?lastEventId=): no gap, no duplicate", async () => {
    const p = `${uniqueName("ev")}:`;
    const { x, last } = await seenThenDropped(p);
    // Changes while nobody listens.
    await del(`/locks/${p}x?lease=${x.json.lease}`);
    const y = await post(`/locks/${p}y`);
    await put(`/locks/${p}y/renew`, { lease: y.json.lease, value: "y2" });
    const missed = [
      { event: "free", data: { kind: "lock", name: `${p}x`, token: x.json.token } },
      { event: "held", data: { kind: "lock", name: `${p}y`, token: y.json.token, ttl: 30 } },
      { event: "held", data: { kind: "lock", name: `${p}y`, token: y.json.token, value: "y2", ttl: 30 } },
    ];
    for (const resumed of [
      await streamWhenFree(`?prefix=${p}`, ALL, { "last-event-id": last }),
      await streamWhenFree(`?prefix=${p}&lastEventId=${last}`),
    ]) {
      const events = await resumed.untilEvents(3);
      expect(events.map(shape)).toEqual(missed);
      expect(events.every((e) => Number(e.id) > Number(last))).toBe(true);
      resumed.close();
    }
    // And live from there on.
    const again = await streamWhenFree(`?prefix=${p}`, ALL, { "last-event-id": last });
    await again.untilEvents(3);
    await del(`/locks/${p}y?lease=${y.json.lease}`);
    expect((await again.untilEvents(4))[3]?.data).toEqual({ kind: "lock", name: `${p}y`, token: y.json.token });
  });

  it("a key sees only names under its own prefixes", async () => {
    const u = uniqueName("scope");
    const a = await streamWhenFree("", A);
    await a.untilEvents(1);
    const b = await streamWhenFree(`?prefix=b:${u}`, B);
    await b.untilEvents(1);
    await post(`/locks/b:${u}`, {}, B);
    const heldA = await post(`/locks/a:${u}`, {}, A);
    const eventsA = (await a.untilEvents(2)).slice(1);
    expect(eventsA.map(shape)).toEqual([
      { event: "held", data: { kind: "lock", name: `a:${u}`, token: heldA.json.token, ttl: 30 } },
    ]);
    expect((await b.untilEvents(2))[1]?.data.name).toBe(`b:${u}`);
    a.close();
    b.close();
    // Another team's prefix: the stream opens, and shows none of its names.
    const peek = await streamWhenFree(`?prefix=b:${u}`, A);
    expect((await peek.untilEvents(1)).map((e) => e.event)).toEqual(["reset"]);
    expectProblem(await call(svc.url, "GET", "/events"), 401, "unauthorized");
  });

  it("sends a keep-alive comment every LEASEHOLD_STREAM_HEARTBEAT seconds", async () => {
    const s = await streamWhenFree(`?prefix=${uniqueName("quiet")}`);
    await until(() => s.comments.filter((c) => c === "keep-alive").length >= 2, "two keep-alives", 5_000);
    expect(s.events.map((e) => e.event)).toEqual(["reset"]);
  });

  it(`serves at most LEASEHOLD_MAX_STREAMS (${MAX_STREAMS}) streams at once: 429 too-many-streams beyond`, async () => {
    const q = `?prefix=${uniqueName("cap")}`;
    const first = await streamWhenFree(q);
    // Each waits for a place: earlier tests' streams may still hold theirs (Workers).
    for (let i = 1; i < MAX_STREAMS; i++) expect((await streamWhenFree(q)).status).toBe(200);
    const refused = await stream(q);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect((refused as { json?: { code?: string } }).json?.code).toBe("too-many-streams");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    first.close();
    expect((await streamWhenFree(q)).status).toBe(200);
  });

  it("refuses a bad Last-Event-ID, kind or query parameter with a 400", async () => {
    expectProblem(
      await call(svc.url, "GET", "/events", { headers: { ...as(ALL), "last-event-id": "x" } }),
      400,
      "invalid-request",
    );
    expectProblem(await call(svc.url, "GET", "/events?kind=queue", { headers: as(ALL) }), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/events?lastEventId=-3", { headers: as(ALL) }), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/events?since=4", { headers: as(ALL) }), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/events?prefix=a/b", { headers: as(ALL) }), 400, "invalid-request");
  });

  it("a Last-Event-ID beyond etcd's revision starts over with a reset (ahead)", async () => {
    const s = await streamWhenFree(`?prefix=${uniqueName("ahead")}`, ALL, { "last-event-id": "999999999999" });
    const [reset] = await s.untilEvents(1);
    expect(reset?.data).toEqual({ index: expect.any(Number), reason: "ahead" });
    expect(reset?.data.index).toBeLessThan(999999999999);
  });

  if (target.detectsDisconnect) {
    it("leaves no etcd watch behind when the caller hangs up", async () => {
      // Watches of earlier tests' blocking reads and waiters linger a few seconds.
      await untilWatches(svc.etcd.endpoint, 0, "earlier watches to close");
      const s = await streamWhenFree(`?prefix=${uniqueName("leak")}`);
      await s.untilEvents(1);
      await untilWatches(svc.etcd.endpoint, 1, "the stream's watch");
      const gauge = async () =>
        /^leasehold_event_streams (\d+)$/m.exec((await call(svc.url, "GET", "/metrics")).text)?.[1];
      expect(await gauge()).toBe("1");
      s.close();
      await untilWatches(svc.etcd.endpoint, 0, "the watch to end with the stream");
      await until(async () => (await gauge()) === "0", "the stream gauge back to 0");
    });
  }

  // Last: compaction removes the history every earlier test's revisions point into.
  it("after etcd compacted past Last-Event-ID: a reset (compacted), the current holders, then live events", async () => {
    const p = `${uniqueName("ev")}:`;
    const { x, last } = await seenThenDropped(p);
    const y = await post(`/locks/${p}y`);
    await del(`/locks/${p}x?lease=${x.json.lease}`);
    const compactAt = await revision();
    const res = await fetch(`${svc.etcd.endpoint}/v3/kv/compaction`, {
      method: "POST",
      body: JSON.stringify({ revision: String(compactAt), physical: true }),
    });
    expect(res.status, await res.text()).toBe(200);
    const s = await streamWhenFree(`?prefix=${p}`, ALL, { "last-event-id": last });
    const events = await s.untilEvents(2);
    expect(events.map(shape)).toEqual([
      { event: "reset", data: { index: expect.any(Number), reason: "compacted" } },
      { event: "held", data: { kind: "lock", name: `${p}y`, token: y.json.token, ttl: 30 } },
    ]);
    expect(events[1]?.id).toBe(String(events[0]?.data.index));
    await del(`/locks/${p}y?lease=${y.json.lease}`);
    expect((await s.untilEvents(3))[2]?.data).toEqual({ kind: "lock", name: `${p}y`, token: y.json.token });
  });
});
