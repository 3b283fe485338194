import { describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { type EtcdClient, EtcdUnavailableError, type KeyValue, prefixEnd } from "../../src/etcd/types.js";
import { CallerGone, createLines } from "../../src/lock/index.js";
import { decodeParticipant } from "../../src/lock/participant.js";
import type { Acquired, AcquireOptions, LineRef, Lines } from "../../src/lock/types.js";
import { etcdWithClients } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { heldWatches } from "../support/lagging.js";
import { grantOf } from "../support/locks.js";
import { watchingRange } from "../support/watches.js";

/**
 * Local handoff against a real etcd, over both transports: a release on an instance
 * whose next participant is a waiter of that instance makes it the holder in the
 * releasing txn (one etcd revision), fairness across instances is kept, and the races
 * around that txn leave no grant held by nobody and never a holder out of turn.
 */

const PREFIX = "handoff/";

const TRANSPORTS = [
  { transport: "grpc", make: (endpoint: string) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
  { transport: "gateway", make: (endpoint: string) => createGatewayEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
] as const;

/**
 * A client for one engine that the test can steer: it counts the watches opened (a
 * waiter's copy of its line exists once its watch is asked for), holds back the
 * watch events it delivers (so the copy stays as it was), and holds or fails the next
 * guarded write.
 */
function steered(inner: EtcdClient) {
  let watches = 0;
  const held = heldWatches(inner);
  let nextWrite: { gate?: Promise<void>; reached?: () => void; failAfter?: boolean } | undefined;
  const client: EtcdClient = new Proxy(held.client, {
    get(target, prop, receiver) {
      if (prop === "watchRange") {
        return (...args: Parameters<EtcdClient["watchRange"]>) => {
          watches++;
          return target.watchRange(...args);
        };
      }
      if (prop === "guardedWrite") {
        return async (...args: Parameters<EtcdClient["guardedWrite"]>) => {
          const step = nextWrite;
          nextWrite = undefined;
          if (step?.gate) {
            step.reached?.();
            await step.gate;
          }
          const revision = await inner.guardedWrite(...args);
          if (step?.failAfter) throw new EtcdUnavailableError("guarded write applied, answer lost (injected)");
          return revision;
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
  return {
    client,
    get watches() {
      return watches;
    },
    /** The highest revision the instance's watches were told of. */
    get delivered() {
      return held.delivered;
    },
    /** Holds back watch events from now on, until `flush`. */
    hold: held.hold,
    flush: held.flush,
    /** The next guarded write waits, before it is sent, until `release()`. */
    pauseNextWrite() {
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const reached = new Promise<void>((r) => {
        nextWrite = { gate, reached: r };
      });
      return { reached, release };
    },
    /** The next guarded write is applied, and its answer lost. */
    failNextWriteAfter() {
      nextWrite = { failAfter: true };
    },
  };
}

describe.each(TRANSPORTS)("local handoff over $transport (real etcd)", ({ make }) => {
  const shared = etcdWithClients(make);
  let plain: EtcdClient | undefined;
  /** A client of the test's own, straight to etcd. */
  const direct = () => {
    plain ??= shared.client();
    return plain;
  };

  /** An engine (Node strategies) on a client of its own, which the test can steer. */
  function instance(): { lines: Lines; etcd: ReturnType<typeof steered> } {
    const etcd = steered(shared.client());
    return { lines: createLines(etcd.client, { prefix: PREFIX, maxWaiters: 100 }), etcd };
  }

  const rangeOf = (line: LineRef) => {
    const start = `${PREFIX}${line.kind === "lock" ? "lock" : "sem"}/${line.name}#`;
    return { start, end: prefixEnd(start) };
  };
  /** The line's keys in etcd, oldest first. */
  async function lineIn(c: EtcdClient, line: LineRef): Promise<KeyValue[]> {
    const { start, end } = rangeOf(line);
    return (await c.scan(start, end, { byCreate: true })).kvs;
  }
  const holds = (kv: KeyValue) => decodeParticipant(kv.value).h === 1;
  const revisionOf = async (c: EtcdClient) => (await c.get(PREFIX)).revision;

  /** Starts a waiting acquire and resolves once its key is the line's `n`-th waiter, with its key. */
  async function waitIn(
    lines: Lines,
    line: LineRef,
    n: number,
    o: Partial<AcquireOptions> = {},
  ): Promise<{ acquired: Promise<Acquired>; key: KeyValue }> {
    const c = direct();
    const acquired = lines.acquire(line, { ttl: 30, wait: 30, limit: 1, ...o });
    acquired.catch(() => {});
    let key: KeyValue | undefined;
    await until(async () => {
      key = (await lineIn(c, line)).filter((kv) => !holds(kv))[n - 1];
      return key !== undefined;
    }, `waiter ${n} in line ${line.name}`);
    return { acquired, key: key as KeyValue };
  }

  it("a release hands the lock to its instance's waiter in one txn; the waiter's token is its join revision", async () => {
    const a = instance();
    const c = direct();
    const line: LineRef = { kind: "lock", name: uniqueName("one") };
    const holder = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
    const w = await waitIn(a.lines, line, 1);
    await until(() => a.etcd.watches === 1, "the waiter's copy of the line");
    const before = await revisionOf(c);
    await a.lines.release(line, holder.lease);
    const { grant } = grantOf(await w.acquired);
    expect(await revisionOf(c)).toBe(before + 1);
    expect(grant.token).toBe(w.key.createRevision);
    const [kv] = await lineIn(c, line);
    expect(kv).toMatchObject({ createRevision: w.key.createRevision, modRevision: before + 1 });
    expect(await a.lines.fence(line, grant.token)).toBeUndefined();
    await a.lines.release(line, grant.lease);
    expect(await lineIn(c, line)).toEqual([]);
    await a.lines.close();
  });

  it("releases of two locks at once hand both over in one txn (group commit), each waiter with its own token", async () => {
    const a = instance();
    const c = direct();
    const lines: LineRef[] = [
      { kind: "lock", name: uniqueName("pair-a") },
      { kind: "lock", name: uniqueName("pair-b") },
    ];
    const holders: { lease: string }[] = [];
    const waiting: Awaited<ReturnType<typeof waitIn>>[] = [];
    for (const line of lines) {
      holders.push(grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant);
      waiting.push(await waitIn(a.lines, line, 1));
    }
    // Each copy is read once its waiter joined, and watched from there.
    await until(() => a.etcd.watches === 2, "the waiters' copies of their lines");
    const before = await revisionOf(c);
    await Promise.all(lines.map((line, i) => a.lines.release(line, holders[i]?.lease ?? "")));
    const grants = await Promise.all(waiting.map(async (w) => grantOf(await w.acquired).grant));
    expect(await revisionOf(c)).toBe(before + 1);
    expect(grants.map((g) => g.token)).toEqual(waiting.map((w) => w.key.createRevision));
    for (const [i, line] of lines.entries()) {
      expect(await lineIn(c, line)).toEqual([
        expect.objectContaining({ createRevision: waiting[i]?.key.createRevision, modRevision: before + 1 }),
      ]);
      await a.lines.release(line, grants[i]?.lease ?? "");
      expect(await lineIn(c, line)).toEqual([]);
    }
    await a.lines.close();
  });

  it("a waiter of another instance ahead is served first; the local one behind it waits its turn", async () => {
    const [a, b] = [instance(), instance()];
    const c = direct();
    const line: LineRef = { kind: "lock", name: uniqueName("fair") };
    const holder = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
    const remote = await waitIn(b.lines, line, 1);
    const local = await waitIn(a.lines, line, 2);
    await until(() => a.etcd.watches === 1, "A's copy of the line");
    await a.lines.release(line, holder.lease);
    const first = grantOf(await remote.acquired).grant;
    expect(first.token).toBe(remote.key.createRevision);
    const now = await lineIn(c, line);
    expect(now.map((kv) => [kv.createRevision, holds(kv)])).toEqual([
      [remote.key.createRevision, true],
      [local.key.createRevision, false],
    ]);
    await b.lines.release(line, first.lease);
    expect(grantOf(await local.acquired).grant.token).toBe(local.key.createRevision);
    await Promise.all([a.lines.close(), b.lines.close()]);
  });

  it("a waiter whose key went behind its instance's copy of the line is never put back as a holder", async () => {
    const [a, b] = [instance(), instance()];
    const c = direct();
    const line: LineRef = { kind: "lock", name: uniqueName("guard") };
    const holder = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
    const local = await waitIn(a.lines, line, 1);
    const remote = await waitIn(b.lines, line, 2);
    await until(() => a.etcd.watches === 1, "A's copy of the line");
    // Every holder change in etcd, to count holders at each revision.
    const seen = watchingRange(c, rangeOf(line).start, rangeOf(line).end, (await revisionOf(c)) + 1);
    // A's copy stops moving; its waiter's key goes (as when its queue lease ends).
    a.etcd.hold();
    expect((await c.deleteAllIfUnchanged([{ key: local.key.key, modRevision: local.key.modRevision }])).applied).toBe(
      true,
    );
    await a.lines.release(line, holder.lease);
    const next = grantOf(await remote.acquired).grant;
    expect(next.token).toBe(remote.key.createRevision);
    a.etcd.flush();
    // A's waiter finds its place gone and joins again, behind B's.
    await until(async () => (await lineIn(c, line)).length === 2, "A's waiter to join again");
    const now = await lineIn(c, line);
    expect(now.filter(holds).map((kv) => kv.createRevision)).toEqual([remote.key.createRevision]);
    await b.lines.release(line, next.lease);
    const last = grantOf(await local.acquired).grant;
    expect(last.token).toBeGreaterThan(next.token);
    await until(() => seen.calls.length >= 5, "the line's changes");
    // Never two holders at once.
    const holding = new Set<string>();
    for (const [, events] of seen.calls) {
      for (const e of events) {
        if (e.type === "delete") holding.delete(e.key);
        else if (holds(e.kv)) holding.add(e.kv.key);
        else holding.delete(e.kv.key);
      }
      expect(holding.size).toBeLessThanOrEqual(1);
    }
    seen.stop();
    await a.lines.release(line, last.lease);
    await Promise.all([a.lines.close(), b.lines.close()]);
  });

  it("a waiter whose caller hangs up while the handoff's txn is in flight: its grant is ended and handed on, never held by nobody", async () => {
    const a = instance();
    const c = direct();
    const line: LineRef = { kind: "lock", name: uniqueName("hangup") };
    const holder = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
    const gone = new AbortController();
    const first = await waitIn(a.lines, line, 1, { signal: gone.signal });
    const second = await waitIn(a.lines, line, 2);
    await until(() => a.etcd.watches === 1, "the waiters' copy of the line");
    const txn = a.etcd.pauseNextWrite();
    const released = a.lines.release(line, holder.lease);
    await txn.reached;
    gone.abort();
    txn.release();
    await released;
    await expect(first.acquired).rejects.toBeInstanceOf(CallerGone);
    expect(grantOf(await second.acquired).grant.token).toBe(second.key.createRevision);
    const now = await lineIn(c, line);
    expect(now.map((kv) => [kv.createRevision, holds(kv)])).toEqual([[second.key.createRevision, true]]);
    await a.lines.close();
  });

  it("a handoff whose answer is lost: the release and the waiter fail, and the key it made a holder is ended", async () => {
    const a = instance();
    const c = direct();
    const line: LineRef = { kind: "lock", name: uniqueName("lost") };
    const holder = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
    const w = await waitIn(a.lines, line, 1);
    await until(() => a.etcd.watches === 1, "the waiter's copy of the line");
    a.etcd.failNextWriteAfter();
    await expect(a.lines.release(line, holder.lease)).rejects.toBeInstanceOf(EtcdUnavailableError);
    await expect(w.acquired).rejects.toBeInstanceOf(EtcdUnavailableError);
    await until(async () => (await lineIn(c, line)).length === 0, "the handed-over key to be ended");
    // The lock is free for anyone.
    const next = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
    await a.lines.release(line, next.lease);
    await a.lines.close();
  });

  it("a semaphore of 2: each release hands its permit to the next waiter of its instance, one txn each", async () => {
    const a = instance();
    const c = direct();
    const line: LineRef = { kind: "semaphore", name: uniqueName("sem") };
    const o = { ttl: 30, wait: 0, limit: 2 };
    const h1 = grantOf(await a.lines.acquire(line, o)).grant;
    const h2 = grantOf(await a.lines.acquire(line, o)).grant;
    const w1 = await waitIn(a.lines, line, 1, { limit: 2 });
    const w2 = await waitIn(a.lines, line, 2, { limit: 2 });
    await until(() => a.etcd.watches === 1, "the waiters' copy of the line");
    let before = await revisionOf(c);
    await a.lines.release(line, h1.lease);
    const g1 = grantOf(await w1.acquired).grant;
    expect(await revisionOf(c)).toBe(before + 1);
    // The copy must show w1 holding first: a copy that still shows it waiting (a loaded
    // machine's late watch event) makes the next release take the plain path, rightly.
    await until(() => a.etcd.delivered >= before + 1, "the copy to show the first handoff");
    before = await revisionOf(c);
    await a.lines.release(line, h2.lease);
    const g2 = grantOf(await w2.acquired).grant;
    expect(await revisionOf(c)).toBe(before + 1);
    expect([g1.token, g2.token]).toEqual([w1.key.createRevision, w2.key.createRevision]);
    expect((await lineIn(c, line)).map((kv) => [kv.createRevision, holds(kv)])).toEqual([
      [w1.key.createRevision, true],
      [w2.key.createRevision, true],
    ]);
    await a.lines.release(line, g1.lease);
    await a.lines.release(line, g2.lease);
    await a.lines.close();
  });

  it("idempotent waiters, waiters asking a lock-delay and redeemed tickets take their own turn (two writes)", async () => {
    const a = instance();
    const c = direct();
    const cases: { what: string; o: Partial<AcquireOptions> }[] = [
      { what: "idempotent", o: { idempotencyKey: uniqueName("k"), caller: "api-key-a" } },
      { what: "lock-delay", o: { lockDelay: 1 } },
    ];
    for (const { what, o } of cases) {
      const line: LineRef = { kind: "lock", name: uniqueName(what) };
      const holder = grantOf(await a.lines.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
      const views = a.etcd.watches;
      const w = await waitIn(a.lines, line, 1, o);
      await until(() => a.etcd.watches === views + 1, `the ${what} waiter's copy of the line`);
      const before = await revisionOf(c);
      await a.lines.release(line, holder.lease);
      const { grant } = grantOf(await w.acquired);
      expect(grant.token, what).toBe(w.key.createRevision);
      // The release's delete, then the waiter's own turn (a lock-delay's marker goes with it).
      expect(await revisionOf(c), what).toBe(before + 2);
      await a.lines.release(line, grant.lease);
    }
    const line: LineRef = { kind: "lock", name: uniqueName("ticket") };
    const o = { ttl: 30, wait: 0, limit: 1, queue: true };
    const holder = grantOf(await a.lines.acquire(line, o)).grant;
    const t = await a.lines.acquire(line, o);
    if (!("ticket" in t)) throw new Error("expected a ticket");
    const views = a.etcd.watches;
    const redeem = a.lines.redeem(line, t.ticket.ticket, { wait: 30 });
    await until(() => a.lines.activeWaiters === 1 && a.etcd.watches === views + 1, "the redeem to wait");
    const before = await revisionOf(c);
    await a.lines.release(line, holder.lease);
    const { grant } = grantOf(await redeem);
    expect(await revisionOf(c)).toBe(before + 2);
    await a.lines.release(line, grant.lease);
    await a.lines.close();
  });

  it("a guarded write's deletes reach a watcher before its puts", async () => {
    const c = direct();
    const start = `${PREFIX}order/${uniqueName("o")}/`;
    const [x, y] = [`${start}x`, `${start}y`];
    await c.createAllIfAbsent([{ key: x, value: "x", lease: 0n }]);
    const from = await revisionOf(c);
    const w = watchingRange(c, start, prefixEnd(start), from + 1);
    const revision = await c.guardedWrite({ delete: [x], put: [{ key: y, value: "y", lease: 0n }] });
    await until(() => w.calls.length === 1, "the txn's events");
    expect(w.calls[0]?.[0]).toBe(revision);
    expect(w.calls[0]?.[1].map((e) => e.type)).toEqual(["delete", "put"]);
    w.stop();
  });
});
