/**
 * A model checker for histories (history.ts): is there an order of each line's operations,
 * each taking effect at one moment between its invoke and its outcome, in which a
 * sequential lock (or semaphore of N holders) would have answered every one of them as
 * the service did? The model, per line (a lock, or a semaphore of its name):
 *
 * - a grant (acquire or redeem answered 201; or 200, an idempotent retry, the first
 *   time its grant reached anyone) needs a free place (fewer than `limit` holders) and a
 *   fencing token larger than every earlier grant's;
 * - a grant ends by its holder's release (204), a force release, or expiry; a lease lives
 *   at least its TTL from the send of the first request that may have made the grant and
 *   from each renew answered 200 (less `marginMs`), so it can expire only after that;
 * - a renew answered 200, a grant answered again (200), or an inspect that shows it: the
 *   grant still holds; a renew or release answered 410: it no longer does;
 * - a release answered 204: the caller held it until that moment, when it ended;
 * - a force release answered 204 ends the holder (the one with `token`, if given), 404:
 *   there was none; an inspect shows exactly the holders (200) or none (404);
 * - an `info` operation (unknown outcome) may or may not have happened, at any moment
 *   after it was sent: a release or force release may have ended a grant then, and an
 *   acquire or redeem may have made a grant nobody received (a "ghost", which may explain
 *   a force release or an inspect that found a holder no client knew of).
 *
 * The search is Wing & Gong's, as refined by Lowe and used by Knossos and Porcupine
 * (depth first over the next operation that may take effect, memoising what was tried),
 * run per line, with times: each operation takes effect at the earliest moment it can
 * (its send, or after the previous one, or when the expiry it needs became possible),
 * which must come before any operation still open was answered. `info` operations are
 * not in the search: they are resources a step may use (the earliest-sent unused one
 * first, as any other could only be worse), and expiry happens only when an operation
 * needs the grant gone. Grants are ordered by their tokens, so for a correct service the
 * first order tried almost always fits: the search stays linear in the history's length.
 */
import { LIVE_MARGIN_MS, type Violation } from "./check.js";
import type { InvokeValue, OpEvent, OutcomeValue } from "./history.js";

/** One operation: its invoke and its outcome, on the checker's timeline (ms). */
export interface Call {
  op: number;
  process: string;
  f: OpEvent["f"];
  kind: "lock" | "semaphore";
  name: string;
  caller?: string;
  /** When it was sent. */
  inv: number;
  /** When its outcome was known (Infinity: never). */
  done: number;
  type: "ok" | "fail" | "info";
  status?: number;
  iv: InvokeValue;
  out: OutcomeValue;
}

/** A grant some client received. */
interface GrantInfo {
  hash: string;
  token: number;
  process: string;
  /** When the first request that may have made it was sent. */
  origin: number;
  /** When it first reached a client. */
  received: number;
  ttl: number;
  /** Its lease lives at least until then (renews answered 200 included). */
  liveUntil: number;
  /** It may have ended without its holder's release from then on (expiry, or a release of unknown outcome). */
  vanishFrom: number;
}

type ModelOp =
  | { t: "grant"; g: number; call: Call }
  | { t: "live"; g: number; call: Call }
  | { t: "gone"; g: number; call: Call }
  | { t: "release"; g: number; call: Call }
  | { t: "force"; token?: number; call: Call }
  | { t: "force-none"; token?: number; call: Call }
  | { t: "inspect"; tokens: number[]; call: Call };

interface Op {
  m: ModelOp;
  inv: number;
  done: number;
}

/** A force release of unknown outcome: it may have ended its target at any moment from `inv`. */
interface ForceInfo {
  inv: number;
  token?: number;
}

interface State {
  /** Holders that clients received (grant indices), in token order. */
  holders: number[];
  maxToken: number;
  /** The earliest moment the next operation can take effect. */
  now: number;
  /** Ghost grants used (the earliest-sent first). */
  ghosts: number;
  /** Indices of force releases of unknown outcome used. */
  forced: number[];
}

