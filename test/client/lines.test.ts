import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Grant, type Ticket, withPermit } from "../../src/client/index.js";
import { sleep, stillAfter, uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { failure } from "./failure.js";
import { startProxy } from "./proxy.js";

let svc: TestService;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  svc = await startTestService();
});
afterAll(async () => {
  process.off("unhandledRejection", onUnhandled);
  await svc?.stop();
});

function isTicket(r: Grant | Ticket): r is Ticket {
  return "ticket" in r;
}

/** How many wait in line for the lock `name` (0 when free or nobody waits). */
async function waitersOf(name: string): Promise<number> {
  return (await createClient({ url: svc.url }).inspect(name))?.waiters ?? 0;
}

describe.concurrent("semaphores (client)", () => {
  it("acquire, inspect, list, renew, release; a full semaphore is lock-held, another limit limit-mismatch", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("sem");
    const pool = client.semaphore(name, 2);
    const a = await pool.acquire({ ttl: 10, owner: "a" });
    const b = await pool.acquire({ ttl: 10, owner: "b" });
    expect(a).toMatchObject({ name, limit: 2, owner: "a" });
    expect(b.token).toBeGreaterThan(a.token);
    expect(b.lease).not.toBe(a.lease);

    const full = await failure(pool.acquire({ owner: "c" }));
    expect(full).toMatchObject({ code: "lock-held", status: 409 });
    expect(full.problem?.holder).toBeUndefined();
    expect(full.retryAfter).toBeGreaterThanOrEqual(1);
    const mismatch = await failure(client.semaphore(name, 3).acquire());
    expect(mismatch).toMatchObject({ code: "limit-mismatch", status: 409 });
    expect(mismatch.problem?.limit).toBe(2);

    const info = await pool.inspect();
    expect(info).toMatchObject({ name, limit: 2 });
    expect(info?.holders.map((h) => [h.token, h.owner])).toEqual([
      [a.token, "a"],
      [b.token, "b"],
    ]);
    expect(JSON.stringify(info)).not.toContain(a.lease);
    const page = await client.listSemaphores({ prefix: name });
    expect(page.items.map((i) => [i.name, i.holders.length])).toEqual([[name, 2]]);
    // A lock of the same name is another thing altogether.
    expect(await client.inspect(name)).toBeUndefined();

    expect(await pool.renew(a.lease)).toMatchObject({ token: a.token, limit: 2 });
    await pool.release(a.lease);
    expect((await failure(pool.renew(a.lease))).code).toBe("lock-lost");
    // Renew, release and inspect don't need the limit.
    const c = await pool.acquire({ ttl: 10 });
    expect(c.token).toBeGreaterThan(b.token);
    await client.semaphore(name).release(b.lease);
    await client.semaphore(name).release(c.lease);
    expect(await client.semaphore(name).inspect()).toBeUndefined();
  });

  it("withPermit: never more than limit at once, each permit its own token, all released", async () => {
    const name = uniqueName("pool");
    let running = 0;
    let most = 0;
    const tokens = await Promise.all(
      Array.from({ length: 5 }, () =>
        withPermit(
          name,
          2,
          async (permit) => {
            running++;
            most = Math.max(most, running);
            expect(permit.grant.limit).toBe(2);
            // Deliberate: each job holds its permit 200 ms, so that the five overlap.
            await sleep(200);
            running--;
            return permit.token;
          },
          { url: svc.url, ttl: 10, queue: true },
        ),
      ),
    );
    expect(most).toBeGreaterThanOrEqual(1);
    expect(most).toBeLessThanOrEqual(2);
    expect(new Set(tokens).size).toBe(5);
    expect(await createClient({ url: svc.url }).semaphore(name).inspect()).toBeUndefined();
  });
});

