import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type Reply, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, KINDS, lineKeys } from "./lines.js";
import { targets } from "./targets.js";

// `POST {base}/{name}/release` is `DELETE {base}/{name}` for HTTP clients that handle a
// DELETE with a body badly (Node's fetch closes the connection after one): the same
// inputs in the body, the same answers, auth, scopes and check order.
const A_KEY = "release-route-key-a-3c9d";
const B_KEY = "release-route-key-b-81fe";
const keys = [
  { key: A_KEY, prefixes: ["a:"] },
  { key: B_KEY, prefixes: ["b:"] },
];
const as = (key: string) => ({ authorization: `Bearer ${key}` });

describe.each(targets)("POST …/release ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start({ LEASEHOLD_API_KEYS: JSON.stringify(keys) });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  describe.each(KINDS)("on a $kind", ({ kind, base, fields }) => {
    const take = async (name: string, key = A_KEY, json: Record<string, unknown> = {}): Promise<Reply> =>
      call(svc.url, "POST", `${base}/${name}`, { headers: as(key), json: { ...fields, ttl: 30, ...json } });
    const release = (
      name: string,
      body: Record<string, unknown> | undefined,
      headers: Record<string, string> = as(A_KEY),
    ) => call(svc.url, "POST", `${base}/${name}/release`, { headers, ...(body ? { json: body } : {}) });

    /** The secrets never reach an answer, whatever it is. */
    const expectNoSecret = (r: Reply, ...secrets: string[]) => {
      for (const s of secrets) expect(r.text).not.toContain(s);
    };

    it("{lease} releases (204, no body; the line's keys are gone); again is 410 lock-lost", async () => {
      const name = `a:${uniqueName("rel")}`;
      const { lease } = (await take(name)).json;
      const r = await release(name, { lease });
      expect(r.status, r.text).toBe(204);
      expect(r.text).toBe("");
      expect(await lineKeys(svc, kind, name)).toEqual([]);
      const again = await release(name, { lease });
      expectProblem(again, 410, "lock-lost");
      expectNoSecret(again, lease);
      // A later holder is not touched by the old handle.
      const next = (await take(name)).json;
      expectProblem(await release(name, { lease }), 410, "lock-lost");
      expect((await call(svc.url, "GET", `${base}/${name}`, { headers: as(A_KEY) })).status).toBe(200);
      expect((await release(name, { lease: next.lease })).status).toBe(204);
    });

    it("a form's lease works as JSON's (what curl -d sends)", async () => {
      const name = `a:${uniqueName("rel")}`;
      const { lease } = (await take(name)).json;
      const r = await call(svc.url, "POST", `${base}/${name}/release`, { headers: as(A_KEY), form: { lease } });
      expect(r.status, r.text).toBe(204);
    });

    it("{ticket} leaves the line (204); again is 410 lock-lost", async () => {
      const name = `a:${uniqueName("rel")}`;
      const holder = (await take(name)).json;
      const place = await take(name, A_KEY, { queue: true });
      expect(place.status, place.text).toBe(202);
      const { ticket } = place.json;
      const left = await release(name, { ticket });
      expect(left.status, left.text).toBe(204);
      await until(async () => {
        const info = await call(svc.url, "GET", `${base}/${name}`, { headers: as(A_KEY) });
        return (info.json.waiters ?? 0) === 0;
      }, "the line to be empty");
      const again = await release(name, { ticket });
      expectProblem(again, 410, "lock-lost");
      expectNoSecret(again, ticket);
      expect((await release(name, { lease: holder.lease })).status).toBe(204);
    });

    it("400 for an unknown field, no handle, or both handles; nothing changed, no secret echoed", async () => {
      const name = `a:${uniqueName("rel")}`;
      const { lease } = (await take(name)).json;
      const unknown = await release(name, { lease, leese: lease });
      expectProblem(unknown, 400, "invalid-request");
      expect(unknown.json.detail).toMatch(/leese/);
      expectNoSecret(unknown, lease);
      expectProblem(await release(name, undefined), 400, "invalid-request");
      const both = await release(name, { lease, ticket: lease });
      expectProblem(both, 400, "invalid-request");
      expectNoSecret(both, lease);
      expect((await release(name, { lease })).status).toBe(204);
    });

    it("403 on another key's names, before the body is read; the holder keeps it", async () => {
      const name = `b:${uniqueName("rel")}`;
      const held = (await take(name, B_KEY)).json;
      const r = await release(name, { lease: held.lease });
      expectProblem(r, 403, "forbidden");
      expect(r.json.detail).toContain(`${kind} ${name}`);
      expectNoSecret(r, held.lease);
      expectProblem(await release(name, { nonsense: true }), 403, "forbidden");
      const info = await call(svc.url, "GET", `${base}/${name}`, { headers: as(B_KEY) });
      expect(info.status).toBe(200);
      expect((await release(name, { lease: held.lease }, as(B_KEY))).status).toBe(204);
    });

    it("401 without a key, or with a wrong one; the holder keeps it", async () => {
      const name = `a:${uniqueName("rel")}`;
      const { lease } = (await take(name)).json;
      for (const headers of [{}, as("not-a-key")]) {
        const r = await release(name, { lease }, headers);
        expectProblem(r, 401, "unauthorized");
        expectNoSecret(r, lease);
      }
      expect((await release(name, { lease })).status).toBe(204);
    });

    it("other methods on …/release are 405 naming POST", async () => {
      const r = await call(svc.url, "DELETE", `${base}/a:${uniqueName("rel")}/release`, { headers: as(A_KEY) });
      expectProblem(r, 405, "method-not-allowed");
      expect(r.headers.get("allow")).toBe("POST");
    });
  });
});
