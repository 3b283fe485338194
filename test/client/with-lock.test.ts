import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, holderMarginMs, LeaseholdError, withLock } from "../../src/client/index.js";
import { sleep, stillAfter, uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { acquires, startProxy } from "./proxy.js";
import { revokeInEtcd } from "./revoke.js";

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

/** Resolves with the signal's reason once it fires. */
const aborted = (signal: AbortSignal) =>
  new Promise<unknown>((r) => signal.addEventListener("abort", () => r(signal.reason), { once: true }));

describe.concurrent("withLock", () => {
  it("holds a 2 s lock past 6 s by renewing every ttl/3, then releases it", async () => {
    const name = uniqueName("long");
    const other = createClient({ url: svc.url });
    const expiries = new Set<string>();
    const result = await withLock(
      name,
      async (lock) => {
        expect(lock.grant.ttl).toBe(2);
        const start = Date.now();
        while (Date.now() - start < 6_300) {
          // Deliberate: the scenario holds the lock for 6.3 s, looking every 0.5 s.
          await sleep(500);
          const info = await other.inspect(name);
          expect(info?.token).toBe(lock.token);
          expiries.add(lock.grant.expiresAt);
        }
        // Still ours: someone else is refused, and the signal never fired.
        await expect(other.acquire(name)).rejects.toMatchObject({ code: "lock-held" });
        expect(lock.signal.aborted).toBe(false);
        expect(lock.validUntil).toBeGreaterThan(Date.now());
        return "done";
      },
      { url: svc.url, ttl: 2 },
    );
    expect(result).toBe("done");
    // Renewed about every 0.67 s: expiresAt moved on many times.
    expect(expiries.size).toBeGreaterThanOrEqual(6);
    expect(await other.inspect(name)).toBeUndefined();
  });

  it("a 410 on renew fires the signal with a lock-lost reason", async () => {
    const name = uniqueName("revoked");
    const reason = await withLock(
      name,
      async (lock) => {
        // The lease vanishes behind the holder's back (an operator, or etcd expiring it).
        await revokeInEtcd(svc, name);
        return aborted(lock.signal);
      },
      { url: svc.url, ttl: 3 },
    );
    expect(reason).toBeInstanceOf(LeaseholdError);
    // Caught by a renew's 410 (the deadline would say lock-expired).
    expect(reason).toMatchObject({ code: "lock-lost", status: 410 });
  });

  it("no successful renew before the client's own deadline fires the signal (lock-expired)", async () => {
    const proxy = await startProxy(svc.url);
    try {
      const name = uniqueName("silent");
      // Renewals go unanswered (a network partition): the client must not trust the lock past its deadline.
      let partitioned = false;
      proxy.plan = (r) => (r.method === "PUT" && partitioned ? "blackhole" : "forward");
      const before = Date.now(); // no later than the send time of the acquire (or its confirming renew)
      let started = 0;
      let validUntil = 0;
      let firedAt = 0;
      const reason = await withLock(
        name,
        async (lock) => {
          started = Date.now();
          partitioned = true;
          validUntil = lock.validUntil;
          const r = await aborted(lock.signal);
          firedAt = Date.now();
          return r;
        },
        { url: proxy.url, ttl: 3 },
      );
      expect(reason).toMatchObject({ code: "lock-expired" });
      // The deadline is the send time of the acquire + 3 s − the margin (0.65 s): short of
      // when the lease can expire, and not earlier.
      const valid = 3_000 - holderMarginMs(3);
      expect(validUntil - before).toBeGreaterThanOrEqual(valid);
      expect(validUntil - started).toBeLessThanOrEqual(valid);
      expect(firedAt).toBeGreaterThanOrEqual(validUntil);
      expect(firedAt - validUntil).toBeLessThan(1_000); // the timer's lateness, even on a busy machine
      expect(proxy.seen.filter((s) => s.method === "PUT").length).toBeGreaterThanOrEqual(1);
    } finally {
      await proxy.stop();
    }
  });

  it("retries an acquire whose response was lost with the same Idempotency-Key and runs with that grant", async () => {
    const proxy = await startProxy(svc.url);
    try {
      const name = uniqueName("lost-answer");
      proxy.plan = (r) => (r.method === "POST" && acquires(proxy).length === 0 ? "drop-response" : "forward");
      const got = await withLock(name, async (lock) => ({ token: lock.token, lease: lock.lease }), {
        url: proxy.url,
        ttl: 10,
      });
      const tries = acquires(proxy);
      expect(tries.map((t) => t.answer?.status)).toEqual([201, 200]);
      expect(tries[1]?.headers["idempotency-key"]).toBe(tries[0]?.headers["idempotency-key"]);
      const first = JSON.parse(tries[0]?.answer?.body ?? "{}");
      expect(got).toEqual({ token: first.token, lease: first.lease });
      // Released at the end: the lock is free again.
      expect(proxy.seen.at(-1)).toMatchObject({ method: "POST", url: expect.stringMatching(/\/release$/) });
      expect(proxy.seen.at(-1)?.answer?.status).toBe(204);
    } finally {
      await proxy.stop();
    }
  });

  it("a held lock rejects with lock-held without running fn; with wait it runs once the holder releases", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("queue");
    const holder = await client.acquire(name, { ttl: 10 });
    let ran = false;
    await expect(
      withLock(
        name,
        () => {
          ran = true;
        },
        { url: svc.url },
      ),
    ).rejects.toMatchObject({ code: "lock-held", status: 409 });
    expect(ran).toBe(false);

    setTimeout(() => void client.release(name, holder.lease), 500);
    const started = Date.now();
    const token = await withLock(name, (lock) => lock.token, { url: svc.url, wait: 10, ttl: 5 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect(token).toBeGreaterThan(holder.token);
  });

  it("fn's error propagates and the lock is still released; sync fns work too", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("throws");
    await expect(
      client.withLock(name, async () => {
        throw new Error("job failed");
      }),
    ).rejects.toThrow("job failed");
    expect(await client.inspect(name)).toBeUndefined();
    await expect(client.withLock(name, () => 42)).resolves.toBe(42);
  });

  it("the caller's signal reaches fn through lock.signal; release: false leaves the lock to expire", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("cancel");
    const controller = new AbortController();
    const reason = await client.withLock(
      name,
      (lock) => {
        setTimeout(() => controller.abort(new Error("shutting down")), 100);
        return aborted(lock.signal);
      },
      { signal: controller.signal },
    );
    expect(reason).toEqual(new Error("shutting down"));
    expect(await client.inspect(name)).toBeUndefined();

    const kept = await client.withLock(name, (lock) => lock.token, { ttl: 5, release: false });
    expect((await client.inspect(name))?.token).toBe(kept);
  });

  it("a grant that arrives after a long wait is confirmed by a renew before fn starts", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("late");
    const holder = await client.acquire(name, { ttl: 10 });
    const proxy = await startProxy(svc.url);
    setTimeout(() => void client.release(name, holder.lease), 1_500);
    try {
      // ttl 3: the grant lands 1.5 s after the acquire was sent, past ttl/3.
      const seenAtStart = await withLock(name, () => proxy.seen.map((s) => s.method), {
        url: proxy.url,
        ttl: 3,
        wait: 10,
      });
      expect(seenAtStart).toEqual(["POST", "PUT"]);
    } finally {
      await proxy.stop();
    }
  });
});

describe("withLock afterwards", () => {
  it("nothing surfaced as an unhandled rejection", async () => {
    expect(await stillAfter(100, () => unhandled)).toEqual([]);
  });
});
