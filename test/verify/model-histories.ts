/**
 * Histories for the model checker's tests: written by hand (`Hand`), or made by a
 * simulated lock service (`simulate`) that is correct unless told otherwise.
 */
import { History, type OpEvent } from "../../scripts/verify/history.js";

type Outcome = number | "info" | "hung up";

/** A history written by hand: each call with its send and answer times (ms) and its outcome. */
export class Hand {
  private readonly pending: { time: number; order: number; emit: (h: History) => void }[] = [];
  private order = 0;
  private seq = 0;

  /** One request: sent at `from`, answered at `to` (`info`: never answered). */
  call(
    process: string,
    f: "acquire" | "renew" | "release" | "force" | "inspect" | "redeem",
    path: string,
    [from, to]: [number, number?],
    outcome: Outcome,
    o: { body?: Record<string, unknown>; headers?: Record<string, string>; answer?: unknown; caller?: string } = {},
  ): this {
    let pending: ReturnType<History["invoke"]> | undefined;
    this.at(from, (h) => {
      pending = h.invoke(process, {
        f,
        path,
        body: o.body,
        headers: o.headers,
        caller: o.caller,
        instance: 0,
        seq: ++this.seq,
        time: from,
      });
    });
    if (outcome !== "info" || to !== undefined) {
      const time = to ?? from + 1;
      this.at(time, (h) => {
        const status = outcome === "info" ? 0 : outcome;
        h.complete(pending as ReturnType<History["invoke"]>, { status, body: o.answer, seq: ++this.seq, time });
      });
    }
    return this;
  }

  private at(time: number, emit: (h: History) => void) {
    this.pending.push({ time, order: this.order++, emit });
  }

  /** An acquire of lock `name` answered `status` with `token` and the handle `lease`. */
  acquire(
    p: string,
    name: string,
    span: [number, number?],
    status: Outcome,
    g: { token?: number; lease?: string; ttl?: number; key?: string; kind?: "semaphore"; limit?: number } = {},
  ) {
    const base = g.kind === "semaphore" ? "/semaphores" : "/locks";
    return this.call(p, "acquire", `${base}/${name}`, span, status, {
      body: { ttl: g.ttl ?? 2, ...(g.limit ? { limit: g.limit } : {}) },
      headers: g.key ? { "idempotency-key": g.key } : {},
      answer:
        g.token === undefined
          ? {}
          : {
              token: g.token,
              lease: g.lease ?? `h${g.token}`,
              ttl: g.ttl ?? 2,
              ...(g.limit ? { limit: g.limit } : {}),
            },
    });
  }

  renew(p: string, name: string, lease: string, span: [number, number?], status: Outcome, token?: number) {
    return this.call(p, "renew", `/locks/${name}/renew`, span, status, {
      body: { lease },
      answer: status === 200 ? { token, lease, ttl: 2 } : { code: "lock-lost" },
    });
  }

  release(p: string, name: string, lease: string, span: [number, number?], status: Outcome, kind?: "semaphore") {
    return this.call(p, "release", `${kind ? "/semaphores" : "/locks"}/${name}`, span, status, { body: { lease } });
  }

  force(p: string, name: string, span: [number, number?], status: Outcome, token?: number, kind?: "semaphore") {
    const q = token === undefined ? "" : `&token=${token}`;
    return this.call(p, "force", `${kind ? "/semaphores" : "/locks"}/${name}?force=true${q}`, span, status);
  }

  inspect(p: string, name: string, span: [number, number?], tokens: number[]) {
    return this.call(p, "inspect", `/locks/${name}`, span, tokens.length ? 200 : 404, {
      answer: tokens.length ? { name, token: tokens[0] } : { code: "lock-not-found" },
    });
  }

  /** The events in the order they happened. */
  events(): OpEvent[] {
    const h = new History({ seq: () => 0, now: () => 0 });
    for (const p of [...this.pending].sort((a, b) => a.time - b.time || a.order - b.order)) p.emit(h);
    return h.events;
  }
}

/** A small deterministic PRNG (mulberry32), so a simulated history can be made again. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SimOptions {
  seed: number;
  /** Operations to make (about). */
  ops: number;
  clients: number;
  names: number;
  /** Holders allowed at once (1: locks). */
  limit?: number;
  /** Share of answers lost (the client sees no answer: `info`). */
  lossRate?: number;
  /** Deliberate faults of the simulated service. */
  broken?: "no-mutex" | "early-expiry" | "stale-release";
}

/**
 * A simulated service and its clients: each request takes effect 0–8 ms after it was
 * sent and is answered 0–8 ms later; leases expire `ttl` after their last refresh took
 * effect; an admin force-releases now and then. Clients acquire, sometimes renew,
 * sometimes stall past their TTL, release; some answers are lost.
 */