export interface ModelOptions {
  /** Slack for etcd's lease timers against the checker's clock (ms). */
  marginMs?: number;
  /** Search steps per line before giving up (reported as a violation: the run proves nothing). */
  maxSteps?: number;
  /**
   * Grants (by handle hash) that something outside the service may have ended at any
   * moment from then on (ms): etcd revoking a live lease, a defect the caller has
   * attributed to etcd by the clients' records. Each may end then as well as by expiry.
   */
  mayEndFrom?: ReadonlyMap<string, number>;
}

export interface LineStats {
  line: string;
  ops: number;
  steps: number;
}

export interface ModelResult {
  violations: Violation[];
  stats: {
    /** Lines checked, operations in them (info ones included), search steps, time taken (ms). */
    lines: number;
    operations: number;
    infoOperations: number;
    steps: number;
    ms: number;
    /** The most search steps one line took. */
    slowest?: LineStats;
  };
}

/** Operations of a history, invoke and outcome paired (`info` when it never completed), per line. */
export function callsOf(events: readonly OpEvent[]): Call[] {
  const calls = new Map<number, Call>();
  // One strictly increasing timeline: events are in the order they happened, and two
  // stamped with the same millisecond still happened one after the other.
  let last = Number.NEGATIVE_INFINITY;
  for (const e of events) {
    const time = Math.max(e.time, last + 1e-6);
    last = time;
    if (e.f === "fault" || e.kind === undefined || e.name === undefined) continue;
    if (e.type === "invoke") {
      calls.set(e.op, {
        op: e.op,
        process: e.process,
        f: e.f,
        kind: e.kind,
        name: e.name,
        ...(e.caller !== undefined ? { caller: e.caller } : {}),
        inv: time,
        done: Number.POSITIVE_INFINITY,
        type: "info",
        iv: (e.value ?? {}) as InvokeValue,
        out: {},
      });
      continue;
    }
    const c = calls.get(e.op);
    if (!c) continue;
    c.done = e.type === "info" ? Number.POSITIVE_INFINITY : time;
    c.type = e.type;
    if (e.status !== undefined) c.status = e.status;
    c.out = (e.value ?? {}) as OutcomeValue;
  }
  return [...calls.values()];
}

const lineKey = (c: { kind: string; name: string }) => `${c.kind} ${c.name}`;
const secs = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(3)} s` : "never");

/** Checks every line of the history against the model. */
export function checkModel(events: readonly OpEvent[], o: ModelOptions = {}): ModelResult {
  const started = performance.now();
  const byLine = new Map<string, Call[]>();
  for (const c of callsOf(events)) {
    const list = byLine.get(lineKey(c));
    if (list) list.push(c);
    else byLine.set(lineKey(c), [c]);
  }
  const violations: Violation[] = [];
  let operations = 0;
  let infoOperations = 0;
  let steps = 0;
  let slowest: LineStats | undefined;
  for (const [line, calls] of byLine) {
    const r = checkLine(line, calls, o);
    operations += calls.length;
    infoOperations += calls.filter((c) => c.type === "info").length;
    steps += r.steps;
    if (!slowest || r.steps > slowest.steps) slowest = { line, ops: calls.length, steps: r.steps };
    violations.push(...r.violations);
  }
  return {
    violations,
    stats: {
      lines: byLine.size,
      operations,
      infoOperations,
      steps,
      ms: performance.now() - started,
      ...(slowest ? { slowest } : {}),
    },
  };
}

/** How an operation reads in a violation. */
function describeCall(c: Call): string {
  const outcome = c.type === "info" ? `unknown outcome${c.status ? ` (${c.status})` : ""}` : String(c.status);
  const token = c.out.token ?? c.iv.token;
  return `${c.process}'s ${c.f} (${outcome}${token !== undefined ? `, token ${token}` : ""}; sent ${secs(c.inv)}, answered ${secs(c.done)})`;
}

