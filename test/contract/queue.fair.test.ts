import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type Reply, stillAfter, uniqueName } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { expectProblem, inLine, waitersOf } from "./lines.js";
import { targets } from "./targets.js";

describe.each(targets)("fair queue ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  /**
   * Starts waiting acquires one by one, each once the one before is in line (GET counts
   * it), so the order they joined is known; resolves with their pending answers.
   */
  async function joinInOrder(path: string, owners: string[], json: Record<string, unknown>, alreadyInLine = 0) {
    const replies: Promise<Reply>[] = [];
    for (const [i, owner] of owners.entries()) {
      replies.push(call(svc.url, "POST", path, { json: { ...json, wait: 20, owner } }));
      await inLine(svc, path, alreadyInLine + i + 1);
    }
    return replies;
  }
  const OWNERS = ["w0", "w1", "w2", "w3", "w4"];

  it("waiters are granted in the order they joined, one per release", async () => {
    const name = uniqueName("fair");
    const path = `/locks/${name}`;
    const holder = await call(svc.url, "POST", path, { json: { ttl: 30 } });
    const waiters = await joinInOrder(path, OWNERS, { ttl: 30 });
    const order: string[] = [];
    let lease = holder.json.lease;
    let token = holder.json.token;
    for (let i = 0; i < 5; i++) {
      expect((await call(svc.url, "DELETE", `${path}?lease=${lease}`)).status).toBe(204);
      // Whoever is granted next answers; the rest keep waiting.
      const next = await Promise.race(waiters.filter((_w, j) => !order.includes(OWNERS[j] ?? "")));
      expect(next.status, next.text).toBe(201);
      expect(next.json.token).toBeGreaterThan(token);
      order.push(next.json.owner);
      ({ lease, token } = next.json);
      expect(await waitersOf(svc, path)).toBe(4 - i);
    }
    expect(order).toEqual(OWNERS);
  });

  it("a semaphore serves its line in order as permits free up", async () => {
    const name = uniqueName("fair");
    const path = `/semaphores/${name}`;
    const a = await call(svc.url, "POST", path, { json: { limit: 2, ttl: 30 } });
    const b = await call(svc.url, "POST", path, { json: { limit: 2, ttl: 30 } });
    const waiters = await joinInOrder(path, OWNERS.slice(0, 3), { limit: 2, ttl: 30 });
    expect((await call(svc.url, "DELETE", `${path}?lease=${b.json.lease}`)).status).toBe(204);
    const first = await Promise.race(waiters);
    expect(first.json.owner).toBe("w0");
    expect((await call(svc.url, "DELETE", `${path}?lease=${a.json.lease}`)).status).toBe(204);
    const second = await Promise.race(waiters.slice(1));
    expect(second.json.owner).toBe("w1");
    expect((await call(svc.url, "DELETE", `${path}?lease=${first.json.lease}`)).status).toBe(204);
    const third = await waiters[2];
    expect(third?.json.owner).toBe("w2");
    const info = await call(svc.url, "GET", path);
    expect(info.json.holders.map((h: { owner: string }) => h.owner)).toEqual(["w1", "w2"]);
  });

  it("waiters and tickets share one line: a ticket at the head is not passed over", async () => {
    const name = uniqueName("fair");
    const path = `/locks/${name}`;
    const holder = await call(svc.url, "POST", path, { json: { ttl: 30 } });
    const [w0] = await joinInOrder(path, ["w0"], {});
    const ticket = await call(svc.url, "POST", path, { json: { queue: true, owner: "t1" } });
    expect(ticket.status).toBe(202);
    expect(ticket.json.position).toBe(1);
    const [w2] = await joinInOrder(path, ["w2"], {}, 2);
    await call(svc.url, "DELETE", `${path}?lease=${holder.json.lease}`);
    const first = await w0;
    expect(first?.json.owner).toBe("w0");
    let w2Answered = false;
    void w2?.then(() => {
      w2Answered = true;
    });
    await call(svc.url, "DELETE", `${path}?lease=${first?.json.lease}`);
    // The ticket's turn: neither the waiter behind it nor a newcomer may take the lock.
    expectProblem(await call(svc.url, "POST", path), 409, "lock-held");
    expect(await stillAfter(500, () => w2Answered)).toBe(false);
    const granted = await call(svc.url, "POST", path, { json: { ticket: ticket.json.ticket } });
    expect(granted.status, granted.text).toBe(201);
    expect(granted.json.owner).toBe("t1");
    await call(svc.url, "DELETE", `${path}?lease=${granted.json.lease}`);
    // Then the waiter behind the ticket.
    const last = await w2;
    expect(last?.status, last?.text).toBe(201);
    expect(last?.json.owner).toBe("w2");
  });

  it("a waiter that gives up leaves the line at once and never wedges it", async () => {
    const name = uniqueName("fair");
    const path = `/locks/${name}`;
    const holder = await call(svc.url, "POST", path, { json: { ttl: 30 } });
    const quitter = call(svc.url, "POST", path, { json: { wait: 1, owner: "quitter" } });
    await inLine(svc, path, 1);
    const patient = call(svc.url, "POST", path, { json: { wait: 20, owner: "patient" } });
    await inLine(svc, path, 2);
    const gaveUp = await quitter;
    expectProblem(gaveUp, 409, "lock-held");
    expect(gaveUp.json.position).toBe(0);
    await inLine(svc, path, 1);
    await call(svc.url, "DELETE", `${path}?lease=${holder.json.lease}`);
    const r = await patient;
    expect(r.status, r.text).toBe(201);
    expect(r.json.owner).toBe("patient");
  });
});
