import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, LeaseholdError } from "../../src/client/index.js";
import { uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { failure } from "./failure.js";
import { acquires, startProxy } from "./proxy.js";
import { revokeInEtcd } from "./revoke.js";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc?.stop();
});

/** Resolves with the signal's reason once it fires. */
const aborted = (signal: AbortSignal) =>
  new Promise<unknown>((r) => signal.addEventListener("abort", () => r(signal.reason), { once: true }));

/** The client's fencing calls (fence check, guarded state, lock-delay) against the real service. */
describe.concurrent("client fences", () => {
  it("fence: true for the holder's token, false once its grant ended and for another's", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("fence");
    const a = await client.acquire(name, { ttl: 30 });
    expect(await client.fence(name, a.token)).toBe(true);
    await client.release(name, a.lease);
    expect(await client.fence(name, a.token)).toBe(false);
    const b = await client.acquire(name, { ttl: 30 });
    expect(await client.fence(name, a.token)).toBe(false);
    expect(await client.fence(name, b.token)).toBe(true);
    expect(await client.fence(name, b.token + 1)).toBe(false);
    // Not being able to ask is a failure, never an answer.
    expect(await failure(client.fence(name, 1.5))).toMatchObject({ code: "invalid-request", status: 400 });
    const down = createClient({ url: "http://127.0.0.1:9" });
    expect((await failure(down.fence(name, b.token))).code).toBe("network-error");
    await client.release(name, b.lease);
  });

  it("fence: a 200 that does not say the token is current is an invalid response, not a pass", async () => {
    const proxy = await startProxy(svc.url);
    try {
      proxy.plan = (r) => (r.url.includes("/fence") ? { status: 200, body: { name: "x", token: 7 } } : "forward");
      const err = await failure(createClient({ url: proxy.url }).fence("x", 7));
      expect(err.code).toBe("invalid-response");
    } finally {
      await proxy.stop();
    }
  });

  it("guarded state: written by the holder, read by anyone, kept after the grant; a stale lease is refused", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("state");
    expect(await client.readState(name)).toBeUndefined();
    const a = await client.acquire(name, { ttl: 30 });
    const written = await client.writeState(name, a.lease, "run 1 done");
    expect(written).toEqual({
      value: "run 1 done",
      token: a.token,
      revision: expect.any(Number),
      updatedAt: expect.any(String),
    });
    await client.release(name, a.lease);
    expect(await client.readState(name)).toEqual(written);

    const b = await client.acquire(name, { ttl: 30 });
    const stale = await failure(client.writeState(name, a.lease, "a, late"));
    expect(stale).toMatchObject({ code: "lock-lost", status: 410 });
    expect(stale.message).not.toContain(a.lease);
    expect(await client.readState(name)).toEqual(written);
    const big = await failure(client.writeState(name, b.lease, "x".repeat(65_537)));
    expect(big).toMatchObject({ code: "payload-too-large", status: 413 });
    const next = await client.writeState(name, b.lease, "run 2 done");
    expect(next).toMatchObject({ value: "run 2 done", token: b.token });
    expect(next.revision).toBeGreaterThan(written.revision);
    await client.release(name, b.lease);
  });

  it("a semaphore: any current permit fences and writes its one state; a released one does not", async () => {
    const client = createClient({ url: svc.url });
    const sem = client.semaphore(uniqueName("sem-state"), 2);
    const a = await sem.acquire({ ttl: 30 });
    const b = await sem.acquire({ ttl: 30 });
    expect(await sem.fence(a.token)).toBe(true);
    expect(await sem.fence(b.token)).toBe(true);
    expect(await sem.readState()).toBeUndefined();
    expect((await sem.writeState(a.lease, "from a")).token).toBe(a.token);
    await sem.release(a.lease);
    expect(await sem.fence(a.token)).toBe(false);
    expect((await failure(sem.writeState(a.lease, "a again"))).code).toBe("lock-lost");
    await sem.withPermit(
      async (permit) => {
        expect(await permit.fence()).toBe(true);
        expect((await permit.writeState("from the held permit")).token).toBe(permit.token);
      },
      { ttl: 30 },
    );
    expect(await sem.readState()).toMatchObject({ value: "from the held permit" });
    // A lock of the same name has a state of its own.
    expect(await client.readState(sem.name)).toBeUndefined();
    await sem.release(b.lease);
  });

  it("withLock: the held lock fences, writes and reads its state", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("held-state");
    const result = await client.withLock(
      name,
      async (lock) => {
        expect(await lock.fence()).toBe(true);
        const w = await lock.writeState("checkpoint 1");
        expect(w).toMatchObject({ value: "checkpoint 1", token: lock.token });
        expect(await lock.readState()).toEqual(w);
        expect(lock.signal.aborted).toBe(false);
        return w.revision;
      },
      { ttl: 30 },
    );
    expect((await client.readState(name))?.revision).toBe(result);
  });

  it("withLock: a guarded write refused with 410 fires the signal, and later writes are refused unsent", async () => {
    const proxy = await startProxy(svc.url);
    try {
      const client = createClient({ url: proxy.url });
      const name = uniqueName("held-lost");
      await client.withLock(
        name,
        async (lock) => {
          await revokeInEtcd(svc, name);
          const lost = aborted(lock.signal);
          const refused = await failure(lock.writeState("too late"));
          expect(refused).toMatchObject({ code: "lock-lost", status: 410 });
          expect(await lost).toBe(refused);
          const puts = () => proxy.seen.filter((s) => s.method === "PUT" && s.url.endsWith("/state")).length;
          const sent = puts();
          expect(await failure(lock.writeState("later still"))).toBe(refused);
          expect(puts()).toBe(sent);
          expect(await lock.fence()).toBe(false);
        },
        { ttl: 30 },
      );
      expect(await client.readState(name)).toBeUndefined();
    } finally {
      await proxy.stop();
    }
  });

  it("withLock: a stale fence check counts as losing the lock", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("held-fence");
    const reason = await client.withLock(
      name,
      async (lock) => {
        await revokeInEtcd(svc, name);
        expect(await lock.fence()).toBe(false);
        expect(lock.signal.aborted).toBe(true);
        return lock.signal.reason;
      },
      { ttl: 30 },
    );
    expect(reason).toBeInstanceOf(LeaseholdError);
    expect(reason).toMatchObject({ code: "lock-lost" });
  });

  it("lockDelay: after an unclean end the lock is refused with reason lock-delay; a waiting withLock gets it after", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("delay");
    const a = await client.acquire(name, { ttl: 2, lockDelay: 3 });
    // Ended behind the holder's back (as an expiry would): its marker (ttl + lockDelay) holds the name back.
    await revokeInEtcd(svc, name);
    const refused = await failure(client.acquire(name));
    expect(refused).toMatchObject({ code: "lock-held", status: 409, reason: "lock-delay" });
    expect(refused.problem?.holder).toBeUndefined();
    expect(refused.retryAfter).toBeGreaterThanOrEqual(1);
    const token = await client.withLock(name, async (lock) => lock.token, { wait: 20 });
    expect(token).toBeGreaterThan(a.token);
    // A clean release (withLock's) frees the lock at once.
    const again = await client.acquire(name);
    await client.release(name, again.lease);
  });

  it("lockDelay travels with every acquire, also a withLock waiting in line", async () => {
    const proxy = await startProxy(svc.url);
    try {
      const client = createClient({ url: proxy.url });
      const name = uniqueName("delay-queue");
      await client.withLock(name, async () => {}, { queue: true, lockDelay: 5 });
      await client.withLock(name, async () => {}, { lockDelay: 7 });
      const bodies = acquires(proxy).map((s) => JSON.parse(s.body));
      expect(bodies.map((b) => b.lockDelay)).toEqual([5, 7]);
      // A semaphore has no lock-delay: the service says so.
      const err = await failure(client.semaphore(name, 2).acquire({ lockDelay: 5 }));
      expect(err.code).toBe("invalid-request");
    } finally {
      await proxy.stop();
    }
  });
});
