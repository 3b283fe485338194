import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, sleep, stillAfter, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, inLine, KINDS, waitersOf } from "./lines.js";
import { targets } from "./targets.js";

const TICKET = /^[0-9a-f]{16,64}$/;

describe.each(targets)("tickets ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  describe.each(KINDS)("on a $kind", ({ base, fields }) => {
    const post = (name: string, json: Record<string, unknown> = {}) =>
      call(svc.url, "POST", `${base}/${name}`, { json: { ...fields, ...json } });
    const release = (name: string, lease: string) => call(svc.url, "DELETE", `${base}/${name}?lease=${lease}`);

    it("queue on a free line is an ordinary grant (201, no ticket)", async () => {
      const r = await post(uniqueName("tq"), { queue: true });
      expect(r.status, r.text).toBe(201);
      expect(r.json.lease).toMatch(TICKET);
      expect("ticket" in r.json).toBe(false);
    });

    it("queue on a held line answers 202 at once with a ticket, its position and its TTL", async () => {
      const name = uniqueName("tq");
      const path = `${base}/${name}`;
      const holder = await post(name, { ttl: 30 });
      const tickets = [];
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        const r = await post(name, { queue: true, ticketTtl: 20 });
        expect(r.status, r.text).toBe(202);
        expect(Date.now() - started).toBeLessThan(2_000);
        expect(r.json).toEqual({ ticket: expect.stringMatching(TICKET), position: i, ttl: expect.any(Number) });
        expect(r.json.ttl).toBeGreaterThanOrEqual(20);
        tickets.push(r.json.ticket);
      }
      expect(new Set(tickets).size).toBe(3);
      // GET and listings count them, and never show a ticket or the lease.
      const info = await call(svc.url, "GET", path);
      expect(info.json.waiters).toBe(3);
      const listed = await call(svc.url, "GET", `${base}?prefix=${name}`);
      expect(listed.json.items).toHaveLength(1);
      expect(listed.json.items[0].waiters).toBe(3);
      for (const secret of [...tickets, holder.json.lease]) {
        expect(info.text).not.toContain(secret);
        expect(listed.text).not.toContain(secret);
      }
    });

    it("a form's queue=true works as JSON's true", async () => {
      const name = uniqueName("tq");
      await post(name);
      const r = await call(svc.url, "POST", `${base}/${name}`, {
        form: { queue: "true", ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, String(v)])) },
      });
      expect(r.status, r.text).toBe(202);
      expect(r.json.position).toBe(0);
    });

    it("redeeming: 202 with the position until the head, then 201; again after that, the same grant (200)", async () => {
      const name = uniqueName("tq");
      const holder = await post(name, { ttl: 30 });
      const a = (await post(name, { queue: true, owner: "a" })).json;
      const b = (await post(name, { queue: true, owner: "b" })).json;
      const waitingB = await post(name, { ticket: b.ticket });
      expect(waitingB.status).toBe(202);
      expect(waitingB.json).toEqual({ ticket: b.ticket, position: 1, ttl: expect.any(Number) });
      // Held: even the head of the line waits.
      expect((await post(name, { ticket: a.ticket })).json.position).toBe(0);
      expect((await release(name, holder.json.lease)).status).toBe(204);
      const grantA = await post(name, { ticket: a.ticket, owner: "a" });
      expect(grantA.status, grantA.text).toBe(201);
      expect(grantA.json).toMatchObject({ name, owner: "a", lease: expect.stringMatching(TICKET) });
      expect(grantA.json.token).toBeGreaterThan(holder.json.token);
      const replay = await post(name, { ticket: a.ticket });
      expect(replay.status).toBe(200);
      expect(replay.json).toMatchObject({ token: grantA.json.token, lease: grantA.json.lease });
      expect((await post(name, { ticket: b.ticket })).json.position).toBe(0);
      expect((await release(name, grantA.json.lease)).status).toBe(204);
      const grantB = await post(name, { ticket: b.ticket });
      expect(grantB.status).toBe(201);
      expect(grantB.json.token).toBeGreaterThan(grantA.json.token);
      expect(grantB.json.owner).toBe("b");
    });

    it("a redeem may wait for its turn", async () => {
      const name = uniqueName("tq");
      const holder = await post(name, { ttl: 30 });
      const t = (await post(name, { queue: true })).json;
      let answered = false;
      const redeem = post(name, { ticket: t.ticket, wait: 8 }).finally(() => {
        answered = true;
      });
      // It waits rather than answering 202 at once.
      expect(await stillAfter(300, () => answered)).toBe(false);
      const releasedAt = Date.now();
      expect((await release(name, holder.json.lease)).status).toBe(204);
      const r = await redeem;
      expect(r.status, r.text).toBe(201);
      expect(Date.now() - releasedAt).toBeLessThan(2_000);
    });

    it("queue with wait: waits first, then keeps a place in line (202 instead of 409)", async () => {
      const name = uniqueName("tq");
      await post(name, { ttl: 30 });
      const started = Date.now();
      const r = await post(name, { queue: true, wait: 0.5 });
      expect(r.status, r.text).toBe(202);
      expect(Date.now() - started).toBeGreaterThanOrEqual(450);
      expect(r.json.position).toBe(0);
      expect(await waitersOf(svc, `${base}/${name}`)).toBe(1);
    });

    it("DELETE ?ticket= leaves the line (204) and the next in line moves up", async () => {
      const name = uniqueName("tq");
      const path = `${base}/${name}`;
      await post(name, { ttl: 30 });
      const a = (await post(name, { queue: true })).json;
      const b = (await post(name, { queue: true })).json;
      const left = await call(svc.url, "DELETE", `${path}?ticket=${a.ticket}`);
      expect(left.status, left.text).toBe(204);
      expect(left.text).toBe("");
      await inLine(svc, path, 1);
      expect((await post(name, { ticket: b.ticket })).json.position).toBe(0);
      // The ticket that left is gone for good.
      expectProblem(await post(name, { ticket: a.ticket }), 410, "lock-lost");
      // The body form works too.
      expect((await call(svc.url, "DELETE", path, { json: { ticket: b.ticket } })).status).toBe(204);
      await inLine(svc, path, 0);
    });

    it("a ticket that became a grant leaves by ending the grant", async () => {
      const name = uniqueName("tq");
      const holder = await post(name, { ttl: 30 });
      const t = (await post(name, { queue: true })).json;
      await release(name, holder.json.lease);
      const g = await post(name, { ticket: t.ticket });
      expect(g.status).toBe(201);
      expect((await call(svc.url, "DELETE", `${base}/${name}?ticket=${t.ticket}`)).status).toBe(204);
      expect((await call(svc.url, "GET", `${base}/${name}`)).status).toBe(404);
      expectProblem(await release(name, g.json.lease), 410, "lock-lost");
    });

    it("a ticket not redeemed within its ticketTtl drops out; one kept alive by redeems stays", async () => {
      const name = uniqueName("tq");
      const path = `${base}/${name}`;
      await post(name, { ttl: 60 });
      const idle = (await post(name, { queue: true, ticketTtl: 2 })).json;
      const kept = (await post(name, { queue: true, ticketTtl: 2 })).json;
      expect(await waitersOf(svc, path)).toBe(2);
      // Redeem `kept` well within its TTL (etcd may have raised it: the 202 says what it is)
      // until the idle one has dropped out.
      const deadline = Date.now() + (idle.ttl + 10) * 1000;
      let last = kept;
      while ((await waitersOf(svc, path)) !== 1) {
        if (Date.now() > deadline) throw new Error(`the idle ticket did not drop out within ${idle.ttl + 10} s`);
        const r = await post(name, { ticket: kept.ticket });
        expect(r.status, r.text).toBe(202);
        last = r.json;
        // Deliberate: redeems paced at a fifth of the TTL, as a client keeping its place would.
        await sleep((kept.ttl * 1000) / 5);
      }
      expect((await post(name, { ticket: kept.ticket })).json.position).toBe(0);
      expect(last.ticket).toBe(kept.ticket);
      expectProblem(await post(name, { ticket: idle.ticket }), 410, "lock-lost");
      const gone = await call(svc.url, "DELETE", `${path}?ticket=${idle.ticket}`);
      expectProblem(gone, 410, "lock-lost");
      expect(gone.text).not.toContain(idle.ticket);
      // Left alone, the kept one drops out too.
      await until(
        async () => (await waitersOf(svc, path)) === 0,
        "the kept ticket to drop out",
        (kept.ttl + 10) * 1000,
      );
    });
  });

  it("a semaphore's tickets wait for a free permit", async () => {
    const name = uniqueName("tq");
    const path = `/semaphores/${name}`;
    const post = (json: Record<string, unknown>) => call(svc.url, "POST", path, { json: { limit: 2, ...json } });
    const a = await post({ ttl: 30 });
    const b = await post({ ttl: 30 });
    const t = await post({ queue: true });
    expect(t.status).toBe(202);
    expect(t.json.position).toBe(0);
    expect((await call(svc.url, "GET", path)).json).toMatchObject({ limit: 2, waiters: 1 });
    expect((await call(svc.url, "DELETE", `${path}?lease=${a.json.lease}`)).status).toBe(204);
    const g = await post({ ticket: t.json.ticket });
    expect(g.status, g.text).toBe(201);
    expect(g.json.limit).toBe(2);
    expect(g.json.token).toBeGreaterThan(b.json.token);
    const info = await call(svc.url, "GET", path);
    expect(info.json.holders.map((h: { token: number }) => h.token)).toEqual([b.json.token, g.json.token]);
    expect(info.json.waiters).toBe(0);
  });
});
