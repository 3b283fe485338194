import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/index.js";
import { freePort } from "../../src/node/local-etcd.js";
import { uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { failure } from "./failure.js";
import { acquires, startProxy, type TestProxy } from "./proxy.js";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc?.stop();
});

/** A proxy of its own for one test (tests here run concurrently). */
async function withProxy(fn: (proxy: TestProxy) => Promise<void>): Promise<void> {
  const proxy = await startProxy(svc.url);
  try {
    await fn(proxy);
  } finally {
    await proxy.stop();
  }
}

describe.concurrent("client calls", () => {
  it("acquire, inspect, list, renew and release, typed from the server's schemas", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("client");
    const grant = await client.acquire(name, { ttl: 10, owner: "host-a" });
    expect(grant).toMatchObject({ name, ttl: 10, owner: "host-a" });
    expect(grant.lease).toMatch(/^[0-9a-f]{16,64}$/);

    const info = await client.inspect(name);
    expect(info).toMatchObject({ name, token: grant.token, owner: "host-a" });
    expect(info).not.toHaveProperty("lease");
    const page = await client.list({ prefix: name });
    expect(page.items.map((i) => i.name)).toEqual([name]);
    expect(page.cursor).toBeUndefined();

    const renewed = await client.renew(name, grant.lease);
    expect(renewed).toMatchObject({ token: grant.token, lease: grant.lease });
    await client.release(name, grant.lease);
    expect(await client.inspect(name)).toBeUndefined();
  });

  it("failures are LeaseholdErrors carrying the problem code, status and body", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("client");
    const grant = await client.acquire(name, { ttl: 10, owner: "first" });

    const held = await failure(client.acquire(name, { owner: "second" }));
    expect(held).toMatchObject({ code: "lock-held", status: 409 });
    expect(held.problem?.holder).toMatchObject({ owner: "first", token: grant.token });
    expect(held.retryAfter).toBeGreaterThanOrEqual(1);

    await client.release(name, grant.lease);
    const lost = await failure(client.renew(name, grant.lease));
    expect(lost).toMatchObject({ code: "lock-lost", status: 410 });
    expect((await failure(client.release(name, grant.lease))).code).toBe("lock-lost");

    const bad = await failure(client.acquire("no/slashes", {}));
    expect(bad).toMatchObject({ code: "invalid-request", status: 400 });
    const badTtl = await failure(client.acquire(name, { ttl: -1 }));
    expect(badTtl.problem?.detail).toContain("ttl");
  });

  it("no service is a network-error, after retrying acquire for up to retryMs", async () => {
    let calls = 0;
    const client = createClient({
      url: `http://127.0.0.1:${await freePort()}`,
      fetch: (input, init) => {
        calls++;
        return fetch(input, init);
      },
    });
    const started = Date.now();
    const err = await failure(client.acquire(uniqueName(), { retryMs: 600 }));
    expect(err).toMatchObject({ code: "network-error", status: 0 });
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(Date.now() - started).toBeLessThan(600 + 1_000);
    calls = 0;
    expect((await failure(client.inspect("x"))).code).toBe("network-error");
    expect(calls).toBe(1); // only acquire retries
  });

  it("a retry after a dropped response gets the same grant, with one Idempotency-Key", () =>
    withProxy(async (proxy) => {
      const name = uniqueName("dropped");
      let dropped = false;
      proxy.plan = (r) => {
        if (r.method === "POST" && r.url === `/locks/${name}` && !dropped) {
          dropped = true;
          return "drop-response";
        }
        return "forward";
      };
      const client = createClient({ url: proxy.url });
      // With a wait: the retry carries the wait that is left, and still gets the same grant.
      const grant = await client.acquire(name, { ttl: 10, wait: 5 });
      const tries = acquires(proxy).filter((s) => s.url === `/locks/${name}`);
      expect(tries).toHaveLength(2);
      expect(tries[0]?.answer?.status).toBe(201);
      expect(tries[1]?.answer?.status).toBe(200);
      const key = tries[0]?.headers["idempotency-key"];
      expect(key).toMatch(/^[0-9a-f-]{36}$/);
      expect(tries[1]?.headers["idempotency-key"]).toBe(key);
      // The grant the first (lost) answer carried is the one the caller got.
      const lostGrant = JSON.parse(tries[0]?.answer?.body ?? "{}");
      expect(grant).toMatchObject({ token: lostGrant.token, lease: lostGrant.lease });
      await client.release(name, grant.lease);
    }));

  it("503 and 429 answers are retried with the same key; lock-held is not retried", () =>
    withProxy(async (proxy) => {
      const name = uniqueName("busy");
      let n = 0;
      proxy.plan = (r) => {
        if (r.method !== "POST" || r.url !== `/locks/${name}`) return "forward";
        n++;
        if (n === 1) return { status: 503, headers: { "retry-after": "0" }, body: { code: "backend-unavailable" } };
        if (n === 2) return { status: 429, headers: { "retry-after": "0" }, body: { code: "too-many-waiters" } };
        return "forward";
      };
      const client = createClient({ url: proxy.url });
      const grant = await client.acquire(name, { ttl: 10 });
      const keys = acquires(proxy)
        .filter((s) => s.url === `/locks/${name}`)
        .map((s) => s.headers["idempotency-key"]);
      expect(keys).toHaveLength(3);
      expect(new Set(keys).size).toBe(1);

      const before = acquires(proxy).length;
      expect((await failure(client.acquire(name, {}))).code).toBe("lock-held");
      expect(acquires(proxy).length).toBe(before + 1);
      await client.release(name, grant.lease);
    }));

  it("sends LEASEHOLD_API_KEY-style keys as a bearer token, and never the lease in a URL", () =>
    withProxy(async (proxy) => {
      const name = uniqueName("auth");
      const client = createClient({ url: proxy.url, apiKey: "s3cret" });
      const grant = await client.acquire(name, { ttl: 5 });
      await client.renew(name, grant.lease);
      await client.release(name, grant.lease);
      const mine = proxy.seen.filter((s) => s.url.startsWith(`/locks/${name}`));
      expect(mine.map((s) => `${s.method} ${s.url.slice(`/locks/${name}`.length)}`)).toEqual([
        "POST ",
        "PUT /renew",
        "POST /release",
      ]);
      for (const s of mine) {
        expect(s.headers.authorization).toBe("Bearer s3cret");
        expect(s.url).not.toContain(grant.lease);
      }
    }));

  it("an aborted signal abandons the call with the signal's reason", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("abort");
    const holder = await client.acquire(name, { ttl: 10 });
    const controller = new AbortController();
    const waiting = client.acquire(name, { wait: 20, signal: controller.signal });
    setTimeout(() => controller.abort(new Error("changed my mind")), 200);
    await expect(waiting).rejects.toThrow("changed my mind");
    await client.release(name, holder.lease);
  });
});