describe.concurrent("tickets (client)", () => {
  it("a place in line across calls: 202 with positions, 201 at its turn, 200 again, leave, 410 after", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("ticket");
    const holder = await client.acquire(name, { ttl: 20 });

    const first = await client.acquire(name, { queue: true, ticketTtl: 60, ttl: 10 });
    const second = await client.acquire(name, { queue: true, ticketTtl: 60 });
    if (!isTicket(first) || !isTicket(second)) throw new Error("expected places in line");
    expect(first).toMatchObject({ position: 0, ttl: 60 });
    expect(second.position).toBe(1);
    expect(second.ticket).not.toBe(first.ticket);
    expect(await waitersOf(name)).toBe(2);

    expect(await client.redeem(name, first.ticket)).toMatchObject({ position: 0 });
    await client.release(name, holder.lease);
    const won = await client.redeem(name, first.ticket, { wait: 10 });
    if (isTicket(won)) throw new Error("expected the grant");
    expect(won).toMatchObject({ name, ttl: 10 });
    expect(won.token).toBeGreaterThan(holder.token);
    // Redeemed again (a retry after a lost answer): the same grant.
    expect(await client.redeem(name, first.ticket)).toMatchObject({ token: won.token, lease: won.lease });
    expect(await client.redeem(name, second.ticket)).toMatchObject({ position: 0 });

    await client.leave(name, second.ticket);
    const gone = await failure(client.redeem(name, second.ticket));
    expect(gone).toMatchObject({ code: "lock-lost", status: 410 });
    expect(gone.message).not.toContain(second.ticket);
    await client.release(name, won.lease);
  });

  it("a free lock with nobody in line is granted at once, even with queue", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("ticket");
    const got = await client.acquire(name, { queue: true, ttl: 5 });
    expect(isTicket(got)).toBe(false);
    await client.release(name, (got as Grant).lease);
  });

  it("withLock queue waits past several long polls and serves the line in arrival order", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("line");
    const holder = await client.acquire(name, { ttl: 20 });
    const proxy = await startProxy(svc.url);
    try {
      const order: string[] = [];
      const queued = (who: string) =>
        createClient({ url: proxy.url }).withLock(name, () => void order.push(who), {
          queue: true,
          pollWait: 0.3,
          ttl: 5,
        });
      const b = queued("b");
      await until(async () => (await waitersOf(name)) === 1, "b in line");
      const c = queued("c");
      await until(async () => (await waitersOf(name)) === 2, "c in line");
      // Both keep their places over several polls of 0.3 s.
      await until(() => proxy.seen.filter((s) => s.method === "POST").length >= 8, "several polls");
      await client.release(name, holder.lease);
      await Promise.all([b, c]);
      expect(order).toEqual(["b", "c"]);
      const posts = proxy.seen
        .filter((s) => s.method === "POST" && !s.url.endsWith("/release"))
        .map((s) => JSON.parse(s.body));
      for (const body of posts) expect(body.wait).toBeLessThanOrEqual(0.3);
      expect(posts.filter((body) => body.ticket !== undefined).length).toBeGreaterThanOrEqual(6);
      expect(await waitersOf(name)).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  it("withLock queue: aborting leaves the line at once; a bounded wait gives up with lock-held", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("leave");
    const holder = await client.acquire(name, { ttl: 20 });
    const controller = new AbortController();
    const waiting = client.withLock(name, () => "ran", {
      queue: true,
      ticketTtl: 60,
      signal: controller.signal,
      onQueued: () => controller.abort(new Error("not any more")),
    });
    await expect(waiting).rejects.toThrow("not any more");
    // Left by the client (the ticket would otherwise keep its place for 60 s).
    await until(async () => (await waitersOf(name)) === 0, "the ticket to leave the line", 5_000);

    const started = Date.now();
    const bounded = await failure(client.withLock(name, () => "ran", { queue: true, wait: 0.5, pollWait: 0.2 }));
    expect(bounded.code).toBe("lock-held");
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(await waitersOf(name)).toBe(0);
    await client.release(name, holder.lease);
  });

  it("semaphore tickets: a place in line for a permit", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("sem-ticket");
    const pool = client.semaphore(name, 1);
    const holder = await pool.acquire({ ttl: 20 });
    const place = await pool.acquire({ queue: true });
    if (!isTicket(place)) throw new Error("expected a place in line");
    expect(place.position).toBe(0);
    expect((await pool.inspect())?.waiters).toBe(1);
    await pool.release(holder.lease);
    const permit = await pool.redeem(place.ticket, { wait: 10 });
    if (isTicket(permit)) throw new Error("expected the permit");
    expect(permit).toMatchObject({ name, limit: 1 });
    await pool.release(permit.lease);
  });
});

describe("lines afterwards", () => {
  it("nothing surfaced as an unhandled rejection", async () => {
    expect(await stillAfter(100, () => unhandled)).toEqual([]);
  });
});
