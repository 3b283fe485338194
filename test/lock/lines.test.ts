import { describe, expect, it } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { type EtcdClient, prefixEnd } from "../../src/etcd/types.js";
import { createLines, LimitMismatch, LockHeld, LockLost } from "../../src/lock/index.js";
import type { Acquired, Grant, LineRef, Lines, Ticket } from "../../src/lock/types.js";
import { etcdWithClients, RUNTIMES } from "../support/etcd.js";
import { uniqueName, until } from "../support/http.js";
import { grantOf } from "../support/locks.js";

const PREFIX = "lines/";

function ticketOf(a: Acquired): Ticket {
  if (!("ticket" in a)) throw new Error("expected a ticket, got a grant");
  return a.ticket;
}

/** Keys left under the test prefix. */
async function keysLeft(c: EtcdClient): Promise<number> {
  return (await c.scan(PREFIX, prefixEnd(PREFIX), { countOnly: true })).count;
}

const TRANSPORTS = [
  { transport: "grpc", make: (endpoint: string) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
  { transport: "gateway", make: (endpoint: string) => createGatewayEtcd({ endpoints: [endpoint], timeoutMs: 3000 }) },
] as const;

describe.each(TRANSPORTS)("lines of holders and waiters over $transport (real etcd)", ({ make }) => {
  const shared = etcdWithClients(make);

  describe.each(RUNTIMES)("with $how", ({ runtime }) => {
    /** `n` engine instances, each with its own etcd client (as separate service instances). */
    const instances = (n: number): Lines[] =>
      Array.from({ length: n }, () => createLines(shared.client(), { prefix: PREFIX, maxWaiters: 1000, ...runtime }));

    it("waiters on three instances are granted in the order they joined, with increasing tokens", async () => {
      const [a, b, c] = instances(3) as [Lines, Lines, Lines];
      const line: LineRef = { kind: "lock", name: uniqueName("fair") };
      const first = grantOf(await a.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      // Join one at a time, round-robin over the instances, each confirmed in line first.
      const order: Lines[] = [b, c, a, b, c, a];
      const granted: number[] = [];
      const pending: Promise<Grant>[] = [];
      for (const [i, inst] of order.entries()) {
        pending.push(
          inst.acquire(line, { ttl: 30, wait: 30, limit: 1 }).then((r) => {
            granted.push(i);
            return grantOf(r).grant;
          }),
        );
        await until(async () => (await a.inspect(line))?.waiters === i + 1, `waiter ${i} in line`);
      }
      let holder = first.grant;
      const tokens = [holder.token];
      for (let i = 0; i < order.length; i++) {
        await (i === 0 ? a : (order[i - 1] as Lines)).release(line, holder.lease);
        holder = await (pending[i] as Promise<Grant>);
        tokens.push(holder.token);
      }
      await order.at(-1)?.release(line, holder.lease);
      expect(granted).toEqual([0, 1, 2, 3, 4, 5]);
      expect(tokens).toEqual([...tokens].sort((x, y) => x - y));
      expect(new Set(tokens).size).toBe(tokens.length);
      await Promise.all([a, b, c].map((l) => l.close()));
    });

    it("waiters that join one line at once get places of their own, so tokens of their own", async () => {
      const [a] = instances(1) as [Lines];
      const c = shared.client();
      const line: LineRef = { kind: "lock", name: uniqueName("together") };
      let holder = grantOf(await a.acquire(line, { ttl: 30, wait: 0, limit: 1 })).grant;
      // Once the instance has seen the line busy, acquires read it before they join, so
      // waiters started in one turn reach their joins together: group commit would put
      // them in one txn.
      await expect(a.acquire(line, { ttl: 30, wait: 0, limit: 1 })).rejects.toBeInstanceOf(LockHeld);
      const pending = Array.from({ length: 5 }, () => a.acquire(line, { ttl: 30, wait: 30, limit: 1 }));
      await until(async () => (await a.inspect(line))?.waiters === 5, "five waiters in line");
      const start = `${PREFIX}lock/${line.name}#`;
      const places = await c.scan(start, prefixEnd(start), {});
      expect(new Set(places.kvs.map((kv) => kv.createRevision)).size).toBe(6);
      const tokens = [holder.token];
      const arrived: Grant[] = [];
      for (const p of pending) void p.then((r) => arrived.push(grantOf(r).grant));
      for (let i = 0; i < 5; i++) {
        await a.release(line, holder.lease);
        await until(() => arrived.length === i + 1, `grant ${i + 1}`);
        holder = arrived[i] as Grant;
        tokens.push(holder.token);
      }
      await a.release(line, holder.lease);
      expect(new Set(tokens).size).toBe(6);
      expect(tokens).toEqual([...tokens].sort((x, y) => x - y));
      await a.close();
    });

    it("a non-waiting acquire of a held lock writes nothing", async () => {
      const [a] = instances(1) as [Lines];
      const c = shared.client();
      const line: LineRef = { kind: "lock", name: uniqueName("nowrite") };
      const held = grantOf(await a.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      const before = (await c.get("any")).revision;
      for (let i = 0; i < 3; i++) {
        await expect(a.acquire(line, { ttl: 30, wait: 0, limit: 1 })).rejects.toBeInstanceOf(LockHeld);
      }
      expect((await c.get("any")).revision).toBe(before);
      await a.release(line, held.grant.lease);
      await a.close();
    });

    it("a semaphore has at most limit holders, each with its own increasing token", async () => {
      const [a, b] = instances(2) as [Lines, Lines];
      const line: LineRef = { kind: "semaphore", name: uniqueName("sem") };
      const o = { ttl: 30, wait: 0, limit: 3 };
      const grants = [
        grantOf(await a.acquire(line, o)).grant,
        grantOf(await b.acquire(line, o)).grant,
        grantOf(await a.acquire(line, o)).grant,
      ];
      expect(grants.map((g) => g.limit)).toEqual([3, 3, 3]);
      expect(new Set(grants.map((g) => g.token)).size).toBe(3);
      const full = await b.acquire(line, o).catch((e: unknown) => e);
      expect(full).toBeInstanceOf(LockHeld);
      expect((full as LockHeld).holder).toBeUndefined();
      // Another limit: refused, nothing changed.
      await expect(b.acquire(line, { ...o, limit: 4 })).rejects.toBeInstanceOf(LimitMismatch);
      const info = await a.inspect(line);
      expect(info?.limit).toBe(3);
      expect(info?.holders.map((h) => h.token)).toEqual(grants.map((g) => g.token));
      expect(JSON.stringify(info)).not.toContain((grants[0] as Grant).lease);
      // A waiter gets the permit a holder gives back, with a larger token than all before.
      const waiting = b.acquire(line, { ...o, wait: 20 });
      await until(async () => (await a.inspect(line))?.waiters === 1, "a waiter in line");
      await a.release(line, (grants[1] as Grant).lease);
      const next = grantOf(await waiting).grant;
      expect(next.token).toBeGreaterThan(Math.max(...grants.map((g) => g.token)));
      expect((await a.inspect(line))?.holders).toHaveLength(3);
      // The admin ends one permit by its token.
      expect(await a.forceRelease(line, next.token)).toBeDefined();
      await expect(b.renew(line, next.lease)).rejects.toBeInstanceOf(LockLost);
      for (const g of [grants[0], grants[2]] as Grant[]) await a.release(line, g.lease);
      expect(await a.inspect(line)).toBeUndefined();
      await Promise.all([a.close(), b.close()]);
    });

    it("a waiter that gives up leaves the line at once, with its position in the refusal", async () => {
      const [a, b] = instances(2) as [Lines, Lines];
      const line: LineRef = { kind: "lock", name: uniqueName("leave") };
      const held = grantOf(await a.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      const first = b.acquire(line, { ttl: 30, wait: 20, limit: 1 });
      await until(async () => (await a.inspect(line))?.waiters === 1, "first waiter in line");
      const second = await a.acquire(line, { ttl: 30, wait: 0.5, limit: 1 }).catch((e: unknown) => e);
      expect(second).toBeInstanceOf(LockHeld);
      expect((second as LockHeld).position).toBe(1);
      expect((await a.inspect(line))?.waiters).toBe(1);
      await a.release(line, held.grant.lease);
      const g = grantOf(await first).grant;
      await b.release(line, g.lease);
      await until(
        async () => (await keysLeft(shared.client())) === 0 || (await a.inspect(line)) === undefined,
        "empty",
      );
      await Promise.all([a.close(), b.close()]);
    });

    it("tickets keep a place across calls, are granted at their turn, and drop out when not redeemed", async () => {
      const [a, b] = instances(2) as [Lines, Lines];
      const line: LineRef = { kind: "lock", name: uniqueName("ticket") };
      const o = { ttl: 30, wait: 0, limit: 1, queue: true, ticketTtl: 30 };
      const held = grantOf(await a.acquire(line, o));
      const t1 = ticketOf(await b.acquire(line, o));
      const t2 = ticketOf(await a.acquire(line, { ...o, ticketTtl: 2 }));
      expect([t1.position, t2.position]).toEqual([0, 1]);
      expect(t1.ttl).toBe(30);
      expect(t1.ticket).not.toBe(t2.ticket);
      // Not its turn yet: the same ticket, its position again.
      expect(ticketOf(await a.redeem(line, t1.ticket, { wait: 0 })).position).toBe(0);
      await a.release(line, held.grant.lease);
      const g1 = grantOf(await a.redeem(line, t1.ticket, { wait: 0 }));
      expect(g1.replayed).toBe(false);
      // Redeemed twice (the first answer lost): the same grant.
      const again = grantOf(await b.redeem(line, t1.ticket, { wait: 0 }));
      expect(again.replayed).toBe(true);
      expect(again.grant.token).toBe(g1.grant.token);
      // t2 is never redeemed: it drops out within its TTL.
      await until(
        async () => (await a.inspect(line))?.waiters === undefined || (await a.inspect(line))?.waiters === 0,
        "t2 gone",
        15_000,
      );
      await expect(a.redeem(line, t2.ticket, { wait: 0 })).rejects.toBeInstanceOf(LockLost);
      // A ticket that leaves: the next in line advances.
      const t3 = ticketOf(await a.acquire(line, o));
      const t4 = ticketOf(await b.acquire(line, o));
      await a.leave(line, t3.ticket);
      await expect(a.leave(line, t3.ticket)).rejects.toBeInstanceOf(LockLost);
      expect(ticketOf(await b.redeem(line, t4.ticket, { wait: 0 })).position).toBe(0);
      const waited = b.redeem(line, t4.ticket, { wait: 20 });
      await a.release(line, again.grant.lease);
      const g4 = grantOf(await waited);
      expect(g4.grant.token).toBeGreaterThan(g1.grant.token);
      await b.release(line, g4.grant.lease);
      await Promise.all([a.close(), b.close()]);
    });

    it("the line never stalls behind a waiter whose instance died", async () => {
      const [a, b] = instances(2) as [Lines, Lines];
      const doomedClient = make(shared.etcd.endpoint);
      const doomed = createLines(doomedClient, { prefix: PREFIX, maxWaiters: 10, ...runtime });
      const line: LineRef = { kind: "lock", name: uniqueName("dead") };
      const held = grantOf(await a.acquire(line, { ttl: 30, wait: 0, limit: 1 }));
      const ac = new AbortController();
      // The doomed instance's waiter joins first; then its client is closed under it
      // (no clean-up reaches etcd, as when the process is killed).
      void doomed.acquire(line, { ttl: 30, wait: 30, limit: 1, signal: ac.signal }).catch(() => {});
      await until(async () => (await a.inspect(line))?.waiters === 1, "doomed waiter in line");
      const next = b.acquire(line, { ttl: 30, wait: 30, limit: 1 });
      await until(async () => (await a.inspect(line))?.waiters === 2, "second waiter in line");
      await doomedClient.close();
      ac.abort();
      await a.release(line, held.grant.lease);
      const started = Date.now();
      const g = grantOf(await next).grant;
      expect(Date.now() - started).toBeLessThan(8_000);
      await b.release(line, g.lease);
      await Promise.all([a.close(), b.close()]);
    });
  });
});
