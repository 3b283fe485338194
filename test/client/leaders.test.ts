import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createClient,
  type EventStream,
  type Leadership,
  LeaseholdError,
  type LeaseholdEvent,
} from "../../src/client/index.js";
import { uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { startProxy } from "./proxy.js";

const ADMIN = "leaders-admin-key";
let svc: TestService;
beforeAll(async () => {
  // Force release needs an admin key, so auth is on.
  svc = await startTestService({
    env: { LEASEHOLD_API_KEYS: JSON.stringify([{ key: ADMIN, prefixes: [""], admin: true }]) },
  });
});
afterAll(async () => {
  await svc?.stop();
});

const client = () => createClient({ url: svc.url, apiKey: ADMIN });

/** Reads a stream in the background; `events` grows as they come. */
function collect(stream: EventStream) {
  const events: LeaseholdEvent[] = [];
  const done = (async () => {
    for await (const e of stream) events.push(e);
  })();
  return { events, done };
}

/** "held a 12 v=x" lines: what a reader of the stream learns, without ids. */
const summary = (events: LeaseholdEvent[], tokens: Map<number, string>) =>
  events.map((e) =>
    e.type === "reset"
      ? `reset ${e.reason}`
      : `${e.type} ${e.name.split(".").pop()} ${tokens.get(e.token) ?? e.token}${e.type === "held" && e.value !== undefined ? ` v=${e.value}` : ""}`,
  );

describe.concurrent("observe", () => {
  it("starts with a reset and the current holders, then every change in order with increasing ids", async () => {
    const c = client();
    const base = uniqueName("obs");
    const before = await c.acquire(`${base}.a`, { ttl: 60, value: "one" });
    const stream = c.observe({ prefix: `${base}.` });
    const { events, done } = collect(stream);
    await until(() => events.length >= 2, "the reset and the current holder");
    const b = await c.acquire(`${base}.b`, { ttl: 60, owner: "host-b" });
    await c.renew(`${base}.a`, before.lease, { value: "two" });
    await c.release(`${base}.a`, before.lease);
    await c.release(`${base}.b`, b.lease);
    await until(
      () => events.length >= 6,
      () => `six events, got ${JSON.stringify(events)}`,
    );
    const tokens = new Map([
      [before.token, "A"],
      [b.token, "B"],
    ]);
    expect(summary(events, tokens)).toEqual([
      "reset start",
      "held a A v=one",
      "held b B",
      "held a A v=two",
      "free a A",
      "free b B",
    ]);
    expect(events[2]).toMatchObject({ kind: "lock", name: `${base}.b`, owner: "host-b", ttl: 60 });
    // The reset and the holders after it are one revision; every later change has a larger one.
    expect(events[0]?.revision).toBe(events[1]?.revision);
    const revisions = events.slice(1).map((e) => e.revision);
    expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
    expect(new Set(revisions).size).toBe(revisions.length);
    expect(stream.lastEventId).toBe(events[5]?.id);
    await stream.return();
    await done;
  });

  it("observe(name) sees only that name, and a blocking read wakes on its change", async () => {
    const c = client();
    const name = uniqueName("one");
    const stream = c.observe(name);
    const { events, done } = collect(stream);
    await until(() => events.length >= 1, "the reset");
    const first = await c.inspectAt(name);
    expect(first.lock).toBeUndefined();
    expect(first.index).toBeGreaterThan(0);
    // Blocks: nothing changes for 0.3 s.
    const quiet = await c.inspectAt(name, { index: first.index, wait: 0.3 });
    expect(quiet).toEqual({ lock: undefined, index: expect.any(Number) });
    const waiting = c.inspectAt(name, { index: first.index, wait: 20 });
    await c.acquire(`${name}-other`, { ttl: 30 });
    const g = await c.acquire(name, { ttl: 30, value: "here" });
    const woke = await waiting;
    expect(woke.lock).toMatchObject({ name, token: g.token, value: "here" });
    expect(woke.index).toBeGreaterThan(first.index);
    const released = c.inspectAt(name, { index: woke.index, wait: 20 });
    await c.release(name, g.lease);
    const after = await released;
    expect(after.lock).toBeUndefined();
    expect(after.index).toBeGreaterThan(woke.index);
    await until(() => events.length >= 3, "held and free");
    expect(events.map((e) => (e.type === "reset" ? "reset" : `${e.type} ${e.name}`))).toEqual([
      "reset",
      `held ${name}`,
      `free ${name}`,
    ]);
    expect(await c.inspect(name, { index: after.index, wait: 0.1 })).toBeUndefined();
    await stream.return();
    await done;
  });

  it("resumes after a dropped connection with Last-Event-ID: every change made meanwhile, none twice, no reset", async () => {
    const proxy = await startProxy(svc.url);
    try {
      const c = createClient({ url: proxy.url, apiKey: ADMIN });
      const direct = client();
      const base = uniqueName("drop");
      proxy.plan = () => "stream";
      const retries: string[] = [];
      const stream = c.observe({ prefix: `${base}.` }, { onRetry: (err) => retries.push(err.code) });
      const { events, done } = collect(stream);
      await until(() => events.length >= 1, "the reset");
      const x = await direct.acquire(`${base}.x`, { ttl: 60 });
      await until(() => events.length >= 2, "held x");
      const resumeFrom = events[1]?.id;

      // The connection drops, and the service can't be reached for a while.
      const down = { status: 503, headers: { "retry-after": "0" }, body: { code: "backend-unavailable" } };
      proxy.plan = () => down;
      proxy.cut();
      await direct.release(`${base}.x`, x.lease);
      const y = await direct.acquire(`${base}.y`, { ttl: 60, value: "v1" });
      await direct.renew(`${base}.y`, y.lease, { value: "v2" });
      const refused = () => proxy.seen.filter((s) => s.url.startsWith("/events") && s.action === down).length;
      await until(() => refused() >= 1, "a reconnect refused while down");
      proxy.plan = () => "stream";

      await until(
        () => events.length >= 5,
        () => `five events, got ${JSON.stringify(events)}`,
      );
      const tokens = new Map([
        [x.token, "X"],
        [y.token, "Y"],
      ]);
      expect(summary(events, tokens)).toEqual([
        "reset start",
        "held x X",
        "free x X",
        "held y Y v=v1",
        "held y Y v=v2",
      ]);
      const resumed = proxy.seen.filter((s) => s.url.startsWith("/events") && s.action === "stream");
      expect(resumed.length).toBeGreaterThanOrEqual(2);
      expect(resumed.at(-1)?.headers["last-event-id"]).toBe(resumeFrom);
      expect(retries).toContain("backend-unavailable");
      await stream.return();
      await done;
    } finally {
      await proxy.stop();
    }
  });
});

describe("campaign", () => {
  it("one leader among campaigners; proclaim publishes; a forced release fires the signal and the next one leads with a larger token", async () => {
    const name = uniqueName("election");
    const c = client();
    let active = 0;
    let mostActive = 0;
    const terms: { member: number; token: number; leader: Leadership; reason?: unknown }[] = [];
    const stops = [0, 1, 2].map(() => new AbortController());
    const members = stops.map((stop, member) =>
      client()
        .campaign(
          name,
          `member-${member}`,
          async (signal, leader) => {
            active++;
            mostActive = Math.max(mostActive, active);
            const term: (typeof terms)[number] = { member, token: leader.token, leader };
            terms.push(term);
            term.reason = await new Promise((resolve) =>
              signal.addEventListener("abort", () => resolve(signal.reason), { once: true }),
            );
            active--;
            return term;
          },
          { ttl: 3, wait: 5, signal: stop.signal },
        )
        .catch((err: unknown) => err),
    );
    await until(() => terms.length === 1, "a leader");
    const first = terms[0] as (typeof terms)[number];
    expect(await c.inspect(name)).toMatchObject({ token: first.token, value: `member-${first.member}` });
    // The others wait in line (their acquires block).
    await until(async () => ((await c.inspect(name))?.waiters ?? 0) === 2, "two campaigners in line");
    expect(first.leader.value).toBe(`member-${first.member}`);

    await first.leader.proclaim("10.0.0.9:80");
    expect(first.leader.value).toBe("10.0.0.9:80");
    expect((await c.inspect(name))?.value).toBe("10.0.0.9:80");
    // Renewals go on for a while (ttl 3 s, renewed every 1 s): still one leader.
    await until(async () => Date.parse((await c.inspect(name))?.expiresAt ?? "0") > Date.now() + 2_500, "a renewal");
    expect(terms).toHaveLength(1);
    expect(mostActive).toBe(1);

    // An operator takes the lock away: the leader's signal fires, the next one is elected.
    const forced = await fetch(`${svc.url}/locks/${name}?force=true&token=${first.token}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(forced.status).toBe(204);
    await until(() => first.reason !== undefined, "the first leader's signal");
    expect(first.reason).toBeInstanceOf(LeaseholdError);
    expect((first.reason as LeaseholdError).code).toMatch(/^lock-(lost|expired)$/);
    await until(() => terms.length === 2, "a second leader");
    const second = terms[1] as (typeof terms)[number];
    expect(second.member).not.toBe(first.member);
    expect(second.token).toBeGreaterThan(first.token);
    expect(await members[first.member]).toBe(first);
    expect(await c.inspect(name)).toMatchObject({ token: second.token, value: `member-${second.member}` });

    // Stopping the leader resigns (the third takes over); stopping a campaigner ends its campaign.
    stops[second.member]?.abort(new Error("stop"));
    expect(await members[second.member]).toBe(second);
    await until(() => terms.length === 3, "a third leader");
    const third = terms[2] as (typeof terms)[number];
    expect(third.token).toBeGreaterThan(second.token);
    stops[third.member]?.abort(new Error("stop"));
    expect(await members[third.member]).toBe(third);
    await until(async () => (await c.inspect(name)) === undefined, "the lock released");
  });

  it("a refusal that can't heal rejects the campaign without running fn", async () => {
    const anonymous = createClient({ url: svc.url });
    let ran = false;
    const err = await anonymous
      .campaign(uniqueName("denied"), "x", () => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "unauthorized", status: 401 });
    expect(ran).toBe(false);
    const big = await client()
      .campaign(uniqueName("big"), "x".repeat(4097), () => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect(big).toMatchObject({ code: "invalid-request", status: 400 });
    expect(ran).toBe(false);
  });
});
