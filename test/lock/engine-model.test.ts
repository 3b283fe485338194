import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createLines,
  FenceStale,
  IdempotencyKeyMismatch,
  LimitMismatch,
  LockHeld,
  LockLost,
} from "../../src/lock/index.js";
import type { Acquired, LineInfo, LineRef, Lines } from "../../src/lock/types.js";
import { etcdWithClients } from "../support/etcd.js";
import { leaseIdOf, uniqueName } from "../support/http.js";

// Model-based tests of the coordination engine on a real etcd: fast-check runs random
// sequences of acquire (plain, idempotent, queued for a ticket), redeem, leave, renew,
// release, force release (oldest, or by token), inspect, fence, expiry (the holder's
// lease revoked in etcd) and a limit mismatch against two engine instances, and after
// each step compares the answer with a reference model of the lines: participants in
// join order, the first `limit` of them may hold once everyone ahead holds, tokens
// increase with every grant.

const PREFIX = "engine-model/";
const TTL = 60;

/** One participant of a line in the model. */
interface P {
  /** Caller and Idempotency-Key, for idempotent acquires. */
  key?: string;
  holds: boolean;
  /** Its ticket, if it took one. */
  ticket?: string;
  /** Its grant's handle and token, once it holds. */
  handle?: string;
  token?: number;
}

interface LineModel {
  ref: LineRef;
  limit: number;
  /** In join order. */
  ps: P[];
  /** Every grant and ticket ever handed out (for requests with stale ones). */
  grants: { handle: string; token: number; p: P }[];
  tickets: { ticket: string; p: P }[];
  lastToken: number;
}

interface Model {
  lines: LineModel[];
}

interface Real {
  engines: Lines[];
  /** Commands run, over all sequences. */
  counts: Record<string, number>;
  expire(handle: string): Promise<void>;
}

const alive = (l: LineModel, p: P) => l.ps.includes(p);
const waiting = (l: LineModel) => l.ps.filter((p) => !p.holds).length;
/** Whether a newcomer may hold at once: fewer than `limit`, all holding. */
const room = (l: LineModel) => l.ps.length < l.limit && l.ps.every((p) => p.holds);
/** Whether `p` may hold now: among the first `limit`, everyone ahead holding. */
const mayHold = (l: LineModel, p: P) => {
  const i = l.ps.indexOf(p);
  return i >= 0 && i < l.limit && l.ps.slice(0, i).every((x) => x.holds);
};
const positionOf = (l: LineModel, p: P) => l.ps.slice(0, l.ps.indexOf(p)).filter((x) => !x.holds).length;
const holders = (l: LineModel) => l.ps.slice(0, l.limit).filter((p) => p.holds);

/** Runs `op`, returning its result or the error it threw (as a value, to compare). */
async function outcome<T>(op: () => Promise<T>): Promise<T | Error> {
  try {
    return await op();
  } catch (err) {
    return err as Error;
  }
}

function expectError(r: unknown, type: new (...args: never[]) => Error, what: string) {
  expect(r, what).toBeInstanceOf(type);
}

/** A grant the model expects: records the real token and handle, checks the token grows. */
function granted(l: LineModel, p: P, r: Acquired | Error, what: string) {
  if (r instanceof Error || !("grant" in r)) throw new Error(`${what}: expected a grant, got ${shown(r)}`);
  expect(r.replayed, what).toBe(false);
  expect(r.grant.token, `${what}: tokens increase with every grant`).toBeGreaterThan(l.lastToken);
  l.lastToken = r.grant.token;
  p.holds = true;
  p.handle = r.grant.lease;
  p.token = r.grant.token;
  l.grants.push({ handle: r.grant.lease, token: r.grant.token, p });
}

function replayed(p: P, r: Acquired | Error, what: string) {
  if (r instanceof Error || !("grant" in r)) throw new Error(`${what}: expected the same grant again, got ${shown(r)}`);
  expect({ replayed: r.replayed, token: r.grant.token, lease: r.grant.lease }, what).toEqual({
    replayed: true,
    token: p.token,
    lease: p.handle,
  });
}

function inLine(l: LineModel, p: P, r: Acquired | Error, what: string) {
  if (r instanceof Error || !("ticket" in r)) throw new Error(`${what}: expected a ticket, got ${shown(r)}`);
  expect(r.ticket.position, `${what}: position`).toBe(positionOf(l, p));
  if (p.ticket === undefined) {
    p.ticket = r.ticket.ticket;
    l.tickets.push({ ticket: r.ticket.ticket, p });
  } else expect(r.ticket.ticket, what).toBe(p.ticket);
}

