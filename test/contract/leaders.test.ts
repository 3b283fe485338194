import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openWatches, untilWatches } from "../support/etcd.js";
import { call, type Reply, stillAfter, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, lineKeys } from "./lines.js";
import { targets } from "./targets.js";

/** Whether a request is still unanswered after `ms` (for a blocking read that must wait). */
const pendingAfter = (p: Promise<unknown>, ms: number) => {
  let settled = false;
  void p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  return stillAfter(ms, () => !settled);
};

/** The index an inspect answer carries, checked to be the same in the body and the header. */
function indexOf(r: Reply): number {
  const header = r.headers.get("leasehold-index");
  expect(header, r.text).toMatch(/^\d+$/);
  expect(r.json.index).toBe(Number(header));
  return r.json.index;
}

describe.each(targets)("published values and blocking reads ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start({ LEASEHOLD_MAX_WAIT: "20" });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  describe("published value", () => {
    it("is published with the acquire, shown by GET, replaced by renew and kept by a plain renew", async () => {
      const name = uniqueName("leader");
      const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 10, value: "10.0.0.7:8080" } });
      expect(g.status, g.text).toBe(201);
      expect(g.json.value).toBe("10.0.0.7:8080");
      expect((await call(svc.url, "GET", `/locks/${name}`)).json).toMatchObject({
        token: g.json.token,
        value: "10.0.0.7:8080",
      });
      const proclaimed = await call(svc.url, "PUT", `/locks/${name}/renew`, {
        json: { lease: g.json.lease, value: "10.0.0.8:8080" },
      });
      expect(proclaimed.status, proclaimed.text).toBe(200);
      expect(proclaimed.json).toMatchObject({ token: g.json.token, value: "10.0.0.8:8080" });
      expect((await call(svc.url, "GET", `/locks/${name}`)).json.value).toBe("10.0.0.8:8080");
      // Form fields too; a renew without value keeps it.
      const plain = await call(svc.url, "PUT", `/locks/${name}/renew`, { form: { lease: g.json.lease } });
      expect(plain.json.value).toBe("10.0.0.8:8080");
      expect((await call(svc.url, "GET", `/locks?prefix=${name}`)).json.items[0].value).toBe("10.0.0.8:8080");
      // The grant's own release still works after its value moved its revision in etcd.
      expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`)).status).toBe(204);
      expect(await lineKeys(svc, "lock", name)).toEqual([]);
    });

    it("is at most 4,096 UTF-8 bytes: more is a 400 that changes nothing", async () => {
      const name = uniqueName("leader");
      const big = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "é".repeat(2049) } });
      expectProblem(big, 400, "invalid-request");
      expect(big.json.detail).toMatch(/value must be at most 4096 UTF-8 bytes/);
      expect(await lineKeys(svc, "lock", name)).toEqual([]);
      const g = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "é".repeat(2048) } });
      expect(g.status, g.text).toBe(201);
      const renew = await call(svc.url, "PUT", `/locks/${name}/renew`, {
        json: { lease: g.json.lease, value: "x".repeat(4097) },
      });
      expectProblem(renew, 400, "invalid-request");
      expect((await call(svc.url, "GET", `/locks/${name}`)).json.value).toBe("é".repeat(2048));
      expectProblem(
        await call(svc.url, "POST", `/locks/${uniqueName()}`, { json: { value: 42 } }),
        400,
        "invalid-request",
      );
    });

    it("a former holder's handle never writes a value: 410, and the new holder's stays", async () => {
      const name = uniqueName("leader");
      const old = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "old" } });
      await call(svc.url, "DELETE", `/locks/${name}?lease=${old.json.lease}`);
      const now = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "new" } });
      const stale = await call(svc.url, "PUT", `/locks/${name}/renew`, {
        json: { lease: old.json.lease, value: "usurper" },
      });
      expectProblem(stale, 410, "lock-lost");
      expect((await call(svc.url, "GET", `/locks/${name}`)).json).toMatchObject({
        token: now.json.token,
        value: "new",
      });
    });

    it("a waiter publishes its value when its turn comes", async () => {
      const name = uniqueName("leader");
      const first = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "a" } });
      const second = call(svc.url, "POST", `/locks/${name}`, { json: { wait: 10, value: "b" } });
      await until(async () => (await call(svc.url, "GET", `/locks/${name}`)).json.waiters === 1, "b in line");
      expect((await call(svc.url, "GET", `/locks/${name}`)).json.value).toBe("a");
      await call(svc.url, "DELETE", `/locks/${name}?lease=${first.json.lease}`);
      const b = await second;
      expect(b.status, b.text).toBe(201);
      expect(b.json.value).toBe("b");
      expect((await call(svc.url, "GET", `/locks/${name}`)).json).toMatchObject({ token: b.json.token, value: "b" });
    });

    it("semaphores: each holder's value in holders[]", async () => {
      const name = uniqueName("pool");
      const a = await call(svc.url, "POST", `/semaphores/${name}`, { json: { limit: 2, value: "a" } });
      const b = await call(svc.url, "POST", `/semaphores/${name}`, { json: { limit: 2 } });
      await call(svc.url, "PUT", `/semaphores/${name}/renew`, { json: { lease: b.json.lease, value: "b2" } });
      const r = await call(svc.url, "GET", `/semaphores/${name}`);
      expect(r.json.holders).toEqual([
        expect.objectContaining({ token: a.json.token, value: "a" }),
        expect.objectContaining({ token: b.json.token, value: "b2" }),
      ]);
      indexOf(r);
    });
  });

  describe("blocking read", () => {
    it("every answer carries its index, in the body and the Leasehold-Index header, 404 included", async () => {
      const name = uniqueName("idx");
      const free = await call(svc.url, "GET", `/locks/${name}`);
      expectProblem(free, 404, "lock-not-found");
      const before = indexOf(free);
      const g = await call(svc.url, "POST", `/locks/${name}`);
      const held = await call(svc.url, "GET", `/locks/${name}`);
      expect(held.status).toBe(200);
      // The grant's revision is the lock's latest change: the answer's index is at least it.
      expect(indexOf(held)).toBeGreaterThanOrEqual(g.json.token);
      expect(g.json.token).toBeGreaterThan(before);
    });

    it("answers as soon as the lock changes after the index: a new value", async () => {
      const name = uniqueName("idx");
      const g = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "v1" } });
      const index = indexOf(await call(svc.url, "GET", `/locks/${name}`));
      const read = call(svc.url, "GET", `/locks/${name}?index=${index}&wait=15`);
      expect(await pendingAfter(read, 300)).toBe(true);
      const changedAt = Date.now();
      await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease, value: "v2" } });
      const r = await read;
      expect(Date.now() - changedAt).toBeLessThan(2_000);
      expect(r.status, r.text).toBe(200);
      expect(r.json.value).toBe("v2");
      expect(indexOf(r)).toBeGreaterThan(index);
    });

    it("answers after wait seconds when nothing changed, with the same state", async () => {
      const name = uniqueName("idx");
      const g = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "steady" } });
      const index = indexOf(await call(svc.url, "GET", `/locks/${name}`));
      const started = Date.now();
      const r = await call(svc.url, "GET", `/locks/${name}?index=${index}&wait=1.5`);
      const took = Date.now() - started;
      expect(r.status, r.text).toBe(200);
      expect(r.json).toMatchObject({ token: g.json.token, value: "steady" });
      expect(indexOf(r)).toBeGreaterThanOrEqual(index);
      expect(took).toBeGreaterThanOrEqual(1_400);
      expect(took).toBeLessThan(4_000);
    });

    it("after a release, a woken read answers 404 lock-not-found with the new, larger index", async () => {
      const name = uniqueName("idx");
      const g = await call(svc.url, "POST", `/locks/${name}`);
      const index = indexOf(await call(svc.url, "GET", `/locks/${name}`));
      const read = call(svc.url, "GET", `/locks/${name}?index=${index}&wait=15`);
      expect(await pendingAfter(read, 300)).toBe(true);
      await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
      const r = await read;
      expectProblem(r, 404, "lock-not-found");
      expect(indexOf(r)).toBeGreaterThan(index);
    });

    it("a read from an older index answers at once; a loop on the last index never spins", async () => {
      const name = uniqueName("idx");
      const first = indexOf(await call(svc.url, "GET", `/locks/${name}`));
      const g = await call(svc.url, "POST", `/locks/${name}`);
      const started = Date.now();
      const caughtUp = await call(svc.url, "GET", `/locks/${name}?index=${first}&wait=10`);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(caughtUp.json.token).toBe(g.json.token);
      const next = call(svc.url, "GET", `/locks/${name}?index=${indexOf(caughtUp)}&wait=10`);
      expect(await pendingAfter(next, 500)).toBe(true);
      await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
      expectProblem(await next, 404, "lock-not-found");
    });

    it("a caller joining the line is a change too", async () => {
      const name = uniqueName("idx");
      await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 10 } });
      const index = indexOf(await call(svc.url, "GET", `/locks/${name}`));
      const read = call(svc.url, "GET", `/locks/${name}?index=${index}&wait=15`);
      const waiter = call(svc.url, "POST", `/locks/${name}`, { json: { wait: 1 } });
      const r = await read;
      expect(r.json.waiters).toBe(1);
      expect((await waiter).status).toBe(409);
    });

    it("semaphores too", async () => {
      const name = uniqueName("pool");
      await call(svc.url, "POST", `/semaphores/${name}`, { json: { limit: 3 } });
      const index = indexOf(await call(svc.url, "GET", `/semaphores/${name}`));
      const read = call(svc.url, "GET", `/semaphores/${name}?index=${index}&wait=15`);
      expect(await pendingAfter(read, 300)).toBe(true);
      await call(svc.url, "POST", `/semaphores/${name}`, { json: { limit: 3, value: "second" } });
      const r = await read;
      expect(r.json.holders).toHaveLength(2);
      expect(indexOf(r)).toBeGreaterThan(index);
    });

    it("refuses a bad index or wait, wait without index, and a wait over LEASEHOLD_MAX_WAIT", async () => {
      const name = uniqueName("idx");
      for (const query of ["index=abc", "index=-1", "index=1&wait=x", "wait=5", "index=1&wait=21", "index=1&index=2"]) {
        expectProblem(await call(svc.url, "GET", `/locks/${name}?${query}`), 400, "invalid-request");
      }
      expectProblem(await call(svc.url, "GET", `/locks/${name}?wait=5`), 400, "invalid-request");
    });

    if (target.name.startsWith("node")) {
      it("many blocked readers of one lock share one etcd watch, and are all answered by one change", async () => {
        const name = uniqueName("idx");
        const g = await call(svc.url, "POST", `/locks/${name}`, { json: { value: "before" } });
        const index = indexOf(await call(svc.url, "GET", `/locks/${name}`));
        // Earlier tests' watches linger a few seconds after their last reader.
        await untilWatches(svc.etcd.endpoint, 0, "earlier tests' watches to close");
        const reads = Array.from({ length: 50 }, () => call(svc.url, "GET", `/locks/${name}?index=${index}&wait=15`));
        await untilWatches(svc.etcd.endpoint, 1, "the shared watch");
        const gauge = async () =>
          /^leasehold_blocked_reads (\d+)$/m.exec((await call(svc.url, "GET", "/metrics")).text)?.[1];
        await until(async () => (await gauge()) === "50", "50 blocked reads on the gauge");
        expect(await stillAfter(300, () => openWatches(svc.etcd.endpoint))).toBe(1);
        await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease, value: "after" } });
        const answers = await Promise.all(reads);
        expect(new Set(answers.map((r) => `${r.status} ${r.json.value} ${r.json.index}`))).toEqual(
          new Set([`200 after ${answers[0]?.json.index}`]),
        );
        expect(await gauge()).toBe("0");
      });
    }
  });
});
