import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, uniqueName } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, KINDS, lineKeys, waitersOf } from "./lines.js";
import { targets } from "./targets.js";

const STRANGER = "0123456789abcdef0123456789abcdef";

describe.each(targets)("ticket errors ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start({ LEASEHOLD_MAX_TICKET_TTL: "120" });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  describe.each(KINDS)("on a $kind", ({ kind, base, fields }) => {
    const post = (name: string, json: Record<string, unknown> = {}) =>
      call(svc.url, "POST", `${base}/${name}`, { json: { ...fields, ...json } });

    const bad: [label: string, json: Record<string, unknown>, detail: RegExp][] = [
      [
        "ticketTtl with a ticket",
        { ticket: STRANGER, ticketTtl: 5 },
        /^ticketTtl is set when a place in line is taken/,
      ],
      ["ticketTtl without queue", { ticketTtl: 5 }, /^ticketTtl goes with queue: true/],
      ["ticketTtl over the max", { queue: true, ticketTtl: 121 }, /^ticketTtl must be at most 120 seconds, got 121$/],
      ["ticketTtl 0", { queue: true, ticketTtl: 0 }, /^ticketTtl must be at least 1 second, got 0$/],
      ["ticketTtl 2.5", { queue: true, ticketTtl: 2.5 }, /^ticketTtl must be a whole number of seconds, got 2\.5$/],
      ['queue "yes"', { queue: "yes" }, /^queue must be true or false, got "yes"$/],
      ["queue 1", { queue: 1 }, /^queue must be true or false, got 1$/],
      ["a short ticket", { ticket: "abc123" }, /^ticket must be 16 to 64 hex digits.*got a string of 6 characters$/],
      ["a ticket that is a number", { ticket: 12345 }, /^ticket must be 16 to 64 hex digits.*got a number$/],
    ];
    it.each(bad)("%s → 400, nothing changed", async (_label, json, detail) => {
      const name = uniqueName("tbad");
      const r = await post(name, json);
      expectProblem(r, 400, "invalid-request");
      expect(r.json.detail).toMatch(detail);
      expect(r.text).not.toContain("abc123");
      expect(await lineKeys(svc, kind, name)).toEqual([]);
    });

    it("a ticket nobody was given is lock-lost (410) to redeem or leave, never echoed", async () => {
      const name = uniqueName("tbad");
      await post(name);
      for (const r of [
        await post(name, { ticket: STRANGER }),
        await call(svc.url, "DELETE", `${base}/${name}?ticket=${STRANGER}`),
      ]) {
        expectProblem(r, 410, "lock-lost");
        expect(r.json.detail).toMatch(/ticket/);
        expect(r.text).not.toContain(STRANGER);
      }
    });

    it("a ticket is for its own line only", async () => {
      const name = uniqueName("tbad");
      const other = uniqueName("tbad");
      await post(name);
      await post(other);
      const t = (await post(name, { queue: true })).json;
      expectProblem(await post(other, { ticket: t.ticket }), 410, "lock-lost");
      expectProblem(await call(svc.url, "DELETE", `${base}/${other}?ticket=${t.ticket}`), 410, "lock-lost");
      // Still in its own line.
      expect(await waitersOf(svc, `${base}/${name}`)).toBe(1);
      expect(await waitersOf(svc, `${base}/${other}`)).toBe(0);
    });

    it("a redeem with another ttl or owner than the ticket's is 400, and the place is kept", async () => {
      const name = uniqueName("tbad");
      await post(name, { ttl: 30 });
      const t = (await post(name, { queue: true, ttl: 20, owner: "a" })).json;
      for (const json of [{ ttl: 21 }, { owner: "b" }]) {
        const r = await post(name, { ticket: t.ticket, ...json });
        expectProblem(r, 400, "invalid-request");
        expect(r.text).not.toContain(t.ticket);
      }
      expect(await waitersOf(svc, `${base}/${name}`)).toBe(1);
      const same = await post(name, { ticket: t.ticket, ttl: 20, owner: "a" });
      expect(same.status, same.text).toBe(202);
    });

    it("DELETE: a ticket with a lease is 400; a ticket in the query of POST is an unknown parameter", async () => {
      const name = uniqueName("tbad");
      const g = await post(name);
      const t = (await post(name, { queue: true })).json;
      const both = await call(svc.url, "DELETE", `${base}/${name}?ticket=${t.ticket}&lease=${g.json.lease}`);
      expectProblem(both, 400, "invalid-request");
      expect(both.json.detail).toMatch(/either lease .* or ticket/);
      const differ = await call(svc.url, "DELETE", `${base}/${name}?ticket=${t.ticket}`, {
        json: { ticket: STRANGER },
      });
      expectProblem(differ, 400, "invalid-request");
      const inQuery = await call(svc.url, "POST", `${base}/${name}?ticket=${t.ticket}`, { json: fields });
      expectProblem(inQuery, 400, "invalid-request");
      expect(inQuery.json.detail).toMatch(/unknown query parameter "ticket".*in the request body instead/);
      for (const r of [both, differ, inQuery]) {
        expect(r.text).not.toContain(t.ticket);
        expect(r.text).not.toContain(g.json.lease);
      }
      // Nothing changed: still held, still one in line.
      expect(await waitersOf(svc, `${base}/${name}`)).toBe(1);
    });
  });

  it("a semaphore ticket redeemed with another limit is 400, and the place is kept", async () => {
    const name = uniqueName("tbad");
    const path = `/semaphores/${name}`;
    await call(svc.url, "POST", path, { json: { limit: 1 } });
    const t = (await call(svc.url, "POST", path, { json: { limit: 1, queue: true } })).json;
    const r = await call(svc.url, "POST", path, { json: { limit: 2, ticket: t.ticket } });
    expectProblem(r, 400, "invalid-request");
    expect(await waitersOf(svc, path)).toBe(1);
    // Without a limit, the ticket's own is used.
    expect((await call(svc.url, "POST", path, { json: { ticket: t.ticket } })).status).toBe(202);
  });
});