const shown = (r: unknown) => (r instanceof Error ? `${r.name}: ${r.message}` : JSON.stringify(r));

type Cmd = fc.AsyncCommand<Model, Real>;

const RUNS = 200;

/** Counts each command that runs, by its kind (the start of its description). */
function counted(c: Cmd): Cmd {
  return {
    check: (m) => c.check(m),
    run: async (m, r) => {
      const kind = c.toString().startsWith("acquire(semaphore with another")
        ? "other-limit"
        : c.toString().slice(0, c.toString().indexOf("("));
      r.counts[kind] = (r.counts[kind] ?? 0) + 1;
      await c.run(m, r);
    },
    toString: () => c.toString(),
  };
}

class Acquire implements Cmd {
  constructor(
    readonly line: number,
    readonly inst: number,
    /** Idempotency-Key (0–3, of caller 0 or 1), or none. */
    readonly key: number | undefined,
    readonly caller: number,
    readonly queue: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const l = m.lines[this.line] as LineModel;
    const id = this.key === undefined ? undefined : `${this.caller}/${this.key}`;
    // One key always comes with the same fields: a retry, never a mismatch.
    const queue = this.key === undefined ? this.queue : this.key >= 2;
    const res = await outcome(() =>
      (r.engines[this.inst] as Lines).acquire(l.ref, {
        ttl: TTL,
        wait: 0,
        limit: l.limit,
        ...(queue ? { queue: true, ticketTtl: TTL } : {}),
        ...(id !== undefined ? { idempotencyKey: `key-${id}`, caller: `caller-${this.caller}` } : {}),
      }),
    );
    const what = this.toString();
    const again = id === undefined ? undefined : l.ps.find((p) => p.key === id);
    if (again?.holds) return replayed(again, res, what);
    if (again) return inLine(l, again, res, what);
    const p: P = id === undefined ? { holds: false } : { key: id, holds: false };
    if (room(l)) {
      l.ps.push(p);
      return granted(l, p, res, what);
    }
    if (queue) {
      l.ps.push(p);
      return inLine(l, p, res, what);
    }
    expectError(res, LockHeld, what);
  }
  toString = () =>
    `acquire(line ${this.line}, instance ${this.inst}${this.key === undefined ? "" : `, key ${this.caller}/${this.key}`}${this.queue ? ", queue" : ""})`;
}

/**
 * A command on one of the grants (or tickets) a line ever handed out, live or not:
 * `which` picks it, modulo how many there were.
 */
abstract class OnOne implements Cmd {
  constructor(
    readonly op: string,
    readonly of: "grant" | "ticket",
    readonly line: number,
    readonly which: number,
    readonly inst: number,
  ) {}
  check = (m: Model) => this.list(m.lines[this.line] as LineModel).length > 0;
  private list(l: LineModel): { p: P }[] {
    return this.of === "grant" ? l.grants : l.tickets;
  }
  /** The line, the grant or ticket picked, and the engine instance to send to. */
  protected picked<T extends { p: P }>(m: Model, r: Real): { l: LineModel; x: T; engine: Lines } {
    const l = m.lines[this.line] as LineModel;
    const list = this.list(l);
    return { l, x: list[this.which % list.length] as T, engine: r.engines[this.inst] as Lines };
  }
  abstract run(m: Model, r: Real): Promise<void>;
  toString = () => `${this.op}(line ${this.line}, ${this.of} #${this.which}, instance ${this.inst})`;
}

type TicketOf = LineModel["tickets"][number];
type GrantOf = LineModel["grants"][number];

class Redeem extends OnOne {
  constructor(line: number, which: number, inst: number) {
    super("redeem", "ticket", line, which, inst);
  }
  async run(m: Model, r: Real) {
    const { l, x: t, engine } = this.picked<TicketOf>(m, r);
    const res = await outcome(() => engine.redeem(l.ref, t.ticket, { wait: 0 }));
    const what = this.toString();
    if (!alive(l, t.p)) return expectError(res, LockLost, what);
    if (t.p.holds) return replayed(t.p, res, what);
    if (mayHold(l, t.p)) return granted(l, t.p, res, what);
    inLine(l, t.p, res, what);
  }
}