/** The model check of one line's operations. */
export function checkLine(
  line: string,
  calls: readonly Call[],
  o: ModelOptions = {},
): { violations: Violation[]; steps: number } {
  const margin = o.marginMs ?? LIVE_MARGIN_MS;
  const maxSteps = o.maxSteps ?? 2_000_000;
  const semaphore = calls[0]?.kind === "semaphore";
  let limit = semaphore ? 0 : 1;

  // Participants: the requests of one Idempotency-Key of one caller, or of one ticket.
  const ticketOwner = new Map<string, string>();
  for (const c of calls) {
    if (c.f === "acquire" && c.out.ticket) ticketOwner.set(c.out.ticket, participantOf(c, ticketOwner) as string);
  }
  const participants = new Map<string, Call[]>();
  for (const c of calls) {
    const p = participantOf(c, ticketOwner);
    if (p === undefined) continue;
    const list = participants.get(p);
    if (list) list.push(c);
    else participants.set(p, [c]);
  }

  // Grants clients received, each once, by handle.
  const grants: GrantInfo[] = [];
  const byHash = new Map<string, number>();
  const byToken = new Map<number, number>();
  const ops: Op[] = [];
  const receipts = calls
    .filter(
      (c) => (c.f === "acquire" || c.f === "redeem") && c.type === "ok" && c.out.grant && c.out.token !== undefined,
    )
    .sort((a, b) => a.done - b.done);
  for (const c of receipts) {
    if (semaphore) limit = Math.max(limit, c.out.limit ?? c.iv.limit ?? 1);
    const hash = c.out.grant as string;
    const known = byHash.get(hash);
    if (known !== undefined) {
      ops.push({ m: { t: "live", g: known, call: c }, inv: c.inv, done: c.done });
      continue;
    }
    const origin = c.status === 201 ? c.inv : originOf(c, participants.get(participantOf(c, ticketOwner) ?? "") ?? [c]);
    const g = grants.length;
    const ttlMs = (c.out.ttl ?? c.iv.ttl ?? 0) * 1000;
    grants.push({
      hash,
      token: c.out.token as number,
      process: c.process,
      origin,
      received: c.done,
      ttl: ttlMs,
      liveUntil: origin + ttlMs - margin,
      vanishFrom: origin + ttlMs - margin,
    });
    byHash.set(hash, g);
    if (!byToken.has(c.out.token as number)) byToken.set(c.out.token as number, g);
    ops.push({ m: { t: "grant", g, call: c }, inv: origin, done: c.done });
  }
  if (limit === 0) limit = Math.max(1, ...calls.map((c) => c.iv.limit ?? 1));

  const ghosts: number[] = [];
  const forceInfos: ForceInfo[] = [];
  const infoReleases: Call[] = [];
  for (const c of calls) {
    const g = c.iv.grant === undefined ? undefined : byHash.get(c.iv.grant);
    switch (c.f) {
      case "acquire":
      case "redeem":
        if (c.type === "info") ghosts.push(c.inv);
        break;
      case "renew":
        if (g === undefined) break;
        if (c.status === 200) {
          ops.push({ m: { t: "live", g, call: c }, inv: c.inv, done: c.done });
          const grant = grants[g] as GrantInfo;
          grant.liveUntil = Math.max(grant.liveUntil, c.inv + grant.ttl - margin);
        } else if (c.status === 410) ops.push({ m: { t: "gone", g, call: c }, inv: c.inv, done: c.done });
        break;
      case "release":
        if (g === undefined) break;
        if (c.status === 204) ops.push({ m: { t: "release", g, call: c }, inv: c.inv, done: c.done });
        else if (c.status === 410) ops.push({ m: { t: "gone", g, call: c }, inv: c.inv, done: c.done });
        else if (c.type === "info") infoReleases.push(c);
        break;
      case "force": {
        const token = c.iv.token;
        const t = token === undefined ? {} : { token };
        if (c.status === 204) ops.push({ m: { t: "force", ...t, call: c }, inv: c.inv, done: c.done });
        else if (c.status === 404) ops.push({ m: { t: "force-none", ...t, call: c }, inv: c.inv, done: c.done });
        else if (c.type === "info") forceInfos.push({ inv: c.inv, ...t });
        break;
      }
      case "inspect":
        if (c.status === 200 || c.status === 404) {
          const tokens = (c.out.holders ?? []).map((h) => h.token);
          ops.push({ m: { t: "inspect", tokens, call: c }, inv: c.inv, done: c.done });
        }
        break;
    }
  }
  for (const g of grants) g.vanishFrom = Math.min(g.liveUntil, o.mayEndFrom?.get(g.hash) ?? Number.POSITIVE_INFINITY);
  for (const c of infoReleases) {
    const g = grants[byHash.get(c.iv.grant as string) as number] as GrantInfo;
    g.vanishFrom = Math.min(g.vanishFrom, c.inv);
  }
  // Leaving the line with a ticket that became a grant (its redeem's answer lost, or a
  // redeem racing the leave) ends that grant: from the leave's send on, it may be gone.
  const byTicket = new Map<string, number>();
  for (const c of receipts) {
    if (c.f === "redeem" && c.iv.ticket) byTicket.set(c.iv.ticket, byHash.get(c.out.grant as string) as number);
  }
  for (const c of calls) {
    const g = c.f === "leave" && c.iv.ticket ? byTicket.get(c.iv.ticket) : undefined;
    if (g === undefined || c.type === "fail") continue;
    const grant = grants[g] as GrantInfo;
    grant.vanishFrom = Math.min(grant.vanishFrom, c.inv);
  }
  ghosts.sort((a, b) => a - b);
  forceInfos.sort((a, b) => a.inv - b.inv);

  const search = new Search(line, limit, grants, byToken, ghosts, forceInfos, ops, maxSteps);
  return search.run();
}

