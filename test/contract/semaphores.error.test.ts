import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, uniqueName } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, inLine, lineKeys } from "./lines.js";
import { targets } from "./targets.js";

describe.each(targets)("semaphores errors ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start({ LEASEHOLD_MAX_TTL: "3600", LEASEHOLD_MAX_WAIT: "10" });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  const take = (name: string, json: Record<string, unknown>) => call(svc.url, "POST", `/semaphores/${name}`, { json });
  const holdersOf = async (name: string) => {
    const r = await call(svc.url, "GET", `/semaphores/${name}`);
    return { limit: r.json?.limit, tokens: (r.json?.holders ?? []).map((h: { token: number }) => h.token) };
  };

  const badAcquires: [label: string, init: Parameters<typeof call>[3], detail: RegExp][] = [
    ["no limit", { json: { ttl: 5 } }, /^limit is required for a semaphore/],
    ["no body at all", {}, /^limit is required for a semaphore/],
    ["limit 0", { json: { limit: 0 } }, /^limit must be at least 1, got 0$/],
    ["limit 10001", { json: { limit: 10_001 } }, /^limit must be at most 10000, got 10001$/],
    ["limit 1.5", { json: { limit: 1.5 } }, /^limit must be a whole number, got 1\.5$/],
    ['limit "3"', { json: { limit: "3" } }, /^limit must be a whole number, got "3" \(a string/],
    ["form limit=many", { form: { limit: "many" } }, /^limit must be a whole number, got "many"$/],
    ["ttl over the max", { json: { limit: 2, ttl: 3601 } }, /^ttl must be at most 3600 seconds, got 3601$/],
    ["wait over the max", { json: { limit: 2, wait: 11 } }, /^wait must be at most 10 seconds, got 11$/],
    [
      "an unknown field",
      { json: { limit: 2, limt: 3 } },
      /unknown field "limt".*known fields: limit, ttl, owner, wait/,
    ],
  ];
  it.each(badAcquires)("acquire, %s → 400 naming what was wrong, nothing changed", async (_label, init, detail) => {
    const name = uniqueName("bad");
    const r = await call(svc.url, "POST", `/semaphores/${name}`, init);
    expectProblem(r, 400, "invalid-request");
    expect(r.json.detail).toMatch(detail);
    expect(await lineKeys(svc, "semaphore", name)).toEqual([]);
  });

  it("a limit on a lock is an unknown field", async () => {
    const r = await call(svc.url, "POST", `/locks/${uniqueName("bad")}`, { json: { limit: 2 } });
    expectProblem(r, 400, "invalid-request");
    expect(r.json.detail).toMatch(/unknown field "limit"/);
  });

  it("limit-mismatch: 409 with the holders' limit, nothing changed; it wins over a full semaphore", async () => {
    const name = uniqueName("sem");
    const a = await take(name, { limit: 2, ttl: 20 });
    expect(a.status).toBe(201);
    const other = await take(name, { limit: 3 });
    expectProblem(other, 409, "limit-mismatch");
    expect(other.json.limit).toBe(2);
    expect(other.json.detail).toMatch(/limit 2, got 3/);
    expect(other.text).not.toContain(a.json.lease);
    expect(await holdersOf(name)).toEqual({ limit: 2, tokens: [a.json.token] });
    const b = await take(name, { limit: 2 });
    expect(b.status).toBe(201);
    // Full now: another limit is still limit-mismatch, the same limit lock-held.
    expectProblem(await take(name, { limit: 1 }), 409, "limit-mismatch");
    expectProblem(await take(name, { limit: 1, wait: 0.5 }), 409, "limit-mismatch");
    expectProblem(await take(name, { limit: 2 }), 409, "lock-held");
    expect(await holdersOf(name)).toEqual({ limit: 2, tokens: [a.json.token, b.json.token] });
  });

  it("a waiter that gives up says how many were still ahead of it (position) and when to retry", async () => {
    const name = uniqueName("sem");
    await take(name, { limit: 1, ttl: 30 });
    const first = take(name, { limit: 1, wait: 4 });
    await inLine(svc, `/semaphores/${name}`, 1);
    const second = await take(name, { limit: 1, wait: 0.5 });
    expectProblem(second, 409, "lock-held");
    expect(second.json.position).toBe(1);
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const firstReply = await first;
    expectProblem(firstReply, 409, "lock-held");
    expect(firstReply.json.position).toBe(0);
    // Both left the line when they gave up.
    await inLine(svc, `/semaphores/${name}`, 0);
  });

  it("lock-lost: renew or release with a lease that holds no permit changes nothing", async () => {
    const name = uniqueName("sem");
    const g = await take(name, { limit: 2, ttl: 20 });
    const stranger = "0123456789abcdef";
    expectProblem(
      await call(svc.url, "PUT", `/semaphores/${name}/renew`, { json: { lease: stranger } }),
      410,
      "lock-lost",
    );
    expectProblem(await call(svc.url, "DELETE", `/semaphores/${name}?lease=${stranger}`), 410, "lock-lost");
    expect((await call(svc.url, "DELETE", `/semaphores/${name}?lease=${g.json.lease}`)).status).toBe(204);
    const again = await call(svc.url, "DELETE", `/semaphores/${name}?lease=${g.json.lease}`);
    expectProblem(again, 410, "lock-lost");
    expect(again.text).not.toContain(g.json.lease);
    expectProblem(await call(svc.url, "PUT", `/semaphores/${name}/renew?lease=${g.json.lease}`), 410, "lock-lost");
  });

  it("lock-not-found: GET of a semaphore nobody holds", async () => {
    const r = await call(svc.url, "GET", `/semaphores/${uniqueName()}`);
    expectProblem(r, 404, "lock-not-found");
    expect(r.json.detail).toMatch(/^semaphore .* is not held$/);
  });

  it("with auth off nobody may force-release a permit: 403", async () => {
    const name = uniqueName("sem");
    const g = await take(name, { limit: 1 });
    const r = await call(svc.url, "DELETE", `/semaphores/${name}?force=true&token=${g.json.token}`);
    expectProblem(r, 403, "forbidden");
    expect((await holdersOf(name)).tokens).toEqual([g.json.token]);
  });

  it("renew and release input errors, and a token without force", async () => {
    const name = uniqueName("sem");
    const g = await take(name, { limit: 1 });
    expectProblem(await call(svc.url, "PUT", `/semaphores/${name}/renew`), 400, "invalid-request");
    expectProblem(await call(svc.url, "DELETE", `/semaphores/${name}`), 400, "invalid-request");
    expectProblem(await call(svc.url, "PUT", `/semaphores/${name}/renew?lease=123`), 400, "invalid-request");
    const token = await call(svc.url, "DELETE", `/semaphores/${name}?lease=${g.json.lease}&token=${g.json.token}`);
    expectProblem(token, 400, "invalid-request");
    expect(token.json.detail).toMatch(/^token goes with force=true/);
    expectProblem(await call(svc.url, "DELETE", `/semaphores/${name}?force=yes`), 400, "invalid-request");
    expect((await holdersOf(name)).tokens).toEqual([g.json.token]);
  });

  const badNames = ["a%20b", "a%2Fb", "a/b", "x".repeat(256)];
  it.each(badNames)("a bad name (%s) is 400 on every verb, naming a semaphore name", async (raw) => {
    for (const [method, path] of [
      ["POST", `/semaphores/${raw}`],
      ["GET", `/semaphores/${raw}`],
      ["PUT", `/semaphores/${raw}/renew?lease=${"a".repeat(16)}`],
      ["DELETE", `/semaphores/${raw}?lease=${"a".repeat(16)}`],
    ] as const) {
      const r = await call(svc.url, method, path, method === "POST" ? { json: { limit: 1 } } : {});
      expectProblem(r, 400, "invalid-request");
      expect(r.json.detail, `${method} ${path}`).toMatch(/semaphore name/);
    }
  });

  it("unknown query parameters are a 400 naming them", async () => {
    const name = uniqueName("q");
    for (const [method, path, param] of [
      ["POST", `/semaphores/${name}?limit=2`, "limit"],
      ["GET", `/semaphores/${name}?verbose=1`, "verbose"],
      ["PUT", `/semaphores/${name}/renew?lease=${"a".repeat(16)}&ttl=5`, "ttl"],
      ["GET", "/semaphores?sort=name", "sort"],
    ] as const) {
      const r = await call(svc.url, method, path);
      expectProblem(r, 400, "invalid-request");
      expect(r.json.detail).toContain(`"${param}"`);
    }
    expect((await call(svc.url, "GET", `/semaphores/${name}`)).status).toBe(404);
  });

  it("list input errors", async () => {
    for (const q of ["limit=0", "limit=1001", "prefix=a/b", "cursor=!!!", "prefx=a"]) {
      expectProblem(await call(svc.url, "GET", `/semaphores?${q}`), 400, "invalid-request");
    }
  });

  it("wrong methods are 405 with Allow", async () => {
    const r = await call(svc.url, "PATCH", `/semaphores/${uniqueName()}`);
    expectProblem(r, 405, "method-not-allowed");
    expect(r.headers.get("allow")).toContain("POST");
    expectProblem(await call(svc.url, "POST", "/semaphores"), 405, "method-not-allowed");
    expectProblem(await call(svc.url, "GET", `/semaphores/${uniqueName()}/renew`), 405, "method-not-allowed");
  });
});