class Leave extends OnOne {
  constructor(line: number, which: number, inst: number) {
    super("leave", "ticket", line, which, inst);
  }
  async run(m: Model, r: Real) {
    const { l, x: t, engine } = this.picked<TicketOf>(m, r);
    const res = await outcome(() => engine.leave(l.ref, t.ticket));
    if (!alive(l, t.p)) return expectError(res, LockLost, this.toString());
    expect(res, this.toString()).toBeUndefined();
    l.ps = l.ps.filter((p) => p !== t.p);
  }
}

class Renew extends OnOne {
  constructor(line: number, which: number, inst: number) {
    super("renew", "grant", line, which, inst);
  }
  async run(m: Model, r: Real) {
    const { l, x: g, engine } = this.picked<GrantOf>(m, r);
    const res = await outcome(() => engine.renew(l.ref, g.handle));
    if (!alive(l, g.p)) return expectError(res, LockLost, this.toString());
    if (res instanceof Error) throw new Error(`${this} of a live grant: ${shown(res)}`);
    expect({ token: res.token, lease: res.lease }, this.toString()).toEqual({ token: g.token, lease: g.handle });
  }
}

class Release extends OnOne {
  constructor(line: number, which: number, inst: number) {
    super("release", "grant", line, which, inst);
  }
  async run(m: Model, r: Real) {
    const { l, x: g, engine } = this.picked<GrantOf>(m, r);
    const res = await outcome(() => engine.release(l.ref, g.handle));
    if (!alive(l, g.p)) return expectError(res, LockLost, this.toString());
    if (res instanceof Error) throw new Error(`${this} of a live grant: ${shown(res)}`);
    l.ps = l.ps.filter((p) => p !== g.p);
  }
}

class Force implements Cmd {
  constructor(
    readonly line: number,
    /** By the token of grant #which (maybe one that ended), or the oldest holder. */
    readonly which: number | undefined,
    readonly inst: number,
  ) {}
  check = (m: Model) => this.which === undefined || (m.lines[this.line] as LineModel).grants.length > 0;
  async run(m: Model, r: Real) {
    const l = m.lines[this.line] as LineModel;
    const token = this.which === undefined ? undefined : l.grants[this.which % l.grants.length]?.token;
    const res = await outcome(() => (r.engines[this.inst] as Lines).forceRelease(l.ref, token));
    const target = holders(l).find((p) => token === undefined || p.token === token);
    if (res instanceof Error) throw new Error(`${this}: ${shown(res)}`);
    if (!target) return expect(res, `${this}: nobody (with that token) holds it`).toBeUndefined();
    expect(res, `${this}: ends ${target.token}`).toBeDefined();
    l.ps = l.ps.filter((p) => p !== target);
  }
  toString = () =>
    `force(line ${this.line}${this.which === undefined ? "" : `, token of grant #${this.which}`}, instance ${this.inst})`;
}

class Inspect implements Cmd {
  constructor(
    readonly line: number,
    readonly inst: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const l = m.lines[this.line] as LineModel;
    const res = await (r.engines[this.inst] as Lines).inspect(l.ref);
    const held = holders(l);
    if (held.length === 0) return expect(res, this.toString()).toBeUndefined();
    const info = res as LineInfo;
    expect(
      { limit: info?.limit, tokens: info?.holders.map((h) => h.token), waiters: info?.waiters },
      this.toString(),
    ).toEqual({ limit: l.limit, tokens: held.map((p) => p.token), waiters: waiting(l) });
  }
  toString = () => `inspect(line ${this.line}, instance ${this.inst})`;
}

class Fence extends OnOne {
  constructor(line: number, which: number, inst: number) {
    super("fence", "grant", line, which, inst);
  }
  async run(m: Model, r: Real) {
    const { l, x: g, engine } = this.picked<GrantOf>(m, r);
    const res = await outcome(() => engine.fence(l.ref, g.token));
    // The current holders: the first of the line, up to the first that waits.
    const current: number[] = [];
    for (const p of l.ps.slice(0, l.limit)) {
      if (!p.holds) break;
      current.push(p.token as number);
    }
    if (current.includes(g.token)) expect(res, this.toString()).toBeUndefined();
    else expectError(res, FenceStale, this.toString());
  }
}

/** A holder's lease (or a ticket's) ends in etcd: as if it expired. */
class Expire implements Cmd {
  constructor(
    readonly line: number,
    readonly which: number,
  ) {}
  check = (m: Model) => (m.lines[this.line] as LineModel).ps.some((p) => p.holds || p.ticket);
  async run(m: Model, r: Real) {
    const l = m.lines[this.line] as LineModel;
    const candidates = l.ps.filter((p) => p.holds || p.ticket);
    const p = candidates[this.which % candidates.length] as P;
    await r.expire((p.holds ? p.handle : p.ticket) as string);
    l.ps = l.ps.filter((x) => x !== p);
  }
  toString = () => `expire(line ${this.line}, participant #${this.which})`;
}