/** Which participant a call is of: one caller's Idempotency-Key, or one ticket. */
function participantOf(c: Call, ticketOwner: ReadonlyMap<string, string>): string | undefined {
  if (c.f === "acquire") return c.iv.key ? `key ${c.caller ?? ""} ${c.iv.key}` : `op ${c.op}`;
  if ((c.f === "redeem" || c.f === "leave") && c.iv.ticket)
    return ticketOwner.get(c.iv.ticket) ?? `ticket ${c.iv.ticket}`;
  return undefined;
}

/**
 * When the first request that may have made the grant `r` received again (a 200) was
 * sent: the earliest of its participant's requests back from `r` whose outcome is
 * unknown or that returned this grant, up to one that proved no grant existed (a 4xx,
 * or a 202: still in line).
 */
function originOf(r: Call, participant: readonly Call[]): number {
  const before = participant.filter((c) => c.inv <= r.inv).sort((a, b) => b.inv - a.inv);
  let origin = r.inv;
  for (const c of before) {
    if (c === r) continue;
    const same = c.type === "ok" && c.out.grant === r.out.grant;
    if (c.type !== "info" && !same) break;
    origin = Math.min(origin, c.inv);
  }
  return origin;
}

/** A doubly linked entry of the search: an operation's call or return. */
interface Entry {
  op: number;
  call: boolean;
  time: number;
  match?: Entry;
  prev?: Entry;
  next?: Entry;
}

interface Frame {
  entry: Entry;
  before: State;
  alts: State[];
  at: number;
}

class Search {
  private readonly zobrist: [number, number][];
  private readonly cache = new Set<string>();
  private h1 = 0;
  private h2 = 0;
  private steps = 0;
  /** What could not come next at the deepest point the search reached. */
  private deepest = -1;
  private stuck: string[] = [];

