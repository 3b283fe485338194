import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type Reply, uniqueName } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { lineKeys } from "./lines.js";
import { targets } from "./targets.js";

const A_KEY = "key-for-team-a-4f1c9e";
/** A second key of team a: allowed on the same names, but another caller. */
const A2_KEY = "second-key-for-team-a-5e2d1f";
const B_KEY = "key-for-team-b-77d0aa";
const ADMIN_KEY = "admin-key-0c3b5e21";
const HASHED_SECRET = "hashed-key-for-c-91ab";

const keys = [
  { key: A_KEY, prefixes: ["a:"] },
  { key: A2_KEY, prefixes: ["a:"] },
  { key: B_KEY, prefixes: ["b:", "shared:"] },
  { key: `sha256:${createHash("sha256").update(HASHED_SECRET).digest("hex")}`, prefixes: ["c:"] },
  { key: ADMIN_KEY, prefixes: [""], admin: true },
];

const as = (key: string) => ({ authorization: `Bearer ${key}` });

function expectProblem(r: Reply, status: number, code: string) {
  expect(r.status, r.text).toBe(status);
  expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(r.json.code).toBe(code);
}

describe.each(targets)("API keys and scopes ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start({ LEASEHOLD_API_KEYS: JSON.stringify(keys) });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("401 with WWW-Authenticate without a key, with a wrong key, or a malformed header", async () => {
    const name = `a:${uniqueName()}`;
    for (const headers of [
      {},
      as("wrong-key"),
      { authorization: A_KEY },
      { authorization: "Basic YTpi" },
      as(`${A_KEY}x`),
    ]) {
      const r = await call(svc.url, "POST", `/locks/${name}`, { headers });
      expectProblem(r, 401, "unauthorized");
      expect(r.headers.get("www-authenticate")).toMatch(/^Bearer/);
    }
    expectProblem(await call(svc.url, "GET", "/locks"), 401, "unauthorized");
    expect(await lineKeys(svc, "lock", name)).toEqual([]);
  });

  it("health, readiness, the spec and the docs stay open", async () => {
    for (const path of ["/healthz", "/readyz", "/openapi.yaml", "/docs", "/docs/assets/swagger-ui.css"]) {
      expect((await call(svc.url, "GET", path)).status, path).toBe(200);
    }
  });

  it("a key for a: cannot acquire, renew, release, inspect or list b: names", async () => {
    const bName = `b:${uniqueName()}`;
    const held = await call(svc.url, "POST", `/locks/${bName}`, { headers: as(B_KEY), json: { owner: "team-b" } });
    expect(held.status).toBe(201);
    const lease = held.json.lease;
    expectProblem(await call(svc.url, "POST", `/locks/${bName}`, { headers: as(A_KEY) }), 403, "forbidden");
    expectProblem(
      await call(svc.url, "PUT", `/locks/${bName}/renew`, { headers: as(A_KEY), json: { lease } }),
      403,
      "forbidden",
    );
    expectProblem(
      await call(svc.url, "DELETE", `/locks/${bName}`, { headers: as(A_KEY), json: { lease } }),
      403,
      "forbidden",
    );
    expectProblem(await call(svc.url, "GET", `/locks/${bName}`, { headers: as(A_KEY) }), 403, "forbidden");
    expectProblem(
      await call(svc.url, "DELETE", `/locks/${bName}?force=true`, { headers: as(A_KEY) }),
      403,
      "forbidden",
    );
    const aList = await call(svc.url, "GET", "/locks?limit=1000", { headers: as(A_KEY) });
    expect(aList.status).toBe(200);
    expect(aList.json.items.every((i: { name: string }) => i.name.startsWith("a:"))).toBe(true);
    expect((await call(svc.url, "GET", "/locks?prefix=b:", { headers: as(A_KEY) })).json.items).toEqual([]);
    // Still held by b, untouched.
    const info = await call(svc.url, "GET", `/locks/${bName}`, { headers: as(B_KEY) });
    expect(info.json.token).toBe(held.json.token);
  });

  it("checks auth, then the name, then scope, then the body", async () => {
    expectProblem(await call(svc.url, "POST", "/locks/bad%20name", { json: { ttl: -1 } }), 401, "unauthorized");
    expectProblem(
      await call(svc.url, "POST", "/locks/bad%20name", { headers: as(A_KEY), json: { ttl: -1 } }),
      400,
      "invalid-request",
    );
    const forbidden = await call(svc.url, "POST", `/locks/b:${uniqueName()}`, {
      headers: { ...as(A_KEY), "content-type": "text/plain" },
      body: "x".repeat(2 * 1024 * 1024),
    });
    expectProblem(forbidden, 403, "forbidden");
    expectProblem(
      await call(svc.url, "POST", `/locks/a:${uniqueName()}`, {
        headers: { ...as(A_KEY), "content-type": "text/plain" },
        body: "x",
      }),
      415,
      "unsupported-media-type",
    );
    expectProblem(
      await call(svc.url, "DELETE", `/locks/b:${uniqueName()}?force=maybe`, { headers: as(A_KEY) }),
      403,
      "forbidden",
    );
  });

  it("checks scope before the query: an unknown query parameter on another team's name is 403", async () => {
    expectProblem(await call(svc.url, "POST", "/locks/a:x?ttl=300"), 401, "unauthorized");
    expectProblem(
      await call(svc.url, "POST", `/locks/b:${uniqueName()}?ttl=300`, { headers: as(A_KEY) }),
      403,
      "forbidden",
    );
    const own = await call(svc.url, "POST", `/locks/a:${uniqueName()}?ttl=300`, { headers: as(A_KEY) });
    expectProblem(own, 400, "invalid-request");
    expect(own.json.detail).toMatch(/"ttl"/);
  });

  it("a key with several prefixes lists exactly its names, in order, across pages", async () => {
    const suffix = uniqueName("p");
    const mine = [`b:${suffix}:1`, `b:${suffix}:2`, `shared:${suffix}:1`, `shared:${suffix}:2`, `shared:${suffix}:3`];
    for (const n of mine) expect((await call(svc.url, "POST", `/locks/${n}`, { headers: as(B_KEY) })).status).toBe(201);
    await call(svc.url, "POST", `/locks/a:${suffix}`, { headers: as(A_KEY) });
    await call(svc.url, "POST", `/locks/c:${suffix}`, { headers: as(HASHED_SECRET) });
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page++) {
      const r = await call(svc.url, "GET", `/locks?limit=2${cursor ? `&cursor=${cursor}` : ""}`, {
        headers: as(B_KEY),
      });
      expect(r.status).toBe(200);
      seen.push(...r.json.items.map((i: { name: string }) => i.name));
      cursor = r.json.cursor;
      if (!cursor) break;
    }
    expect(seen.filter((n) => n.includes(suffix))).toEqual(mine);
    expect(seen.every((n) => n.startsWith("b:") || n.startsWith("shared:"))).toBe(true);
  });

  it("the sha256: form of a key works", async () => {
    const r = await call(svc.url, "POST", `/locks/c:${uniqueName()}`, { headers: as(HASHED_SECRET) });
    expect(r.status).toBe(201);
    expectProblem(
      await call(svc.url, "POST", `/locks/a:${uniqueName()}`, { headers: as(HASHED_SECRET) }),
      403,
      "forbidden",
    );
    // The digest itself is not a key.
    const digest = createHash("sha256").update(HASHED_SECRET).digest("hex");
    expectProblem(await call(svc.url, "GET", "/locks", { headers: as(digest) }), 401, "unauthorized");
  });

  it("admin force-release: 204, 404 when nothing is held, and the former holder's next renew is 410", async () => {
    const name = `a:${uniqueName()}`;
    const g = await call(svc.url, "POST", `/locks/${name}`, { headers: as(A_KEY), json: { ttl: 30 } });
    expectProblem(await call(svc.url, "DELETE", `/locks/${name}?force=true`, { headers: as(A_KEY) }), 403, "forbidden");
    expect((await call(svc.url, "DELETE", `/locks/${name}?force=true`, { headers: as(ADMIN_KEY) })).status).toBe(204);
    expectProblem(
      await call(svc.url, "PUT", `/locks/${name}/renew`, { headers: as(A_KEY), json: { lease: g.json.lease } }),
      410,
      "lock-lost",
    );
    expectProblem(
      await call(svc.url, "DELETE", `/locks/${name}?force=true`, { headers: as(ADMIN_KEY) }),
      404,
      "lock-not-found",
    );
    // The old handle cannot touch the next grant either.
    const g2 = await call(svc.url, "POST", `/locks/${name}`, { headers: as(A_KEY) });
    expect(g2.status).toBe(201);
    expect(g2.json.token).toBeGreaterThan(g.json.token);
    expectProblem(
      await call(svc.url, "DELETE", `/locks/${name}`, { headers: as(A_KEY), json: { lease: g.json.lease } }),
      410,
      "lock-lost",
    );
    expect((await call(svc.url, "GET", `/locks/${name}`, { headers: as(A_KEY) })).json.token).toBe(g2.json.token);
  });

  it("an idempotent replay goes only to a caller allowed on the name", async () => {
    const name = `a:${uniqueName()}`;
    const idem = { "idempotency-key": crypto.randomUUID() };
    expect((await call(svc.url, "POST", `/locks/${name}`, { headers: { ...as(A_KEY), ...idem } })).status).toBe(201);
    expectProblem(
      await call(svc.url, "POST", `/locks/${name}`, { headers: { ...as(B_KEY), ...idem } }),
      403,
      "forbidden",
    );
    expect((await call(svc.url, "POST", `/locks/${name}`, { headers: { ...as(A_KEY), ...idem } })).status).toBe(200);
  });

  it("another API key's Idempotency-Key is unknown to this caller: 409, never the holder's lease", async () => {
    const name = `a:${uniqueName()}`;
    const idem = { "idempotency-key": crypto.randomUUID() };
    const g = await call(svc.url, "POST", `/locks/${name}`, { headers: { ...as(A_KEY), ...idem }, json: { ttl: 20 } });
    expect(g.status).toBe(201);
    for (const key of [A2_KEY, ADMIN_KEY]) {
      const r = await call(svc.url, "POST", `/locks/${name}`, { headers: { ...as(key), ...idem }, json: { ttl: 20 } });
      expectProblem(r, 409, "lock-held");
      expect(r.text).not.toContain(g.json.lease);
    }
    // The holder's own retry still gets its grant, and the lock is still the holder's.
    const again = await call(svc.url, "POST", `/locks/${name}`, {
      headers: { ...as(A_KEY), ...idem },
      json: { ttl: 20 },
    });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ token: g.json.token, lease: g.json.lease });
    // Nothing in etcd lets a reader rebuild the handle or the Idempotency-Key.
    const kvs = await lineKeys(svc, "lock", name);
    expect(kvs).toHaveLength(1);
    const stored = kvs.map((kv) => `${kv.key} ${kv.value}`).join("\n");
    // The handle's last 16 digits are its secret nonce (the lease ID and key ID before it are no secret).
    expect(stored).not.toContain(g.json.lease.slice(-16));
    expect(stored).not.toContain(idem["idempotency-key"]);
  });

  it("semaphores: 401 without a key; a key for a: cannot take, renew, release, leave, inspect or list b: ones", async () => {
    const bName = `b:${uniqueName("sem")}`;
    expectProblem(await call(svc.url, "POST", `/semaphores/${bName}`, { json: { limit: 2 } }), 401, "unauthorized");
    expectProblem(await call(svc.url, "GET", "/semaphores"), 401, "unauthorized");
    const held = await call(svc.url, "POST", `/semaphores/${bName}`, { headers: as(B_KEY), json: { limit: 1 } });
    expect(held.status).toBe(201);
    const queued = await call(svc.url, "POST", `/semaphores/${bName}`, {
      headers: as(B_KEY),
      json: { limit: 1, queue: true },
    });
    expect(queued.status).toBe(202);
    const { lease } = held.json;
    const { ticket } = queued.json;
    for (const [method, path, json] of [
      ["POST", `/semaphores/${bName}`, { limit: 1 }],
      ["POST", `/semaphores/${bName}`, { ticket }],
      ["PUT", `/semaphores/${bName}/renew`, { lease }],
      ["DELETE", `/semaphores/${bName}`, { lease }],
      ["DELETE", `/semaphores/${bName}`, { ticket }],
      ["GET", `/semaphores/${bName}`, undefined],
      ["DELETE", `/semaphores/${bName}?force=true&token=${held.json.token}`, undefined],
    ] as const) {
      const r = await call(svc.url, method, path, { headers: as(A_KEY), ...(json ? { json } : {}) });
      expectProblem(r, 403, "forbidden");
      expect(r.json.detail, `${method} ${path}`).toContain(`semaphore ${bName}`);
      expect(r.text).not.toContain(lease);
      expect(r.text).not.toContain(ticket);
    }
    const aList = await call(svc.url, "GET", "/semaphores?limit=1000", { headers: as(A_KEY) });
    expect(aList.status).toBe(200);
    expect(aList.json.items.every((i: { name: string }) => i.name.startsWith("a:"))).toBe(true);
    expect((await call(svc.url, "GET", "/semaphores?prefix=b:", { headers: as(A_KEY) })).json.items).toEqual([]);
    // Still b's, untouched, with its ticket in line.
    const info = await call(svc.url, "GET", `/semaphores/${bName}`, { headers: as(B_KEY) });
    expect(info.json).toMatchObject({ limit: 1, waiters: 1, holders: [{ token: held.json.token }] });
    const bList = await call(svc.url, "GET", `/semaphores?prefix=${bName}`, { headers: as(B_KEY) });
    expect(bList.json.items.map((i: { name: string }) => i.name)).toEqual([bName]);
  });

  it("admin force release of a permit: by its token; 400 without one, 404 when no holder has it", async () => {
    const name = `a:${uniqueName("sem")}`;
    const path = `/semaphores/${name}`;
    const first = await call(svc.url, "POST", path, { headers: as(A_KEY), json: { limit: 2 } });
    const second = await call(svc.url, "POST", path, { headers: as(A_KEY), json: { limit: 2 } });
    expectProblem(
      await call(svc.url, "DELETE", `${path}?force=true&token=${first.json.token}`, { headers: as(A_KEY) }),
      403,
      "forbidden",
    );
    const noToken = await call(svc.url, "DELETE", `${path}?force=true`, { headers: as(ADMIN_KEY) });
    expectProblem(noToken, 400, "invalid-request");
    expect(noToken.json.detail).toMatch(/token/);
    expectProblem(
      await call(svc.url, "DELETE", `${path}?force=true&token=${second.json.token + 1000}`, { headers: as(ADMIN_KEY) }),
      404,
      "lock-not-found",
    );
    const forced = await call(svc.url, "DELETE", `${path}?force=true&token=${first.json.token}`, {
      headers: as(ADMIN_KEY),
    });
    expect(forced.status, forced.text).toBe(204);
    // Only that permit ended.
    expectProblem(
      await call(svc.url, "PUT", `${path}/renew`, { headers: as(A_KEY), json: { lease: first.json.lease } }),
      410,
      "lock-lost",
    );
    const info = await call(svc.url, "GET", path, { headers: as(A_KEY) });
    expect(info.json.holders.map((h: { token: number }) => h.token)).toEqual([second.json.token]);
    expectProblem(
      await call(svc.url, "DELETE", `${path}?force=true&token=${first.json.token}`, { headers: as(ADMIN_KEY) }),
      404,
      "lock-not-found",
    );
    // A lock's force release may name its holder's token too: another token is 404, nothing changed.
    const lock = await call(svc.url, "POST", `/locks/${name}`, { headers: as(A_KEY) });
    expectProblem(
      await call(svc.url, "DELETE", `/locks/${name}?force=true&token=${lock.json.token + 1}`, {
        headers: as(ADMIN_KEY),
      }),
      404,
      "lock-not-found",
    );
    expect(
      (await call(svc.url, "DELETE", `/locks/${name}?force=true&token=${lock.json.token}`, { headers: as(ADMIN_KEY) }))
        .status,
    ).toBe(204);
  });

  it("never writes an API key, a lease handle or a ticket to its logs", async () => {
    const name = `a:${uniqueName()}`;
    const g = await call(svc.url, "POST", `/locks/${name}`, { headers: as(A_KEY) });
    const t = await call(svc.url, "POST", `/locks/${name}`, { headers: as(A_KEY), json: { queue: true } });
    expect(t.status).toBe(202);
    await call(svc.url, "POST", `/locks/${name}`, { headers: as(A_KEY), json: { ticket: t.json.ticket } });
    await call(svc.url, "DELETE", `/locks/${name}?ticket=${t.json.ticket}`, { headers: as(A_KEY) });
    await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`, { headers: as(A_KEY) });
    await call(svc.url, "GET", "/locks", { headers: as("a-wrong-key-that-must-not-be-logged") });
    const logs = svc.logs.join("\n");
    for (const secret of [
      A_KEY,
      B_KEY,
      ADMIN_KEY,
      HASHED_SECRET,
      "a-wrong-key-that-must-not-be-logged",
      g.json.lease,
      t.json.ticket,
    ]) {
      expect(logs).not.toContain(secret);
    }
  });
});