/** Acquiring a semaphore with another limit than its holders': refused while it has any. */
class OtherLimit implements Cmd {
  constructor(readonly inst: number) {}
  check = (m: Model) => (m.lines[1] as LineModel).ps.length > 0;
  async run(m: Model, r: Real) {
    const l = m.lines[1] as LineModel;
    const res = await outcome(() =>
      (r.engines[this.inst] as Lines).acquire(l.ref, { ttl: TTL, wait: 0, limit: l.limit + 1 }),
    );
    expectError(res, LimitMismatch, this.toString());
  }
  toString = () => `acquire(semaphore with another limit, instance ${this.inst})`;
}

describe("the lock engine against a reference model (fast-check commands, real etcd)", () => {
  const shared = etcdWithClients();
  let engines: Lines[] = [];
  beforeAll(() => {
    engines = [0, 1].map(() => createLines(shared.client(), { prefix: PREFIX, maxWaiters: 100 }));
  });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.close()));
  });

  it("agrees with the model on random sequences of operations", { timeout: 120_000 }, async () => {
    const line = fc.nat({ max: 2 });
    const inst = fc.nat({ max: 1 });
    const which = fc.nat({ max: 20 });
    const commands = [
      fc
        .tuple(line, inst, fc.option(fc.nat({ max: 3 }), { nil: undefined }), fc.nat({ max: 1 }), fc.boolean())
        .map(([l, i, k, c, q]) => new Acquire(l, i, k, c, q)),
      fc.tuple(line, which, inst).map(([l, w, i]) => new Redeem(l, w, i)),
      fc.tuple(line, which, inst).map(([l, w, i]) => new Leave(l, w, i)),
      fc.tuple(line, which, inst).map(([l, w, i]) => new Renew(l, w, i)),
      fc.tuple(line, which, inst).map(([l, w, i]) => new Release(l, w, i)),
      fc.tuple(line, fc.option(which, { nil: undefined }), inst).map(([l, w, i]) => new Force(l, w, i)),
      fc.tuple(line, inst).map(([l, i]) => new Inspect(l, i)),
      fc.tuple(line, which, inst).map(([l, w, i]) => new Fence(l, w, i)),
      fc.tuple(line, which).map(([l, w]) => new Expire(l, w)),
      inst.map((i) => new OtherLimit(i)),
    ];
    const etcd = shared.client();
    const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
    let runs = 0;
    const counts: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 40, size: "max" }), async (cmds) => {
        runs++;
        // Fresh names per run: nothing left over from an earlier sequence.
        const model: Model = {
          lines: [
            { kind: "lock" as const, limit: 1 },
            { kind: "semaphore" as const, limit: 2 },
            { kind: "lock" as const, limit: 1 },
          ].map(({ kind, limit }) => ({
            ref: { kind, name: uniqueName("model") },
            limit,
            ps: [],
            grants: [],
            tickets: [],
            lastToken: 0,
          })),
        };
        const real: Real = {
          engines,
          counts,
          async expire(handle) {
            await etcd.leaseRevoke(leaseIdOf(handle));
          },
        };
        await fc.asyncModelRun(() => ({ model, real }), [...cmds].map(counted));
      }),
      { numRuns: RUNS, seed, interruptAfterTimeLimit: 90_000, markInterruptAsFailure: true },
    );
    expect(runs).toBeGreaterThanOrEqual(RUNS);
    // Every kind of command ran, many times over.
    expect(Object.keys(counts).sort()).toEqual(
      ["acquire", "expire", "fence", "force", "inspect", "leave", "other-limit", "redeem", "release", "renew"].sort(),
    );
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBeGreaterThan(RUNS * 5);
  });

  it("an Idempotency-Key sent again with other fields is refused", async () => {
    const [a] = engines as [Lines];
    const ref: LineRef = { kind: "lock", name: uniqueName("model") };
    const o = { ttl: TTL, wait: 0, limit: 1, idempotencyKey: "k", caller: "c" };
    await a.acquire(ref, o);
    await expect(a.acquire(ref, { ...o, ttl: TTL + 1 })).rejects.toBeInstanceOf(IdempotencyKeyMismatch);
  });
});