  constructor(
    private readonly line: string,
    private readonly limit: number,
    private readonly grants: readonly GrantInfo[],
    private readonly byToken: ReadonlyMap<number, number>,
    private readonly ghosts: readonly number[],
    private readonly forceInfos: readonly ForceInfo[],
    private readonly ops: readonly Op[],
    private readonly maxSteps: number,
  ) {
    this.zobrist = ops.map(() => [(Math.random() * 2 ** 32) >>> 0, (Math.random() * 2 ** 32) >>> 0]);
  }

  run(): { violations: Violation[]; steps: number } {
    const { ops } = this;
    if (ops.length === 0) return { violations: [], steps: 0 };
    const entries: Entry[] = [];
    for (const [i, op] of ops.entries()) {
      const call: Entry = { op: i, call: true, time: op.inv };
      const ret: Entry = { op: i, call: false, time: op.done, match: call };
      call.match = ret;
      entries.push(call, ret);
    }
    // Calls before returns at one moment: such operations are concurrent.
    entries.sort((a, b) => a.time - b.time || (a.call === b.call ? a.op - b.op : a.call ? -1 : 1));
    const head: Entry = { op: -1, call: false, time: Number.NEGATIVE_INFINITY };
    let prev = head;
    for (const e of entries) {
      prev.next = e;
      e.prev = prev;
      prev = e;
    }

    let state: State = {
      holders: [],
      maxToken: Number.NEGATIVE_INFINITY,
      now: Number.NEGATIVE_INFINITY,
      ghosts: 0,
      forced: [],
    };
    const stack: Frame[] = [];
    let entry = head.next as Entry | undefined;
    while (head.next) {
      if (++this.steps > this.maxSteps) {
        return {
          violations: [
            {
              invariant: "linearizability",
              detail: `${this.line}: the model check gave up after ${this.maxSteps} search steps (${ops.length} operations, ${stack.length} placed): this run proves nothing about it`,
            },
          ],
          steps: this.steps,
        };
      }
      if (!entry) break; // not reached: a return always comes before the list ends
      if (entry.call) {
        const op = ops[entry.op] as Op;
        const next = this.step(state, op, this.deadline(entry), stack.length);
        const frame: Frame = { entry, before: state, alts: next, at: -1 };
        if (this.advance(frame)) {
          stack.push(frame);
          state = frame.alts[frame.at] as State;
          entry = head.next;
        } else entry = entry.next;
        continue;
      }
      // An operation was answered before it could take effect: undo the last step.
      const top = stack.pop();
      if (!top) return { violations: [this.violation()], steps: this.steps };
      this.unplace(top.entry);
      state = top.before;
      if (this.advance(top)) {
        stack.push(top);
        state = top.alts[top.at] as State;
        entry = head.next;
      } else entry = top.entry.next;
    }
    return { violations: [], steps: this.steps };
  }

  /** Takes the frame's next alternative not tried in this situation; places its operation. */
  private advance(frame: Frame): boolean {
    const [z1, z2] = this.zobrist[frame.entry.op] as [number, number];
    const h1 = this.h1 ^ z1;
    const h2 = this.h2 ^ z2;
    for (let i = frame.at + 1; i < frame.alts.length; i++) {
      const s = frame.alts[i] as State;
      const key = `${h1}:${h2}|${s.holders.join(",")}|${s.maxToken}|${s.now}|${s.ghosts}|${s.forced.join(",")}`;
      if (this.cache.has(key)) continue;
      this.cache.add(key);
      frame.at = i;
      this.h1 = h1;
      this.h2 = h2;
      this.lift(frame.entry);
      return true;
    }
    return false;
  }

  private lift(call: Entry) {
    const ret = call.match as Entry;
    (call.prev as Entry).next = call.next;
    if (call.next) call.next.prev = call.prev;
    (ret.prev as Entry).next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  }

