/**
 * The line workloads: semaphore users, a fair queue of waiters on one lock, and ticket
 * holders, each place in line recorded as a `ParticipantRecord` for check-lines.ts.
 */
import { randomUUID } from "node:crypto";
import { QUEUE_LEASE_TTL } from "../../src/lock/strategies/queue-leases.js";
import { lineOf } from "./check.js";
import { type LineCall, lineOfKey, type ParticipantRecord, readValue } from "./check-lines.js";
import { type EtcdCluster, memberStatuses } from "./etcd-cluster.js";
import { type Answer, basePath, type Client, type Held, pick, type Run, sleep, uniform } from "./run.js";
import { hold } from "./workload.js";

/** A line the workloads use: a lock (limit 1) or a semaphore of `limit`. */
export interface LineSpec {
  kind?: "semaphore";
  name: string;
  limit: number;
}

export interface LineLoad {
  until: number;
  /** Grants' TTL (s). */
  ttl: number;
  /** Tickets' TTL (s). */
  ticketTtl: number;
  /** The semaphores the semaphore users take permits of. */
  semaphores: readonly LineSpec[];
  /** The lock whose line the waiters join. */
  queue: LineSpec;
  /** The lines tickets are taken in. */
  ticketLines: readonly LineSpec[];
  /** Share of grants whose holder vanishes (no renew, no release). */
  vanishRate: number;
  /** Share of waiting acquires whose client hangs up mid-wait. */
  hangUpRate: number;
  /** Per redeem: share of tickets that leave the line (DELETE ?ticket=), and that are abandoned. */
  leaveRate: number;
  abandonRate: number;
  /** Checks that each participant's key leaves etcd in time once its client is done with it. */
  gone: GoneWatch;
  counts: Record<string, number>;
}

const bump = (counts: Record<string, number>, what: string) => {
  counts[what] = (counts[what] ?? 0) + 1;
};

/** One place in a line as a client makes it: its requests are recorded for the checker. */
class Place {
  readonly record: ParticipantRecord;
  readonly path: string;

  constructor(
    readonly client: Client,
    readonly line: LineSpec,
    n: number,
  ) {
    this.record = {
      ...(line.kind ? { kind: line.kind } : {}),
      name: line.name,
      owner: `${client.id}.${n}`,
      client: client.id,
      calls: [],
    };
    this.path = `${basePath(line)}/${line.name}`;
    client.run.participants.push(this.record);
  }

