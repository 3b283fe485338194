import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, leaseIdOf, sleep, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { lineKeys } from "./lines.js";
import { targets } from "./targets.js";

describe.each(targets)("locks happy path ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("acquires with a JSON body and returns a full grant", async () => {
    const name = uniqueName("cron");
    const before = Date.now();
    const r = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 10, owner: "host-a" } });
    expect(r.status).toBe(201);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(r.json).toEqual({
      name,
      token: expect.any(Number),
      lease: expect.stringMatching(/^[0-9a-f]{16,64}$/),
      ttl: 10,
      expiresAt: expect.any(String),
      owner: "host-a",
    });
    expect(Number.isInteger(r.json.token)).toBe(true);
    const expires = Date.parse(r.json.expiresAt);
    expect(expires).toBeGreaterThanOrEqual(before + 9_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 10_500);
  });

  it("uses defaults with no body and omits owner when not given", async () => {
    const r = await call(svc.url, "POST", `/locks/${uniqueName()}`);
    expect(r.status).toBe(201);
    expect(r.json.ttl).toBe(30);
    expect("owner" in r.json).toBe(false);
  });

  it("accepts form fields and a JSON body sent as a form (curl -d)", async () => {
    const a = await call(svc.url, "POST", `/locks/${uniqueName()}`, { form: { ttl: "5", owner: "a", wait: "0.5" } });
    expect(a.status).toBe(201);
    expect(a.json).toMatchObject({ ttl: 5, owner: "a" });
    const b = await call(svc.url, "POST", `/locks/${uniqueName()}`, {
      body: '{"ttl":6,"owner":"b"}',
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(b.status).toBe(201);
    expect(b.json).toMatchObject({ ttl: 6, owner: "b" });
  });

  it("reads a chunked body (no Content-Length), in acquire and in release", async () => {
    const name = uniqueName();
    const enc = (t: string) => new TextEncoder().encode(t);
    const a = await call(svc.url, "POST", `/locks/${name}`, {
      bytes: [enc('{"ttl":7,'), enc('"owner":"chunked"}')],
      chunked: true,
      headers: { "content-type": "application/json" },
    });
    expect(a.status, a.text).toBe(201);
    expect(a.json).toMatchObject({ ttl: 7, owner: "chunked" });
    const r = await call(svc.url, "DELETE", `/locks/${name}`, {
      bytes: [enc(`{"lease":"${a.json.lease}"}`)],
      chunked: true,
      headers: { "content-type": "application/json" },
    });
    expect(r.status, r.text).toBe(204);
  });

  it("reports the TTL etcd granted when it raises a small one", async () => {
    const r = await call(svc.url, "POST", `/locks/${uniqueName()}`, { json: { ttl: 1 } });
    expect(r.status).toBe(201);
    expect(r.json.ttl).toBeGreaterThanOrEqual(1);
    const lease = await svc.direct.leaseTimeToLive(leaseIdOf(r.json.lease));
    expect(lease.grantedTtl).toBe(r.json.ttl);
  });

  it("inspects a held lock without the lease handle", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 20, owner: "insp" } });
    const r = await call(svc.url, "GET", `/locks/${name}`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      name,
      token: g.json.token,
      ttl: expect.any(Number),
      expiresAt: expect.any(String),
      owner: "insp",
      index: expect.any(Number),
    });
    expect(r.json.ttl).toBeGreaterThan(15);
    expect(r.json.ttl).toBeLessThanOrEqual(20);
    expect(r.text).not.toContain(g.json.lease);
  });

  it("renews: same token, expiresAt moves, TTL reset", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 4 } });
    // Deliberate: renew 1.2 s into the TTL, so the new expiresAt is over a second later.
    await sleep(1_200);
    const r = await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease } });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ name, token: g.json.token, lease: g.json.lease, ttl: 4 });
    expect(Date.parse(r.json.expiresAt)).toBeGreaterThan(Date.parse(g.json.expiresAt) + 1_000);
    const byQuery = await call(svc.url, "PUT", `/locks/${name}/renew?lease=${g.json.lease.toUpperCase()}`);
    expect(byQuery.status).toBe(200);
    expect(byQuery.json.token).toBe(g.json.token);
  });

  it("a lock held past its TTL by renewals stays with the same token", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 2 } });
    for (let i = 0; i < 4; i++) {
      // Deliberate: renewals 0.9 s apart hold a 2 s lock for 3.6 s, past its TTL.
      await sleep(900);
      const r = await call(svc.url, "PUT", `/locks/${name}/renew`, { form: { lease: g.json.lease } });
      expect(r.status).toBe(200);
    }
    const info = await call(svc.url, "GET", `/locks/${name}`);
    expect(info.json.token).toBe(g.json.token);
  });

  it("releases with the lease in the body or the query; the name is free again", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`);
    const r = await call(svc.url, "DELETE", `/locks/${name}`, { json: { lease: g.json.lease } });
    expect(r.status).toBe(204);
    expect(r.text).toBe("");
    expect((await call(svc.url, "GET", `/locks/${name}`)).status).toBe(404);
    const g2 = await call(svc.url, "POST", `/locks/${name}`);
    expect(g2.status).toBe(201);
    expect(g2.json.token).toBeGreaterThan(g.json.token);
    expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${g2.json.lease}`)).status).toBe(204);
  });

  it("TTL expiry frees the lock and the next token is larger", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 2 } });
    expect((await call(svc.url, "POST", `/locks/${name}`)).status).toBe(409);
    const inspect = () => call(svc.url, "GET", `/locks/${name}`);
    await until(async () => (await inspect()).status === 404, "the 2 s TTL to run out");
    expect((await inspect()).status).toBe(404);
    const g2 = await call(svc.url, "POST", `/locks/${name}`);
    expect(g2.status).toBe(201);
    expect(g2.json.token).toBeGreaterThan(g.json.token);
    // The former holder's handle cannot touch the new grant.
    expect((await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease } })).status).toBe(410);
    expect((await call(svc.url, "DELETE", `/locks/${name}`, { json: { lease: g.json.lease } })).status).toBe(410);
    expect((await call(svc.url, "GET", `/locks/${name}`)).json.token).toBe(g2.json.token);
  });

  it("an Idempotency-Key retry returns the same grant with 200; another key gets 409", async () => {
    const name = uniqueName();
    const key = crypto.randomUUID();
    const first = await call(svc.url, "POST", `/locks/${name}`, {
      json: { ttl: 15, owner: "idem" },
      headers: { "idempotency-key": key },
    });
    expect(first.status).toBe(201);
    const again = await call(svc.url, "POST", `/locks/${name}`, {
      json: { ttl: 15, owner: "idem" },
      headers: { "Idempotency-Key": key },
    });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({
      name,
      token: first.json.token,
      lease: first.json.lease,
      ttl: 15,
      owner: "idem",
    });
    const other = await call(svc.url, "POST", `/locks/${name}`, {
      headers: { "idempotency-key": crypto.randomUUID() },
    });
    expect(other.status).toBe(409);
    const none = await call(svc.url, "POST", `/locks/${name}`);
    expect(none.status).toBe(409);
  });

  it("the same Idempotency-Key with other fields is 422 idempotency-key-mismatch, and changes nothing", async () => {
    const name = uniqueName();
    const key = crypto.randomUUID();
    const headers = { "idempotency-key": key };
    const first = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 15, owner: "a" }, headers });
    expect(first.status).toBe(201);
    for (const json of [{ ttl: 300, owner: "a" }, { ttl: 15, owner: "b" }, { ttl: 15 }]) {
      const r = await call(svc.url, "POST", `/locks/${name}`, { json, headers });
      expect(r.status, JSON.stringify(json)).toBe(422);
      expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(r.json.code).toBe("idempotency-key-mismatch");
      expect(r.text).not.toContain(first.json.lease);
    }
    const info = await call(svc.url, "GET", `/locks/${name}`);
    expect(info.json).toMatchObject({ token: first.json.token, owner: "a" });
    expect(info.json.ttl).toBeLessThanOrEqual(15);
  });

  it("a retry with the same Idempotency-Key may carry the wait that is left: the same grant, 200", async () => {
    const name = uniqueName();
    const headers = { "idempotency-key": crypto.randomUUID() };
    const first = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 15, wait: 5 }, headers });
    expect(first.status).toBe(201);
    const retry = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 15, wait: 2.5 }, headers });
    expect(retry.status).toBe(200);
    expect(retry.json).toMatchObject({ token: first.json.token, lease: first.json.lease });
  });

  it("a grant's expiresAt never moves backwards between calls", async () => {
    const name = uniqueName();
    const key = crypto.randomUUID();
    const headers = { "idempotency-key": key };
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 }, headers });
    expect(g.status).toBe(201);
    const seen: string[] = [g.json.expiresAt];
    const step = async (
      r: Promise<{ json: { expiresAt?: string; items?: { name: string; expiresAt: string }[] } }>,
    ) => {
      const j = (await r).json;
      const at = j.expiresAt ?? j.items?.find((i) => i.name === name)?.expiresAt;
      expect(at).toBeDefined();
      seen.push(at as string);
    };
    for (let i = 0; i < 3; i++) {
      await step(call(svc.url, "GET", `/locks/${name}`));
      await step(call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 }, headers }));
      await step(call(svc.url, "GET", `/locks?prefix=${name}`));
    }
    await step(call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease } }));
    for (let i = 0; i < 3; i++) {
      await step(call(svc.url, "GET", `/locks/${name}`));
      await step(call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 }, headers }));
    }
    const times = seen.map((s) => Date.parse(s));
    for (let i = 1; i < times.length; i++) expect(times[i], seen.join(" ")).toBeGreaterThanOrEqual(times[i - 1] ?? 0);
  });

  it("24 concurrent acquires of one name give exactly one 201", async () => {
    const name = uniqueName("race");
    const replies = await Promise.all(
      Array.from({ length: 24 }, (_, i) => call(svc.url, "POST", `/locks/${name}`, { json: { owner: `c${i}` } })),
    );
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(23);
    // The losers left nothing behind: the line's only key is the winner's, on its lease.
    const winner = replies.find((r) => r.status === 201);
    const kvs = await lineKeys(svc, "lock", name);
    expect(kvs).toHaveLength(1);
    expect(kvs[0]?.lease).toBe(leaseIdOf(winner?.json.lease));
  });

  it("lists held locks in name order, by prefix, a page at a time, without leases", async () => {
    const prefix = `${uniqueName("list")}:`;
    const names = ["c", "a", "e", "b", "d"].map((s) => `${prefix}${s}`);
    const leases: string[] = [];
    for (const n of names) {
      const g = await call(svc.url, "POST", `/locks/${n}`, { json: { owner: `o-${n.slice(-1)}` } });
      leases.push(g.json.lease);
    }
    await call(svc.url, "POST", `/locks/${uniqueName("other")}`);
    const page1 = await call(svc.url, "GET", `/locks?prefix=${encodeURIComponent(prefix)}&limit=2`);
    expect(page1.status).toBe(200);
    expect(page1.json.items.map((i: { name: string }) => i.name)).toEqual([`${prefix}a`, `${prefix}b`]);
    expect(page1.json.items[0]).toEqual({
      name: `${prefix}a`,
      token: expect.any(Number),
      ttl: expect.any(Number),
      expiresAt: expect.any(String),
      owner: "o-a",
    });
    expect(typeof page1.json.cursor).toBe("string");
    const page2 = await call(
      svc.url,
      "GET",
      `/locks?prefix=${encodeURIComponent(prefix)}&limit=2&cursor=${page1.json.cursor}`,
    );
    expect(page2.json.items.map((i: { name: string }) => i.name)).toEqual([`${prefix}c`, `${prefix}d`]);
    const page3 = await call(
      svc.url,
      "GET",
      `/locks?prefix=${encodeURIComponent(prefix)}&limit=2&cursor=${page2.json.cursor}`,
    );
    expect(page3.json.items.map((i: { name: string }) => i.name)).toEqual([`${prefix}e`]);
    expect("cursor" in page3.json).toBe(false);
    const all = await call(svc.url, "GET", "/locks?limit=1000");
    expect(all.json.items.length).toBeGreaterThanOrEqual(6);
    for (const lease of leases) {
      expect(page1.text + page2.text + page3.text + all.text).not.toContain(lease);
    }
  });

  it("stores every lock under the configured prefix, and nothing else", async () => {
    const name = uniqueName("prefix");
    await call(svc.url, "POST", `/locks/${name}`);
    const everything = await svc.direct.range("\0", "\x7f", 0);
    expect(everything.kvs.length).toBeGreaterThan(0);
    for (const kv of everything.kvs) expect(kv.key.startsWith(svc.prefix)).toBe(true);
    expect(await lineKeys(svc, "lock", name)).toHaveLength(1);
  });

  it("serves health, readiness, the committed openapi.yaml and offline docs", async () => {
    expect((await call(svc.url, "GET", "/healthz")).json).toEqual({ status: "ok" });
    expect((await call(svc.url, "GET", "/readyz")).status).toBe(200);
    const spec = await call(svc.url, "GET", "/openapi.yaml");
    expect(spec.status).toBe(200);
    expect(spec.text).toBe(readFileSync(new URL("../../openapi.yaml", import.meta.url), "utf8"));
    const dashboard = await call(svc.url, "GET", "/");
    expect(dashboard.status).toBe(200);
    expect(dashboard.text).toContain("dashboard/app.js");
    // No other site may frame the page (its force-release buttons).
    expect(dashboard.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(dashboard.headers.get("x-frame-options")).toBe("DENY");
    for (const asset of ["app.js", "app.css"]) {
      expect((await call(svc.url, "GET", `/dashboard/${asset}`)).status, asset).toBe(200);
    }
    const docs = await call(svc.url, "GET", "/docs");
    expect(docs.status).toBe(200);
    expect(docs.text).toContain("swagger-ui");
    expect(docs.text).not.toMatch(/https?:\/\//);
    for (const asset of ["swagger-ui.css", "swagger-ui-bundle.js", "init.js"]) {
      const a = await call(svc.url, "GET", `/docs/assets/${asset}`);
      expect(a.status, asset).toBe(200);
      expect(a.text.length, asset).toBeGreaterThan(10);
    }
  });

  it("never writes a lease handle to its logs", async () => {
    const name = uniqueName("logs");
    const g = await call(svc.url, "POST", `/locks/${name}`);
    await call(svc.url, "PUT", `/locks/${name}/renew?lease=${g.json.lease}`);
    await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    // A worker's lines pass through wrangler's output and may arrive a little later.
    const lines = () => svc.logs.filter((l) => l.includes(name)).length;
    await until(() => lines() >= 4, "the four requests' log lines", 5_000);
    expect(lines()).toBeGreaterThanOrEqual(4);
    expect(svc.logs.join("\n")).not.toContain(g.json.lease);
  });
});
