import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LineKeys } from "../../src/lock/line-keys.js";
import { call, type Reply, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, lineKeys } from "./lines.js";
import { targets } from "./targets.js";

const ADMIN_KEY = "fences-admin-key-7d2c";
const USER_KEY = "fences-user-key-31ab";
/** A key for names under "team-a:" only. */
const SCOPED_KEY = "fences-scoped-key-9e04";
const admin = { authorization: `Bearer ${ADMIN_KEY}` };
const user = { authorization: `Bearer ${USER_KEY}` };

/**
 * The three ways a resource can fence a stale holder beyond comparing tokens itself:
 * the fence check, guarded state and lock-delay, on every target.
 */
describe.each(targets)("fences ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start({
      LEASEHOLD_API_KEYS: JSON.stringify([
        { key: USER_KEY, prefixes: [""] },
        { key: SCOPED_KEY, prefixes: ["team-a:"] },
        { key: ADMIN_KEY, prefixes: [""], admin: true },
      ]),
    });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  const post = (path: string, json: unknown = {}) => call(svc.url, "POST", path, { json, headers: user });
  const get = (path: string) => call(svc.url, "GET", path, { headers: user });
  const put = (path: string, json: unknown) => call(svc.url, "PUT", path, { json, headers: user });
  const granted = (r: Reply) => {
    expect(r.status, r.text).toBe(201);
    return r.json as { token: number; lease: string };
  };
  /** Resolves once the lock's grant is gone (its lease expired). */
  const untilFree = (name: string) =>
    until(async () => (await get(`/locks/${name}`)).status === 404, `lock ${name} to expire`, 20_000);

  describe("fence check", () => {
    it("200 for the holder's token; 409 fence-stale with the current token once another holds it", async () => {
      const name = uniqueName("fence");
      const a = granted(await post(`/locks/${name}`, { ttl: 30 }));
      const ok = await get(`/locks/${name}/fence?token=${a.token}`);
      expect(ok.status, ok.text).toBe(200);
      expect(ok.json).toEqual({ name, token: a.token, current: true });

      expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${a.lease}`, { headers: user })).status).toBe(204);
      const free = await get(`/locks/${name}/fence?token=${a.token}`);
      expectProblem(free, 409, "fence-stale");
      expect(free.json.current).toBeUndefined();
      expect(free.json.detail).toMatch(new RegExp(`token ${a.token} is not current`));

      const b = granted(await post(`/locks/${name}`, { ttl: 30 }));
      const stale = await get(`/locks/${name}/fence?token=${a.token}`);
      expectProblem(stale, 409, "fence-stale");
      expect(stale.json.current).toBe(b.token);
      // A token from the future is not current either.
      expectProblem(await get(`/locks/${name}/fence?token=${b.token + 1}`), 409, "fence-stale");
      expect(stale.text).not.toContain(b.lease);
    });

    it("a semaphore: each permit's token is current; a released one is not, with the holders' tokens", async () => {
      const name = uniqueName("fence-sem");
      const a = granted(await post(`/semaphores/${name}`, { limit: 2 }));
      const b = granted(await post(`/semaphores/${name}`, { limit: 2 }));
      for (const t of [a.token, b.token]) {
        expect((await get(`/semaphores/${name}/fence?token=${t}`)).status).toBe(200);
      }
      await call(svc.url, "DELETE", `/semaphores/${name}?lease=${a.lease}`, { headers: user });
      const stale = await get(`/semaphores/${name}/fence?token=${a.token}`);
      expectProblem(stale, 409, "fence-stale");
      expect(stale.json.holders).toEqual([b.token]);
    });

    it("400 for a missing, non-integer or extra query parameter", async () => {
      const name = uniqueName("fence");
      expectProblem(await get(`/locks/${name}/fence`), 400, "invalid-request");
      const bad = await get(`/locks/${name}/fence?token=abc`);
      expectProblem(bad, 400, "invalid-request");
      expect(bad.json.detail).toMatch(/token must be a whole number/);
      expectProblem(await get(`/locks/${name}/fence?token=1.5`), 400, "invalid-request");
      expectProblem(await get(`/locks/${name}/fence?token=1&lease=00`), 400, "invalid-request");
    });
  });

  describe("guarded state", () => {
    it("written by the holder, read with its token, kept after the grant; the next holder replaces it", async () => {
      const name = uniqueName("state");
      expectProblem(await get(`/locks/${name}/state`), 404, "state-not-found");
      const a = granted(await post(`/locks/${name}`));
      const w = await put(`/locks/${name}/state`, { lease: a.lease, value: "run 1 done" });
      expect(w.status, w.text).toBe(200);
      expect(w.json).toMatchObject({ value: "run 1 done", token: a.token, revision: expect.any(Number) });
      expect(Date.parse(w.json.updatedAt)).not.toBeNaN();
      expect(w.text).not.toContain(a.lease);
      await call(svc.url, "DELETE", `/locks/${name}?lease=${a.lease}`, { headers: user });
      expect((await get(`/locks/${name}/state`)).json).toEqual(w.json);

      const b = granted(await post(`/locks/${name}`));
      // The lease may come in the query too, and the value as form fields.
      const w2 = await call(svc.url, "PUT", `/locks/${name}/state?lease=${b.lease}`, {
        form: { value: "run 2 done" },
        headers: user,
      });
      expect(w2.status, w2.text).toBe(200);
      expect(w2.json).toMatchObject({ value: "run 2 done", token: b.token });
      expect(w2.json.revision).toBeGreaterThan(w.json.revision);
    });

    it("a former holder's write is refused (410) and changes nothing, also after its lease expired", async () => {
      const name = uniqueName("state");
      const a = granted(await post(`/locks/${name}`, { ttl: 2 }));
      await untilFree(name);
      const b = granted(await post(`/locks/${name}`));
      const mine = await put(`/locks/${name}/state`, { lease: b.lease, value: "b" });
      expect(mine.status, mine.text).toBe(200);
      const stale = await put(`/locks/${name}/state`, { lease: a.lease, value: "a, paused past its TTL" });
      expectProblem(stale, 410, "lock-lost");
      expect((await get(`/locks/${name}/state`)).json).toEqual(mine.json);
    });

    it("any current permit of a semaphore writes its one state, recording that permit's token", async () => {
      const name = uniqueName("state-sem");
      const a = granted(await post(`/semaphores/${name}`, { limit: 2 }));
      const b = granted(await post(`/semaphores/${name}`, { limit: 2 }));
      expect((await put(`/semaphores/${name}/state`, { lease: a.lease, value: "a" })).json.token).toBe(a.token);
      expect((await put(`/semaphores/${name}/state`, { lease: b.lease, value: "b" })).json.token).toBe(b.token);
      await call(svc.url, "DELETE", `/semaphores/${name}?lease=${a.lease}`, { headers: user });
      expectProblem(await put(`/semaphores/${name}/state`, { lease: a.lease, value: "a2" }), 410, "lock-lost");
      expect((await get(`/semaphores/${name}/state`)).json).toMatchObject({ value: "b", token: b.token });
      // A lock's state and a semaphore's of the same name are apart.
      expectProblem(await get(`/locks/${name}/state`), 404, "state-not-found");
    });

    it("bad input: no lease or value 400, a value over 65,536 UTF-8 bytes 413; nothing is written", async () => {
      const name = uniqueName("state");
      const a = granted(await post(`/locks/${name}`));
      expectProblem(await put(`/locks/${name}/state`, { value: "x" }), 400, "invalid-request");
      const noValue = await put(`/locks/${name}/state`, { lease: a.lease });
      expectProblem(noValue, 400, "invalid-request");
      expect(noValue.json.detail).toMatch(/value/);
      expectProblem(await put(`/locks/${name}/state`, { lease: a.lease, value: 7 }), 400, "invalid-request");
      expectProblem(await put(`/locks/${name}/state`, { lease: a.lease, value: "x", ttl: 3 }), 400, "invalid-request");
      const big = await put(`/locks/${name}/state`, { lease: a.lease, value: "é".repeat(32_769) });
      expectProblem(big, 413, "payload-too-large");
      expect(big.json.detail).toMatch(/at most 65536 UTF-8 bytes, got 65538/);
      expectProblem(await get(`/locks/${name}/state`), 404, "state-not-found");
      const most = await put(`/locks/${name}/state`, { lease: a.lease, value: "é".repeat(32_768) });
      expect(most.status, most.text).toBe(200);
    });
  });

  it("scopes: another tenant's key can neither check fences nor read or write state (403); no key is 401", async () => {
    const name = uniqueName("team-b:state");
    const a = granted(await post(`/locks/${name}`));
    expect((await put(`/locks/${name}/state`, { lease: a.lease, value: "mine" })).status).toBe(200);
    const scoped = { authorization: `Bearer ${SCOPED_KEY}` };
    for (const [method, path, json] of [
      ["GET", `/locks/${name}/fence?token=${a.token}`, undefined],
      ["GET", `/locks/${name}/state`, undefined],
      ["PUT", `/locks/${name}/state`, { lease: a.lease, value: "theirs" }],
      ["GET", `/semaphores/${name}/state`, undefined],
    ] as const) {
      const r = await call(svc.url, method, path, { headers: scoped, ...(json ? { json } : {}) });
      expectProblem(r, 403, "forbidden");
      expect(r.text).not.toContain(a.lease);
      expectProblem(await call(svc.url, method, path, json ? { json } : {}), 401, "unauthorized");
    }
    expect((await get(`/locks/${name}/state`)).json.value).toBe("mine");
  });

  describe("lock-delay", () => {
    /** A lock-delay 409: no holder, reason lock-delay, a Retry-After of at least 1. */
    const expectDelayed = (r: Reply) => {
      expectProblem(r, 409, "lock-held");
      expect(r.json.reason).toBe("lock-delay");
      expect(r.json.holder).toBeUndefined();
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    };

    it("after an expiry the lock is granted to nobody for lockDelay; a waiter gets it after that", async () => {
      const name = uniqueName("delay");
      const a = granted(await post(`/locks/${name}`, { ttl: 2, lockDelay: 8 }));
      await untilFree(name);
      const expiredAt = Date.now();
      const refused = await post(`/locks/${name}`);
      expectDelayed(refused);
      expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(8);
      // A ticket keeps its place at the head meanwhile.
      const ticket = await post(`/locks/${name}`, { queue: true });
      expect(ticket.status, ticket.text).toBe(202);
      expect(ticket.json.position).toBe(0);
      // A waiter is served once the delay is over, after the ticket (in join order).
      const waiter = post(`/locks/${name}`, { wait: 20 });
      const turn = await post(`/locks/${name}`, { ticket: ticket.json.ticket, wait: 20 });
      const t = granted(turn);
      // The marker outlived the grant by the delay, counted from its last renewal.
      expect(Date.now() - expiredAt).toBeGreaterThan(3_000);
      expect(t.token).toBeGreaterThan(a.token);
      await call(svc.url, "DELETE", `/locks/${name}?lease=${t.lease}`, { headers: user });
      expect(granted(await waiter).token).toBeGreaterThan(t.token);
    });

    it("a clean release frees the lock at once, and a renew keeps the delay ahead of the grant", async () => {
      const name = uniqueName("delay");
      const a = granted(await post(`/locks/${name}`, { ttl: 3, lockDelay: 30 }));
      expect((await put(`/locks/${name}/renew`, { lease: a.lease })).status).toBe(200);
      expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${a.lease}`, { headers: user })).status).toBe(204);
      const b = granted(await post(`/locks/${name}`));
      await call(svc.url, "DELETE", `/locks/${name}?lease=${b.lease}`, { headers: user });
      const markers = await svc.direct.range(
        new LineKeys(svc.prefix).delayMarker({ kind: "lock", name }),
        `${new LineKeys(svc.prefix).delayMarker({ kind: "lock", name })}\0`,
        0,
      );
      expect(markers.kvs).toEqual([]);
    });

    it("a force release keeps the lock back for lockDelay from then", async () => {
      const name = uniqueName("delay");
      const a = granted(await post(`/locks/${name}`, { ttl: 60, lockDelay: 5 }));
      const forced = await call(svc.url, "DELETE", `/locks/${name}?force=true`, { headers: admin });
      expect(forced.status, forced.text).toBe(204);
      const refused = await post(`/locks/${name}`);
      expectDelayed(refused);
      // The delay counts from the force, not from the grant's TTL (60 s).
      expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(5);
      expectProblem(await put(`/locks/${name}/renew`, { lease: a.lease }), 410, "lock-lost");
      const b = granted(await post(`/locks/${name}`, { wait: 20 }));
      expect(b.token).toBeGreaterThan(a.token);
    });

    it("bad lockDelay: fractional, negative or over 60 is 400; semaphores have none; nothing is taken", async () => {
      const name = uniqueName("delay");
      for (const lockDelay of [1.5, -1, 61, "x"]) {
        const r = await post(`/locks/${name}`, { lockDelay });
        expectProblem(r, 400, "invalid-request");
        expect(r.json.detail).toMatch(/lockDelay/);
      }
      expectProblem(await post(`/semaphores/${name}`, { limit: 2, lockDelay: 5 }), 400, "invalid-request");
      expect(await lineKeys(svc, "lock", name)).toEqual([]);
      expect(await lineKeys(svc, "semaphore", name)).toEqual([]);
    });

    it("an Idempotency-Key reused with another lockDelay is 422; a ticket redeemed with another is 400", async () => {
      const name = uniqueName("delay");
      const key = { ...user, "idempotency-key": uniqueName("idem") };
      const a = await call(svc.url, "POST", `/locks/${name}`, { json: { lockDelay: 5 }, headers: key });
      expect(a.status, a.text).toBe(201);
      const other = await call(svc.url, "POST", `/locks/${name}`, { json: { lockDelay: 6 }, headers: key });
      expectProblem(other, 422, "idempotency-key-mismatch");
      const same = await call(svc.url, "POST", `/locks/${name}`, { json: { lockDelay: 5 }, headers: key });
      expect(same.status, same.text).toBe(200);
      const ticket = await post(`/locks/${name}`, { queue: true, lockDelay: 5 });
      expect(ticket.status, ticket.text).toBe(202);
      const mismatch = await post(`/locks/${name}`, { ticket: ticket.json.ticket, lockDelay: 9 });
      expectProblem(mismatch, 400, "invalid-request");
      expect(mismatch.json.detail).toMatch(/lockDelay differs/);
    });
  });
});