  /** One request of this participant; `undefined` when the client hung up on it. */
  async call(
    op: LineCall["op"],
    method: string,
    path: string,
    body: Record<string, unknown> | undefined,
    opts: { waitMs?: number; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Answer | undefined> {
    let a: Answer;
    try {
      a = await this.client.send(op, method, path, body, opts);
    } catch (err) {
      if (!opts.signal?.aborted) throw err;
      this.record.hungUp = true;
      return undefined;
    }
    const position = a.status === 202 ? (a.body?.position as number | undefined) : undefined;
    this.record.calls.push({
      op,
      sentSeq: a.sentSeq,
      doneSeq: a.doneSeq,
      status: a.status,
      ...(position !== undefined ? { position } : {}),
      doneAt: Math.round(this.client.run.now()),
    });
    return a;
  }

  /** Records the grant `a` carries; `first`/`at` as for `Client.granted`. */
  granted(a: Answer, first: { seq: number; at: number }): Held {
    const held = this.client.granted(this.line.name, a, first, {
      ...(this.line.kind ? { kind: this.line.kind } : {}),
      owner: this.record.owner,
    });
    this.record.grant ??= { token: held.record.token, receivedSeq: held.record.receivedSeq };
    return held;
  }
}

type Joined = Held | { answer: Answer } | "hung-up";

/**
 * Joins the line (POST, with `wait`, or `queue: true` for a ticket), retried with the
 * same Idempotency-Key on the next instance after a 503 or a dropped connection for up
 * to 2 s. `hangUpAfterMs`: the client hangs up that long after each send.
 */
async function join(
  place: Place,
  o: { ttl: number; wait: number; queue?: { ticketTtl: number }; hangUpAfterMs?: number },
): Promise<Joined> {
  const run = place.client.run;
  const key = randomUUID();
  const until = run.now() + 2_000;
  const body = {
    ttl: o.ttl,
    owner: place.record.owner,
    ...(place.line.kind ? { limit: place.line.limit } : {}),
    ...(o.wait > 0 ? { wait: o.wait } : {}),
    ...(o.queue ? { queue: true, ticketTtl: o.queue.ticketTtl } : {}),
  };
  if (o.queue) place.record.queue = true;
  let first: { seq: number; at: number } | undefined;
  for (;;) {
    const at = run.now();
    const caller = new AbortController();
    const timer = o.hangUpAfterMs === undefined ? undefined : setTimeout(() => caller.abort(), o.hangUpAfterMs);
    const a = await place.call("acquire", "POST", place.path, body, {
      waitMs: o.wait * 1000,
      headers: { "idempotency-key": key },
      signal: caller.signal,
    });
    clearTimeout(timer);
    if (!a) return "hung-up";
    first ??= { seq: a.sentSeq, at };
    if (a.status === 201 || a.status === 200) return place.granted(a, first);
    if ((a.status > 0 && a.status !== 503) || run.now() >= until) return { answer: a };
    await sleep(uniform(50, 150));
  }
}

/** After a refusal or a failure: a short pause before the next try. */
const backOff = (a: { answer: Answer }) => sleep(a.answer.status === 409 ? uniform(20, 120) : uniform(100, 300));

/** How often etcd's lessor looks for leases past their TTL (its revoke loop). */
const LESSOR_CHECK_MS = 500;

/**
 * How long a participant's key may stay in etcd once its client is done with it: a
 * waiter's leaves at once, or with its queue lease at worst (a delete whose outcome was
 * unknown); a grant's (released, or its holder vanished) with its lease; a ticket's
 * with its own lease, `ticketTtl` after the last request that kept it.
 */
function departed(
  place: Place,
  o: LineLoad,
  how: "waiter" | "holder" | "ticket",
  why: string,
  since: number,
  create?: number,
) {
  const limitMs =
    (how === "waiter" ? Math.max(QUEUE_LEASE_TTL, o.ttl) : how === "holder" ? o.ttl : o.ticketTtl) * 1_000;
  o.gone.expect(place.record, {
    since,
    // A lease ends its TTL after its last keep-alive, but etcd's lessor looks for expired
    // leases only every 500 ms and then revokes them through raft, slower right after a
    // leader change: a waiter's key left to its queue lease once went 6,056–6,301 ms after
    // a 409 that came just after a member kill (limit 6,000). A key that never goes still
    // fails the check, once it is 2 s past this.
    limitMs: limitMs + 1_000 + LESSOR_CHECK_MS,
    what: why,
    ...(create !== undefined ? { create } : {}),
  });
}

/** A holder whose hold ended (released, lost, or vanished): its key goes with its lease at the latest. */
function heldUntil(place: Place, held: Held, o: LineLoad, why: string, since: number) {
  departed(
    place,
    held.record.ttl > o.ttl ? { ...o, ttl: held.record.ttl } : o,
    "holder",
    why,
    since,
    held.record.token,
  );
}

/** Per client: a counter for unique owners. */
const serial = new WeakMap<Client, number>();
const nextPlace = (client: Client, line: LineSpec) => {
  const n = (serial.get(client) ?? 0) + 1;
  serial.set(client, n);
  return new Place(client, line, n);
};

/**
 * A waiting acquire of `line` (sometimes hung up on), then a hold like a lock user's
 * (sometimes renewed, sometimes stalled past the TTL), or a vanished holder.
 */
async function waitAndHold(client: Client, line: LineSpec, wait: number, o: LineLoad) {
  const place = nextPlace(client, line);
  const hangUp = wait >= 0.5 && Math.random() < o.hangUpRate;
  const got = await join(place, {
    ttl: o.ttl,
    wait,
    ...(hangUp ? { hangUpAfterMs: uniform(100, wait * 1_000 - 100) } : {}),
  });
  const run = client.run;
  if (got === "hung-up") {
    bump(o.counts, "waiters hung up");
    departed(place, o, "waiter", "hung-up waiters", run.now());
    return;
  }
  if (!("record" in got)) {
    departed(place, o, "waiter", `waiters after a ${describe(got.answer.status)}`, run.now());
    await backOff(got);
    return;
  }
  if (Math.random() < o.vanishRate) {
    bump(o.counts, "holders vanished");
    heldUntil(place, got, o, "vanished holders", got.record.receivedAt);
    return;
  }
  await hold(client, got, o.ttl * 1_000, Math.random() < 0.1);
  heldUntil(place, got, o, "holders after their hold", run.now());
}

/** A status as the notes name it. */
export const describe = (status: number) =>
  status === 0 ? "lost connection" : status === -1 ? "hang" : String(status);

/** A semaphore user: permits of a few semaphores, with and without `wait`. */
export async function semaphoreUser(client: Client, o: LineLoad): Promise<void> {
  while (client.run.now() < o.until) {
    const wait = Math.random() < 0.6 ? Math.round(uniform(0.3, 2.5) * 10) / 10 : 0;
    await waitAndHold(client, pick(o.semaphores), wait, o);
  }
}

/** A waiter in one lock's line: every acquire waits (1–3 s), holds are short so the line moves. */
export async function queueWaiter(client: Client, o: LineLoad): Promise<void> {
  while (client.run.now() < o.until) {
    await waitAndHold(client, o.queue, Math.round(uniform(1, 3) * 10) / 10, o);
  }
}

/**
 * A caller that can't wait long in one request: takes a ticket (`queue: true`), comes back
 * with it until granted (201; 202 keeps the place), holds and releases; some leave the
 * line (and some of those try the ticket once more: it must be refused), some abandon it.
 */
export async function ticketHolder(client: Client, o: LineLoad): Promise<void> {
  while (client.run.now() < o.until) {
    const line = pick(o.ticketLines);
    const place = nextPlace(client, line);
    const got = await join(place, {
      ttl: o.ttl,
      wait: Math.random() < 0.2 ? 0.5 : 0,
      queue: { ticketTtl: o.ticketTtl },
    });
    if (got === "hung-up") continue;
    if ("record" in got) {
      await hold(client, got, o.ttl * 1_000, false);
      heldUntil(place, got, o, "holders after their hold", client.run.now());
      continue;
    }
    if (got.answer.status !== 202) {
      departed(place, o, "ticket", `tickets after a ${describe(got.answer.status)}`, client.run.now());
      await backOff(got);
      continue;
    }
    bump(o.counts, "tickets taken");
    place.record.queuedSeq = got.answer.doneSeq;
    const held = await redeemUntilGranted(place, got.answer.body.ticket as string, o, got.answer);
    if (!held) continue;
    await hold(client, held, o.ttl * 1_000, false);
    heldUntil(place, held, o, "holders after their hold", client.run.now());
  }
}

/** Redeems a ticket until it is granted; `undefined` when it left the line instead. */
async function redeemUntilGranted(place: Place, ticket: string, o: LineLoad, taken: Answer): Promise<Held | undefined> {
  const run = place.client.run;
  const ticketMs = o.ticketTtl * 1_000;
  const leavePath = `${place.path}?ticket=${ticket}`;
  let lastDoneAt = run.now();
  let lastDoneSeq = taken.doneSeq;
  /** When the first redeem since the last 202 was sent: the grant's lease was taken after. */
  let since: { seq: number; at: number } | undefined;
  for (;;) {
    const r = Math.random();
    // At the end of the load everyone still in line leaves, so the line empties.
    if (run.now() >= o.until || r < o.leaveRate) {
      const a = await place.call("leave", "DELETE", leavePath, undefined);
      bump(o.counts, `leaves answered ${a?.status}`);
      if (a?.status === 204 && Math.random() < 0.5) {
        // The ticket is no longer in line: a redeem must not be granted.
        const again = await place.call("redeem", "POST", place.path, { ticket });
        bump(o.counts, `redeems after leaving answered ${again?.status}`);
      }
      departed(place, o, "ticket", "tickets after leaving", run.now());
      return undefined;
    }
    if (r < o.leaveRate + o.abandonRate) {
      bump(o.counts, "tickets abandoned");
      departed(place, o, "ticket", "abandoned tickets", lastDoneAt);
      return undefined;
    }
    // Come back well within the ticket's TTL, counted from the last answer.
    await sleep(uniform(100, ticketMs * 0.4) - (run.now() - lastDoneAt));
    const wait = Math.random() < 0.4 ? Math.round(uniform(0.2, 1.5) * 10) / 10 : 0;
    const at = run.now();
    const a = await place.call(
      "redeem",
      "POST",
      place.path,
      { ticket, ...(wait > 0 ? { wait } : {}) },
      {
        waitMs: wait * 1_000,
      },
    );
    if (!a) return undefined; // not reached: redeems are never hung up on
    since ??= { seq: a.sentSeq, at };
    lastDoneAt = run.now();
    bump(o.counts, `redeems answered ${a.status}`);
    if (a.status === 202) {
      since = undefined;
      lastDoneSeq = a.doneSeq;
    } else if (a.status === 201 || a.status === 200) {
      // Token order is reckoned from the ticket's first request (when it joined).
      const first = place.record.calls[0];
      return place.granted(a, { seq: first?.sentSeq ?? lastDoneSeq, at: since.at });
    } else if (a.status === 410 || (a.status > 0 && a.status !== 503)) {
      if (a.status !== 410) {
        run.fail(`${lineOf(place.record)}: a redeem of a ticket was answered ${a.status} ${JSON.stringify(a.body)}`);
      }
      departed(place, o, "ticket", `tickets after a ${a.status}`, run.now());
      return undefined;
    }
  }
}

/**
 * Checks that each participant's key leaves etcd in time once its client is done with
 * it: polls the prefix (one range read every 100 ms) until each expected key is gone.
 * While etcd is down nothing can go, and etcd extends every lease when a leader is
 * elected: a fault meanwhile moves the deadline to its end plus an election timeout, and
 * an election seen after the client was done (a member back from a kill often forces
 * one, seconds after the fault ended) starts the clock again from when it was seen.
 */
export class GoneWatch {
  private pending: {
    p: ParticipantRecord;
    line: string;
    create?: number;
    since: number;
    limitMs: number;
    what: string;
  }[] = [];
  /** Per kind of expectation: how many, and the slowest (ms past its `since`, or past a fault's end). */
  readonly slowest = new Map<string, { n: number; ms: number }>();
  /** etcd revisions and when (run clock) a read saw them: to place etcd's history in time. */
  readonly seen: { revision: number; at: number }[] = [];
  /** The highest raft term any member reported, and when (run clock) it was first seen. */
  private term = { value: 0, seenAt: 0 };

  constructor(
    private readonly run: Run,
    private readonly cluster: EtcdCluster,
    private readonly prefix: string,
  ) {}

  /** The participant's key (the incarnation `create`, if given) must be gone `limitMs` after `since`. */
  expect(p: ParticipantRecord, o: { create?: number; since: number; limitMs: number; what: string }) {
    this.pending.push({ p, line: lineOf(p), ...o });
  }

  /**
   * When the clock of an expectation starts: `since`, the end of a fault meanwhile (+1 s),
   * or an election seen since (every lease got its whole TTL again then).
   */
  private startsAt(since: number, now: number): number {
    let at = this.term.seenAt > since ? this.term.seenAt : since;
    for (const f of this.run.faults) {
      if (f.start <= now && (f.end ?? Number.POSITIVE_INFINITY) >= since) {
        at = Math.max(at, (f.end ?? Number.POSITIVE_INFINITY) + 1_000);
      }
    }
    return at;
  }

  /** Reads the live members' raft terms: a higher one means a leader was elected since the last look. */
  private async noteElections(): Promise<void> {
    const terms = (await memberStatuses(this.cluster)).map((s) => (s === "down" ? 0 : Number(s?.raftTerm ?? 0)));
    const highest = Math.max(0, ...terms);
    if (highest > this.term.value) {
      // The first look sets the baseline; only later rises are elections during the run.
      this.term = { value: highest, seenAt: this.term.value === 0 ? 0 : this.run.now() };
    }
  }

  /** Polls until `done()` and nothing is pending. */
  async loop(done: () => boolean): Promise<void> {
    while (!done() || this.pending.length > 0) {
      await sleep(100);
      // Every poll, so that an election is dated when it happened, not when a key was next expected.
      await this.noteElections();
      if (this.pending.length === 0) continue;
      let read: Awaited<ReturnType<EtcdCluster["entries"]>>;
      try {
        read = await this.cluster.entries(this.prefix);
      } catch {
        continue;
      }
      const now = this.run.now();
      this.seen.push({ revision: read.revision, at: now });
      const keys = read.kvs.map((e) => {
        const where = lineOfKey(this.prefix, e.key);
        return { line: where && lineOf(where), create: e.createRevision, owner: readValue(e.value).owner };
      });
      const present = (x: (typeof this.pending)[number]) =>
        keys.some(
          (k) => (x.create === undefined || k.create === x.create) && k.line === x.line && k.owner === x.p.owner,
        );
      const saw = (p: ParticipantRecord) => p.calls.map((c) => `${c.op} ${c.status}`).join(", ") || "nothing";
      this.pending = this.pending.filter((x) => {
        const late = now - this.startsAt(x.since, now);
        if (present(x)) {
          if (late <= x.limitMs + 2_000) return true;
          this.run.fail(
            `${x.line}: ${x.p.owner}'s key still in etcd ${Math.round(now - x.since)} ms after its client was done with it (${x.what}, within ${x.limitMs} ms; its client saw ${saw(x.p)}; revision ${read.revision})`,
          );
          return false;
        }
        const s = this.slowest.get(x.what) ?? { n: 0, ms: 0 };
        this.slowest.set(x.what, { n: s.n + 1, ms: Math.max(s.ms, late) });
        if (late > x.limitMs) {
          this.run.fail(
            `${x.line}: ${x.p.owner}'s key went ${Math.round(late)} ms after its client was done with it (${x.what}, within ${x.limitMs} ms; its client saw ${saw(x.p)})`,
          );
        }
        return false;
      });
    }
  }
}
