import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, inLine } from "./lines.js";
import { targets } from "./targets.js";

describe.each(targets)("semaphores happy path ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  const take = (name: string, json: Record<string, unknown>, headers: Record<string, string> = {}) =>
    call(svc.url, "POST", `/semaphores/${name}`, { json, headers });

  it("grants up to `limit` permits, each with its own strictly increasing token, then 409 lock-held", async () => {
    const name = uniqueName("sem");
    const before = Date.now();
    const grants = [];
    for (const owner of ["a", "b", "c"]) {
      const r = await take(name, { limit: 3, ttl: 20, owner });
      expect(r.status, r.text).toBe(201);
      expect(r.json).toEqual({
        name,
        token: expect.any(Number),
        lease: expect.stringMatching(/^[0-9a-f]{16,64}$/),
        ttl: 20,
        expiresAt: expect.any(String),
        owner,
        limit: 3,
      });
      expect(Date.parse(r.json.expiresAt)).toBeGreaterThanOrEqual(before + 19_000);
      grants.push(r.json);
    }
    const tokens = grants.map((g) => g.token);
    expect(tokens).toEqual([...tokens].sort((x, y) => x - y));
    expect(new Set(tokens).size).toBe(3);
    expect(new Set(grants.map((g) => g.lease)).size).toBe(3);
    const full = await take(name, { limit: 3 });
    expectProblem(full, 409, "lock-held");
    // Several hold a semaphore: no one holder to show.
    expect(full.json.holder).toBeUndefined();
    expect(Number(full.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    for (const g of grants) expect(full.text).not.toContain(g.lease);
  });

  it("GET shows the limit, the holders oldest first and the waiters; never a lease", async () => {
    const name = uniqueName("sem");
    const a = await take(name, { limit: 2, ttl: 20, owner: "first" });
    const b = await take(name, { limit: 2, ttl: 10 });
    const r = await call(svc.url, "GET", `/semaphores/${name}`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      name,
      limit: 2,
      holders: [
        { token: a.json.token, ttl: expect.any(Number), expiresAt: expect.any(String), owner: "first" },
        { token: b.json.token, ttl: expect.any(Number), expiresAt: expect.any(String) },
      ],
      waiters: 0,
      index: expect.any(Number),
    });
    expect(r.json.holders[0].ttl).toBeGreaterThan(15);
    expect(r.json.holders[0].ttl).toBeLessThanOrEqual(20);
    expect(r.json.holders[1].ttl).toBeLessThanOrEqual(10);
    expect(r.text).not.toContain(a.json.lease);
    expect(r.text).not.toContain(b.json.lease);
  });

  it("accepts form fields (curl -d limit=2)", async () => {
    const r = await call(svc.url, "POST", `/semaphores/${uniqueName("sem")}`, {
      form: { limit: "2", ttl: "5", owner: "form" },
    });
    expect(r.status, r.text).toBe(201);
    expect(r.json).toMatchObject({ limit: 2, ttl: 5, owner: "form" });
  });

  it("renews a permit (same token, new expiresAt) and releases it; the next permit's token is larger", async () => {
    const name = uniqueName("sem");
    const a = await take(name, { limit: 1, ttl: 10 });
    const renewed = await call(svc.url, "PUT", `/semaphores/${name}/renew`, { json: { lease: a.json.lease } });
    expect(renewed.status, renewed.text).toBe(200);
    expect(renewed.json).toMatchObject({ name, token: a.json.token, lease: a.json.lease, ttl: 10, limit: 1 });
    const byQuery = await call(svc.url, "PUT", `/semaphores/${name}/renew?lease=${a.json.lease.toUpperCase()}`);
    expect(byQuery.status).toBe(200);
    expect((await call(svc.url, "DELETE", `/semaphores/${name}?lease=${a.json.lease}`)).status).toBe(204);
    expect((await call(svc.url, "GET", `/semaphores/${name}`)).status).toBe(404);
    const b = await take(name, { limit: 1 });
    expect(b.status).toBe(201);
    expect(b.json.token).toBeGreaterThan(a.json.token);
    expect((await call(svc.url, "DELETE", `/semaphores/${name}`, { json: { lease: b.json.lease } })).status).toBe(204);
  });

  it("a freed permit goes to a waiting acquire; the others keep theirs", async () => {
    const name = uniqueName("sem");
    const a = await take(name, { limit: 2, ttl: 30 });
    const b = await take(name, { limit: 2, ttl: 30 });
    const waiter = take(name, { limit: 2, wait: 10, owner: "waiter" });
    await inLine(svc, `/semaphores/${name}`, 1);
    expect((await call(svc.url, "DELETE", `/semaphores/${name}?lease=${a.json.lease}`)).status).toBe(204);
    const w = await waiter;
    expect(w.status, w.text).toBe(201);
    expect(w.json.token).toBeGreaterThan(b.json.token);
    const info = await call(svc.url, "GET", `/semaphores/${name}`);
    expect(info.json.holders.map((h: { token: number }) => h.token)).toEqual([b.json.token, w.json.token]);
    expect(info.json.waiters).toBe(0);
  });

  it("TTL expiry frees a permit", async () => {
    const name = uniqueName("sem");
    const a = await take(name, { limit: 2, ttl: 2 });
    const b = await take(name, { limit: 2, ttl: 30 });
    expect((await take(name, { limit: 2 })).status).toBe(409);
    const holders = async () => (await call(svc.url, "GET", `/semaphores/${name}`)).json.holders.length;
    await until(async () => (await holders()) === 1, "the 2 s permit to expire");
    const c = await take(name, { limit: 2 });
    expect(c.status).toBe(201);
    expect(c.json.token).toBeGreaterThan(b.json.token);
    // The expired permit's handle cannot touch the new ones.
    expectProblem(
      await call(svc.url, "PUT", `/semaphores/${name}/renew`, { json: { lease: a.json.lease } }),
      410,
      "lock-lost",
    );
  });

  it("at most `limit` of many concurrent acquires are granted", async () => {
    const name = uniqueName("sem");
    const replies = await Promise.all(Array.from({ length: 12 }, () => take(name, { limit: 4, ttl: 20 })));
    const granted = replies.filter((r) => r.status === 201);
    expect(granted).toHaveLength(4);
    for (const r of replies.filter((x) => x.status !== 201)) expectProblem(r, 409, "lock-held");
    expect(new Set(granted.map((r) => r.json.token)).size).toBe(4);
    const info = await call(svc.url, "GET", `/semaphores/${name}`);
    expect(info.json.holders.map((h: { token: number }) => h.token).sort()).toEqual(
      granted.map((r) => r.json.token).sort(),
    );
  });

  it("an Idempotency-Key retry returns the same permit with 200", async () => {
    const name = uniqueName("sem");
    const headers = { "idempotency-key": crypto.randomUUID() };
    const first = await take(name, { limit: 1, ttl: 15, owner: "idem" }, headers);
    expect(first.status).toBe(201);
    const again = await take(name, { limit: 1, ttl: 15, owner: "idem" }, headers);
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ token: first.json.token, lease: first.json.lease, limit: 1 });
    expectProblem(await take(name, { limit: 1 }), 409, "lock-held");
  });

  it("a lock and a semaphore of the same name are different lines", async () => {
    const name = uniqueName("both");
    const lock = await call(svc.url, "POST", `/locks/${name}`);
    expect(lock.status).toBe(201);
    const sem = await take(name, { limit: 1 });
    expect(sem.status).toBe(201);
    expectProblem(await call(svc.url, "DELETE", `/semaphores/${name}?lease=${lock.json.lease}`), 410, "lock-lost");
    expectProblem(await call(svc.url, "PUT", `/locks/${name}/renew?lease=${sem.json.lease}`), 410, "lock-lost");
    const locks = await call(svc.url, "GET", `/locks?prefix=${name}`);
    const sems = await call(svc.url, "GET", `/semaphores?prefix=${name}`);
    expect(locks.json.items.map((i: { token: number }) => i.token)).toEqual([lock.json.token]);
    expect(sems.json.items.map((i: { holders: { token: number }[] }) => i.holders[0]?.token)).toEqual([sem.json.token]);
  });

  it("lists held semaphores in name order, a page at a time, never with leases", async () => {
    const prefix = `${uniqueName("semlist")}:`;
    const names = [`${prefix}a`, `${prefix}b`, `${prefix}c`];
    const leases: string[] = [];
    for (const n of names) leases.push((await take(n, { limit: 2, owner: `o-${n.slice(-1)}` })).json.lease);
    const seen: unknown[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const r = await call(svc.url, "GET", `/semaphores?prefix=${prefix}&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(r.status).toBe(200);
      expect(r.json.items.length).toBeLessThanOrEqual(2);
      for (const lease of leases) expect(r.text).not.toContain(lease);
      seen.push(...r.json.items);
      cursor = r.json.cursor;
      if (!cursor) break;
    }
    expect(seen).toEqual(
      names.map((name) => ({
        name,
        limit: 2,
        holders: [
          {
            token: expect.any(Number),
            ttl: expect.any(Number),
            expiresAt: expect.any(String),
            owner: `o-${name.slice(-1)}`,
          },
        ],
        waiters: 0,
      })),
    );
  });
});