  private unplace(call: Entry) {
    const ret = call.match as Entry;
    (ret.prev as Entry).next = ret;
    if (ret.next) ret.next.prev = ret;
    (call.prev as Entry).next = call;
    if (call.next) call.next.prev = call;
    const [z1, z2] = this.zobrist[call.op] as [number, number];
    this.h1 ^= z1;
    this.h2 ^= z2;
  }

  /** The latest moment the call's operation can take effect: before it, or any other open operation, was answered. */
  private deadline(call: Entry): number {
    let latest = (call.match as Entry).time;
    for (let e = call.next; e; e = e.next) {
      if (!e.call && e !== call.match) {
        latest = Math.min(latest, e.time);
        break;
      }
    }
    return latest;
  }

  /** Notes why an operation could not come next, at the deepest point reached. */
  private cannot(op: Op, depth: number, why: () => string): State[] {
    if (depth > this.deepest) {
      this.deepest = depth;
      this.stuck = [];
    }
    if (depth === this.deepest && this.stuck.length < 4) this.stuck.push(`${describeCall(op.m.call)}: ${why()}`);
    return [];
  }

  private violation(): Violation {
    return {
      invariant: "linearizability",
      line: this.line,
      detail: `${this.line}: no order of its ${this.ops.length} operations fits the model: ${Math.max(0, this.deepest)} fit, then none of these could come next: ${this.stuck.join("; ")}`,
    };
  }

  private holder(g: number): string {
    const x = this.grants[g] as GrantInfo;
    return `${x.process}'s grant (token ${x.token}, provably live until ${secs(x.liveUntil)})`;
  }

  /**
   * The ways `g` may have ended by `deadline` without its holder's release: its lease
   * expired (or a release of unknown outcome acted), or a force release of unknown
   * outcome ended it. Each way sets `now` to when it can have happened.
   */
  private removals(s: State, g: number, deadline: number): State[] {
    const out: State[] = [];
    const without = s.holders.filter((h) => h !== g);
    const natural = Math.max(s.now, (this.grants[g] as GrantInfo).vanishFrom);
    if (natural <= deadline) out.push({ ...s, holders: without, now: natural });
    const token = (this.grants[g] as GrantInfo).token;
    const oldest = s.holders[0] === g;
    for (const [i, f] of this.forceInfos.entries()) {
      if (s.forced.includes(i)) continue;
      const at = Math.max(s.now, f.inv);
      if (at > deadline || at >= natural) break;
      if (f.token === undefined ? this.limit === 1 || oldest : f.token === token) {
        out.push({ ...s, holders: without, now: at, forced: [...s.forced, i].sort((a, b) => a - b) });
        break;
      }
    }
    return out;
  }

  /** Removes each of `gs` in turn, every combination of ways. */
  private removeAll(states: State[], gs: readonly number[], deadline: number): State[] {
    let out = states;
    for (const g of gs) out = out.flatMap((s) => this.removals(s, g, deadline));
    return out;
  }

  /** A ghost grant (made for a request whose answer nobody received) available by `deadline`. */
  private ghost(s: State, deadline: number, consume: boolean): State | undefined {
    const i = consume ? s.ghosts : 0;
    const at = this.ghosts[i];
    if (at === undefined || Math.max(s.now, at) > deadline) return undefined;
    return consume ? { ...s, ghosts: i + 1, now: Math.max(s.now, at) } : s;
  }

