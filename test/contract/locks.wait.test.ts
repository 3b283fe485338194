import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, stillAfter, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { targets } from "./targets.js";

/** Resolves once `n` acquires wait on the service. */
const waiting = (svc: TestService, n: number) =>
  until(async () => (await svc.waiters()) === n, `${n} acquire(s) to wait`);

/** A raw waiting acquire (20 s) the test can hang up on; resolves once it is waiting. */
async function startWaiter(svc: TestService, name: string) {
  const req = request(new URL(`/locks/${name}`, svc.url), {
    method: "POST",
    headers: { "content-type": "application/json" },
  });
  req.on("error", () => {});
  req.end(JSON.stringify({ wait: 20, owner: "ghost" }));
  await waiting(svc, 1);
  return req;
}

describe.each(targets)("waiting acquires ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("a waiter wakes within a few hundred ms of a release", async () => {
    const name = uniqueName("wait");
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 } });
    const waiter = call(svc.url, "POST", `/locks/${name}`, { json: { wait: 10, owner: "waiter" } });
    await waiting(svc, 1);
    const releasedAt = Date.now();
    expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`)).status).toBe(204);
    const r = await waiter;
    const wokeAfter = Date.now() - releasedAt;
    expect(r.status).toBe(201);
    expect(r.json.owner).toBe("waiter");
    expect(r.json.token).toBeGreaterThan(g.json.token);
    expect(wokeAfter).toBeLessThan(500);
  });

  it("a waiter also wakes when the holder's TTL expires", async () => {
    const name = uniqueName("wait");
    await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 2 } });
    const started = Date.now();
    const r = await call(svc.url, "POST", `/locks/${name}`, { json: { wait: 8 } });
    expect(r.status).toBe(201);
    expect(Date.now() - started).toBeLessThan(4_500);
  });

  it("a waiter times out with 409 at `wait`", async () => {
    const name = uniqueName("wait");
    await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30, owner: "holder" } });
    const started = Date.now();
    const r = await call(svc.url, "POST", `/locks/${name}`, { json: { wait: 1.5 } });
    const took = Date.now() - started;
    expect(r.status).toBe(409);
    expect(r.json.code).toBe("lock-held");
    expect(r.json.holder.owner).toBe("holder");
    expect(took).toBeGreaterThanOrEqual(1_450);
    expect(took).toBeLessThan(2_500);
  });

  it("many waiters: exactly one wins each release", async () => {
    const name = uniqueName("herd");
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 } });
    const waiters = Array.from({ length: 8 }, () => call(svc.url, "POST", `/locks/${name}`, { json: { wait: 3 } }));
    await waiting(svc, 8);
    await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    const replies = await Promise.all(waiters);
    expect(replies.map((r) => r.status).sort(), replies.map((r) => r.text).join("\n")).toEqual([
      201, 409, 409, 409, 409, 409, 409, 409,
    ]);
  });

  it.runIf(target.detectsDisconnect)("a waiter that hangs up stops waiting and leaves no lock behind", async () => {
    const name = uniqueName("gone");
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 } });
    const req = await startWaiter(svc, name);
    req.destroy();
    await waiting(svc, 0);
    // Released after the waiter left: nobody may end up holding it.
    expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`)).status).toBe(204);
    expect((await stillAfter(800, () => call(svc.url, "GET", `/locks/${name}`))).status).toBe(404);
    if (svc.activeWaiters) expect(svc.activeWaiters()).toBe(0);
  });

  it.runIf(target.detectsDisconnect)("a grant that lands after the caller hung up is revoked", async () => {
    const name = uniqueName("late");
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 } });
    const req = await startWaiter(svc, name);
    // Release and hang up at the same moment: the wake-up and the disconnect race.
    const release = call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    req.destroy();
    expect((await release).status).toBe(204);
    // Once the waiter has left (with or without the grant), no grant can land any more.
    await waiting(svc, 0);
    const inspect = () => call(svc.url, "GET", `/locks/${name}`);
    await until(async () => (await inspect()).status === 404, "the late grant to be revoked");
    expect((await inspect()).status).toBe(404);
  });
});