export function simulate(o: SimOptions): OpEvent[] {
  const rnd = prng(o.seed);
  const limit = o.limit ?? 1;
  const kind = limit > 1 ? "semaphore" : "lock";
  const base = kind === "semaphore" ? "/semaphores" : "/locks";
  const ttl = 2;
  const clock = { seq: 0, now: 0 };
  const history = new History({ seq: () => ++clock.seq, now: () => clock.now });
  type Holder = { token: number; lease: string; expires: number };
  const lines = Array.from({ length: o.names }, () => ({ holders: [] as Holder[], token: 0 }));
  const queue: { time: number; n: number; fn: () => void }[] = [];
  let n = 0;
  const schedule = (time: number, fn: () => void) => {
    // A sorted insert: the queue stays short (a few events per client).
    const e = { time, n: n++, fn };
    let i = queue.length;
    while (
      i > 0 &&
      ((queue[i - 1] as typeof e).time > time ||
        ((queue[i - 1] as typeof e).time === time && (queue[i - 1] as typeof e).n > e.n))
    )
      i--;
    queue.splice(i, 0, e);
  };
  let made = 0;
  let leaseN = 0;
  const expire = (line: (typeof lines)[number], now: number) => {
    const early = o.broken === "early-expiry" ? 1_000 : 0;
    line.holders = line.holders.filter((h) => h.expires - early > now);
  };

  /** Sends a request; `effect` runs when it takes effect and returns the status (and answer). */
  const request = (
    process: string,
    f: "acquire" | "renew" | "release" | "force",
    name: number,
    path: string,
    body: Record<string, unknown> | undefined,
    effect: (line: (typeof lines)[number], now: number) => { status: number; answer?: unknown },
    then: (status: number | undefined, answer: unknown) => void,
  ) => {
    made++;
    const sent = clock.now;
    const p = history.invoke(process, {
      f,
      path: `${base}/lock${name}${path}`,
      body,
      instance: 0,
      seq: ++clock.seq,
      time: sent,
    });
    const applyAt = sent + rnd() * 8;
    const lost = rnd() < (o.lossRate ?? 0.02);
    schedule(applyAt, () => {
      const line = lines[name] as (typeof lines)[number];
      expire(line, clock.now);
      const r = effect(line, clock.now);
      const answerAt = clock.now + rnd() * 8;
      schedule(answerAt, () => {
        if (lost) {
          history.complete(p, { status: 0, seq: ++clock.seq, time: clock.now });
          then(undefined, undefined);
          return;
        }
        history.complete(p, { status: r.status, body: r.answer, seq: ++clock.seq, time: clock.now });
        then(r.status, r.answer);
      });
    });
  };

  const client = (id: string) => {
    const loop = () => {
      if (made >= o.ops) return;
      const name = Math.floor(rnd() * o.names);
      request(
        id,
        "acquire",
        name,
        "",
        { ttl, ...(limit > 1 ? { limit } : {}) },
        (line, now) => {
          if (line.holders.length >= limit && o.broken !== "no-mutex") return { status: 409 };
          line.token += 1 + Math.floor(rnd() * 3);
          const lease = `lease-${++leaseN}`;
          line.holders.push({ token: line.token, lease, expires: now + ttl * 1000 });
          return { status: 201, answer: { token: line.token, lease, ttl, ...(limit > 1 ? { limit } : {}) } };
        },
        (status, answer) => {
          if (status !== 201) {
            schedule(clock.now + 5 + rnd() * 40, loop);
            return;
          }
          const held = answer as { token: number; lease: string };
          hold(name, held);
        },
      );
    };
    const hold = (name: number, held: { token: number; lease: string }) => {
      const stall = rnd() < 0.1;
      const renew = !stall && rnd() < 0.4;
      const wait = stall ? ttl * 1000 + 200 + rnd() * 800 : rnd() * 400;
      const release = () =>
        request(
          id,
          "release",
          name,
          "",
          { lease: held.lease },
          (line) => {
            const mine = line.holders.find((h) => h.lease === held.lease);
            if (!mine) return { status: o.broken === "stale-release" ? 204 : 410 };
            line.holders = line.holders.filter((h) => h !== mine);
            return { status: 204 };
          },
          () => schedule(clock.now + rnd() * 30, loop),
        );
      schedule(clock.now + wait, () => {
        if (!renew) return release();
        request(
          id,
          "renew",
          name,
          "/renew",
          { lease: held.lease },
          (line, now) => {
            const mine = line.holders.find((h) => h.lease === held.lease);
            if (!mine) return { status: 410 };
            mine.expires = now + ttl * 1000;
            return { status: 200, answer: { token: mine.token, lease: mine.lease, ttl } };
          },
          (status) => {
            if (status === 410) return schedule(clock.now + rnd() * 30, loop);
            schedule(clock.now + rnd() * 300, release);
          },
        );
      });
    };
    schedule(rnd() * 50, loop);
  };
  for (let i = 0; i < o.clients; i++) client(`c${i}`);
  // The admin: a force release of a random name (by token, for a semaphore) every 100–600 ms.
  const admin = () => {
    if (made >= o.ops) return;
    const name = Math.floor(rnd() * o.names);
    const target = lines[name]?.holders[0]?.token;
    const q = kind === "semaphore" ? (target === undefined ? "" : `&token=${target}`) : "";
    if (kind === "semaphore" && target === undefined) return schedule(clock.now + 100 + rnd() * 500, admin);
    request(
      "admin",
      "force",
      name,
      `?force=true${q}`,
      undefined,
      (line) => {
        const h = kind === "semaphore" ? line.holders.find((x) => x.token === target) : line.holders[0];
        if (!h) return { status: 404 };
        line.holders = line.holders.filter((x) => x !== h);
        return { status: 204 };
      },
      () => schedule(clock.now + 100 + rnd() * 500, admin),
    );
  };
  schedule(100, admin);
  while (queue.length) {
    const e = queue.shift() as (typeof queue)[number];
    clock.now = Math.max(clock.now, e.time);
    e.fn();
  }
  return history.events;
}