  /** The states after `op` takes effect next (none: it cannot). */
  private step(s0: State, op: Op, deadline: number, depth: number): State[] {
    const point = Math.max(s0.now, op.inv);
    if (point > deadline)
      return this.cannot(
        op,
        depth,
        () => `it cannot take effect before another operation's answer at ${secs(deadline)}`,
      );
    const s: State = { ...s0, now: point };
    const at = (states: State[]) => states.map((x) => ({ ...x, now: Math.max(x.now, op.inv) }));
    const m = op.m;
    switch (m.t) {
      case "grant": {
        const g = this.grants[m.g] as GrantInfo;
        if (g.token <= s.maxToken) {
          return this.cannot(op, depth, () => `its token is not larger than the last grant's (${s.maxToken})`);
        }
        let room = [s];
        if (s.holders.length >= this.limit) {
          room = s.holders.flatMap((h) => this.removals(s, h, deadline));
          if (room.length === 0) {
            const held = () => s.holders.map((h) => this.holder(h)).join(", ");
            return this.cannot(
              op,
              depth,
              () =>
                `${this.limit === 1 ? "the lock was held" : `all ${this.limit} places were held`} by ${held()}, with no release, force release or expiry possible before ${secs(deadline)}`,
            );
          }
        }
        return at(room).map((x) => ({ ...x, holders: [...x.holders, m.g], maxToken: g.token }));
      }
      case "live":
        if (s.holders.includes(m.g)) return [s];
        return this.cannot(op, depth, () => `${this.holder(m.g)} had ended (or was not yet made)`);
      case "release":
        if (s.holders.includes(m.g)) return [{ ...s, holders: s.holders.filter((h) => h !== m.g) }];
        return this.cannot(
          op,
          depth,
          () => `a 204 says the caller held it until then, but ${this.holder(m.g)} had ended (or was not yet made)`,
        );
      case "gone": {
        if (!s.holders.includes(m.g)) return [s];
        const ended = at(this.removals(s, m.g, deadline));
        if (ended.length) return ended;
        return this.cannot(
          op,
          depth,
          () =>
            `${this.holder(m.g)} still held, with no release, force release or expiry possible before ${secs(deadline)}`,
        );
      }
      case "force": {
        const target = m.token === undefined ? s.holders[0] : this.byToken.get(m.token);
        if (target !== undefined && s.holders.includes(target))
          return [{ ...s, holders: s.holders.filter((h) => h !== target) }];
        if (target !== undefined && m.token !== undefined) {
          return this.cannot(op, depth, () => `${this.holder(target)} had ended (or was not yet made)`);
        }
        // A holder nobody received: a grant made for a request whose answer was lost.
        let room = [s];
        if (s.holders.length >= this.limit) room = s.holders.flatMap((h) => this.removals(s, h, deadline));
        const ended = room.flatMap((x) => this.ghost(x, deadline, true) ?? []);
        if (ended.length) return ended;
        return this.cannot(
          op,
          depth,
          () =>
            "a 204 says it ended a holder, but nobody held it (and no request of unknown outcome can have made a grant by then)",
        );
      }
      case "force-none": {
        const targets =
          m.token === undefined ? s.holders : s.holders.filter((h) => this.byToken.get(m.token as number) === h);
        if (targets.length === 0) return [s];
        const ended = at(this.removeAll([s], targets, deadline));
        if (ended.length) return ended;
        return this.cannot(
          op,
          depth,
          () => `a 404 says nobody held it, but ${targets.map((h) => this.holder(h)).join(", ")} still held`,
        );
      }
      case "inspect": {
        const known = m.tokens.map((t) => this.byToken.get(t));
        const unknown = known.filter((g) => g === undefined).length;
        const missing = known.find((g) => g !== undefined && !s.holders.includes(g));
        if (missing !== undefined)
          return this.cannot(
            op,
            depth,
            () => `it shows ${this.holder(missing)}, which had ended (or was not yet made)`,
          );
        if (unknown > 0 && (m.tokens.length > this.limit || !this.ghost(s, deadline, false))) {
          return this.cannot(
            op,
            depth,
            () => "it shows a holder no client received, and no request of unknown outcome can have made it",
          );
        }
        const hidden = s.holders.filter((h) => !known.includes(h));
        if (hidden.length === 0) return [s];
        const ended = at(this.removeAll([s], hidden, deadline));
        if (ended.length) return ended;
        return this.cannot(
          op,
          depth,
          () => `it does not show ${hidden.map((h) => this.holder(h)).join(", ")}, which still held`,
        );
      }
    }
  }
}
