/**
 * The invariants of lines (fair queues, tickets, semaphores), checked over two
 * histories: what the clients saw (`ParticipantRecord`s, stamped from the checker's one
 * counter like every other record), and what etcd recorded (every change under the
 * service's prefix, read back from etcd's own history after the load, so nothing the
 * service did in etcd escapes it).
 *
 * A participant is one place in a line as a client made it: a waiting acquire (with its
 * retries under one Idempotency-Key) or a ticket (with its redeems). Each sends an
 * `owner` of its own, which etcd stores with its key: that is how an etcd key is tied
 * to the client that made it, without knowing how the service names its keys.
 */
import { byLine, type GrantRecord, lineOf, type Violation } from "./check.js";

export type LineKind = "lock" | "semaphore";

/** One request a participant made. */
export interface LineCall {
  op: "acquire" | "redeem" | "leave";
  sentSeq: number;
  doneSeq: number;
  /** HTTP status; 0 = the connection failed, -1 = no answer within the hang limit. */
  status: number;
  /** A 202's `position`. */
  position?: number;
  /** When it was answered (run clock, ms): to place it among etcd's revisions when looking into a violation. */
  doneAt?: number;
}

export interface ParticipantRecord {
  kind?: "semaphore";
  name: string;
  /** Unique per participant: sent as `owner`, stored by etcd with the participant's key. */
  owner: string;
  client: string;
  calls: LineCall[];
  /** Asked for a ticket (`queue: true`). */
  queue?: true;
  /** When its first 202 arrived: its place in line existed before then (tickets only). */
  queuedSeq?: number;
  /** The grant it received (201, or 200 for a retry or a ticket redeemed again). */
  grant?: { token: number; receivedSeq: number };
  /** The client hung up on one of its requests on purpose (a vanishing waiter). */
  hungUp?: boolean;
}

/** One change under the prefix, as etcd's watch history reports it. */
export interface EtcdEvent {
  type: "put" | "delete";
  key: string;
  /** The revision of the change (a put's mod revision, a delete's revision). */
  revision: number;
  /** Puts only. */
  createRevision?: number;
  value?: string;
}

export interface LinesResult {
  violations: Violation[];
  /** Figures for the report. */
  stats: {
    /** Changes under the prefix that etcd recorded. */
    events: number;
    /** Grants etcd recorded (a participant that became a holder). */
    etcdGrants: number;
    /** Of those, made while someone waited in the line. */
    handoffs: number;
    /** Most holders any line had at once, per line. */
    maxHolders: Record<string, number>;
    /** Most waiters a line had when one of its grants was made. */
    maxWaiting: number;
    /** Grants etcd made that no client received, to participants whose requests' outcome was unknown. */
    unreceivedAmbiguous: number;
  };
}

/**
 * The participant's requests may have had an effect its client never saw: one failed
 * without an answer, answered 5xx (a 503 may come after etcd applied a write), or was
 * abandoned by its client.
 */
export function ambiguous(p: ParticipantRecord): boolean {
  return p.hungUp === true || p.calls.some((c) => c.status <= 0 || c.status >= 500);
}

/**
 * When the participant was told it is no longer in line (a waiting acquire refused with
 * 409, a ticket lost with 410, a leave answered 204); `undefined` while it may be.
 */
export function leftSeq(p: ParticipantRecord): number | undefined {
  const left = p.calls.filter(
    (c) =>
      (c.op === "acquire" && c.status === 409) ||
      (c.op === "redeem" && c.status === 410) ||
      (c.op === "leave" && (c.status === 204 || c.status === 410)),
  );
  return left.length ? Math.min(...left.map((c) => c.doneSeq)) : undefined;
}

/**
 * What the clients saw:
 * - served-after-leaving: no request a participant sent after it was told it left the
 *   line (409 after a wait, 410, or its leave's 204) is answered with a grant;
 * - queue-order: a participant never receives a grant while a ticket that was in line
 *   before the participant's first request is still waiting. The ticket was in line when
 *   its 202 arrived (a ticket never joins again: once out, it stays out), and is still
 *   waiting when a redeem sent after that grant arrived is answered 202; the grant was
 *   made before it arrived, so at that moment the earlier ticket waited ahead of it.
 *   (Holders wait for nobody: in a line, only those ahead are served first.)
 */
export function checkParticipants(participants: readonly ParticipantRecord[]): Violation[] {
  const out: Violation[] = [];
  for (const p of participants) {
    const left = leftSeq(p);
    if (left === undefined) continue;
    const served = p.calls.find((c) => c.sentSeq > left && (c.status === 200 || c.status === 201));
    if (served) {
      out.push({
        invariant: "served-after-leaving",
        detail: `${lineOf(p)}: ${p.owner} (${p.client}) was told it left the line, then a ${served.op} it sent after that was answered ${served.status}`,
      });
    }
  }
  for (const [line, list] of byLine(participants)) {
    const tickets = list.filter((p): p is ParticipantRecord & { queuedSeq: number } => p.queuedSeq !== undefined);
    for (const b of list) {
      if (!b.grant) continue;
      const firstSent = Math.min(...b.calls.map((c) => c.sentSeq));
      const granted = b.grant.receivedSeq;
      for (const a of tickets) {
        if (a === b || a.queuedSeq >= firstSent) continue;
        const waiting = a.calls.find((c) => c.op === "redeem" && c.status === 202 && c.sentSeq > granted);
        if (waiting) {
          out.push({
            invariant: "queue-order",
            detail: `${line}: ${b.owner} (${b.client}) was granted token ${b.grant.token} while ${a.owner} (${a.client}), in line since before ${b.owner} asked, still waited (a redeem sent after that grant arrived was answered 202, position ${waiting.position})`,
          });
        }
      }
    }
  }
  return out;
}

/** A participant key as the checker reads it: where it is, and what its value says. */
interface Key {
  key: string;
  create: number;
  holds: boolean;
  owner?: string;
}

/** The line a key of the service's layout belongs to: `<prefix><lock/|sem/><name>#<id>`. */
export function lineOfKey(prefix: string, key: string): { kind: LineKind; name: string } | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const dir = rest.startsWith("lock/") ? "lock/" : rest.startsWith("sem/") ? "sem/" : undefined;
  if (!dir) return undefined;
  const sep = rest.indexOf("#", dir.length);
  if (sep < 0) return undefined;
  return { kind: dir === "lock/" ? "lock" : "semaphore", name: rest.slice(dir.length, sep) };
}

/** The fields of a participant's value the checker needs: whether it holds (or is a ticket), and its owner. */
export function readValue(value: string | undefined): { holds: boolean; ticket?: boolean; owner?: string } {
  try {
    const v = JSON.parse(value ?? "") as { h?: unknown; t?: unknown; owner?: unknown };
    return {
      holds: v.h === 1,
      ...(v.t === 1 ? { ticket: true } : {}),
      ...(typeof v.owner === "string" ? { owner: v.owner } : {}),
    };
  } catch {
    return { holds: false };
  }
}

/**
 * What etcd recorded, replayed one revision (one txn) at a time, per line:
 * - over-limit: never more holders than the line's limit (etcd deletes a key when its
 *   lease ends, so its keys are exactly the live holders and waiters);
 * - queue-order: a participant becomes a holder only when nobody who joined before it
 *   (a smaller create revision) still waits: grants in join order, across instances;
 * - token-order: so the tokens (create revisions) of a line's grants increase in the
 *   order etcd made them;
 * - unique-token: no two participants of a line share a create revision (their tokens);
 * - unreceived-grant: every participant etcd made a holder received that grant, unless
 *   one of its requests had an outcome its client never saw (see `ambiguous`): a grant
 *   nobody received holds a place nobody uses, and one made of a participant already
 *   told it left (refused, lost, left) was made after it left;
 * - phantom-grant: every grant a client received is a holder etcd recorded, with that
 *   token and that participant's owner.
 */
export function checkEtcdHistory(
  events: readonly EtcdEvent[],
  o: {
    prefix: string;
    /** A line's limit, by `lineOf` (locks: 1). */
    limits: ReadonlyMap<string, number>;
    participants: readonly ParticipantRecord[];
    grants: readonly GrantRecord[];
    /** Revisions a read saw and when (run clock, ms): places etcd's changes in time in a report. */
    seen?: readonly { revision: number; at: number }[];
  },
): LinesResult {
  const out: Violation[] = [];
  const stats: LinesResult["stats"] = {
    events: events.length,
    etcdGrants: 0,
    handoffs: 0,
    maxHolders: {},
    maxWaiting: 0,
    unreceivedAmbiguous: 0,
  };
  const byOwner = new Map<string, ParticipantRecord>();
  for (const p of o.participants) byOwner.set(`${lineOf(p)}\0${p.owner}`, p);
  /** Holders etcd made that their participants never received, and had no reason to miss. */
  const unreceived: { line: string; key: string; create: number; revision: number; p: ParticipantRecord }[] = [];
  /** Holders etcd recorded: line, token (create revision) → their owners. */
  const etcdHolders = new Map<string, Set<string | undefined>>();

  const lines = new Map<string, { keys: Map<string, Key>; maxGranted: number; granted: Set<number> }>();
  const sorted = [...events].sort((a, b) => a.revision - b.revision);
  for (let i = 0; i < sorted.length; ) {
    const revision = (sorted[i] as EtcdEvent).revision;
    const changed = new Map<string, Key[]>();
    for (; i < sorted.length && (sorted[i] as EtcdEvent).revision === revision; i++) {
      const e = sorted[i] as EtcdEvent;
      const where = lineOfKey(o.prefix, e.key);
      if (!where) continue;
      const line = lineOf(where);
      let state = lines.get(line);
      if (!state) {
        state = { keys: new Map(), maxGranted: 0, granted: new Set() };
        lines.set(line, state);
      }
      if (e.type === "delete") {
        state.keys.delete(e.key);
        continue;
      }
      const before = state.keys.get(e.key);
      const v = readValue(e.value);
      const k: Key = {
        key: e.key,
        create: e.createRevision ?? e.revision,
        holds: v.holds,
        ...(v.owner !== undefined ? { owner: v.owner } : {}),
      };
      state.keys.set(e.key, k);
      if (before?.holds && !k.holds && before.create === k.create) {
        out.push({
          invariant: "queue-order",
          detail: `${line}: at revision ${revision} the holder with token ${k.create} was put back in line`,
        });
      }
      // A new holder: a participant that joined holding, or a waiter whose turn came. (A
      // holder's value put again, to mark it claimed, is not a new grant.)
      if (k.holds && !(before?.holds && before.create === k.create)) {
        const list = changed.get(line) ?? [];
        list.push(k);
        changed.set(line, list);
      }
    }

    for (const [line, granted] of changed) {
      const state = lines.get(line);
      if (!state) continue;
      const keys = [...state.keys.values()];
      const limit = o.limits.get(line) ?? 1;
      const holders = keys.filter((k) => k.holds);
      const waiting = keys.filter((k) => !k.holds);
      stats.maxHolders[line] = Math.max(stats.maxHolders[line] ?? 0, holders.length);
      stats.maxWaiting = Math.max(stats.maxWaiting, waiting.length);
      if (holders.length > limit) {
        out.push({
          invariant: "over-limit",
          detail: `${line} (limit ${limit}): ${holders.length} holders at revision ${revision} (tokens ${holders
            .map((k) => k.create)
            .sort((a, b) => a - b)
            .join(", ")})`,
        });
      }
      for (const k of granted.sort((a, b) => a.create - b.create)) {
        stats.etcdGrants++;
        const owners = etcdHolders.get(`${line}\0${k.create}`) ?? new Set();
        etcdHolders.set(`${line}\0${k.create}`, owners.add(k.owner));
        const ahead = waiting.filter((w) => w.create < k.create);
        if (waiting.some((w) => w.create > k.create)) stats.handoffs++;
        if (ahead.length > 0) {
          out.push({
            invariant: "queue-order",
            detail: `${line}: token ${k.create} (${k.owner ?? "?"}) was granted at revision ${revision} while ${ahead.length} participant(s) who joined before it still waited (${ahead
              .slice(0, 3)
              .map((w) => `joined at ${w.create}, ${w.owner ?? "?"}`)
              .join("; ")})`,
          });
        }
        if (k.create < state.maxGranted) {
          out.push({
            invariant: "token-order",
            detail: `${line}: token ${k.create} (${k.owner ?? "?"}) was granted at revision ${revision}, after token ${state.maxGranted}`,
          });
        }
        state.maxGranted = Math.max(state.maxGranted, k.create);
        // Participants that joined in one txn share a create revision: their token.
        const twin = keys.find((x) => x !== k && x.create === k.create);
        if (twin || state.granted.has(k.create)) {
          out.push({
            invariant: "unique-token",
            detail: twin
              ? `${line}: ${k.owner ?? "?"} and ${twin.owner ?? "?"} joined the line in one txn (revision ${k.create}), so they share a token; ${k.owner ?? "?"} was granted it at revision ${revision}`
              : `${line}: token ${k.create} was granted again at revision ${revision} (${k.owner ?? "?"})`,
          });
        }
        state.granted.add(k.create);
        const p = k.owner === undefined ? undefined : byOwner.get(`${line}\0${k.owner}`);
        if (!p || p.grant?.token === k.create) continue;
        if (ambiguous(p)) {
          stats.unreceivedAmbiguous++;
          continue;
        }
        unreceived.push({ line, key: k.key, create: k.create, revision, p });
      }
    }
  }

  // What became of each grant nobody received, and when, as far as the checker can place it.
  const at = (revision: number) => {
    const t = o.seen?.find((x) => x.revision >= revision)?.at;
    return t === undefined ? "" : ` (seen by ${(t / 1000).toFixed(1)} s)`;
  };
  for (const u of unreceived) {
    const gone = sorted.find((e) => e.key === u.key && e.revision > u.revision && e.type === "delete");
    const again = sorted.find((e) => e.key === u.key && e.type === "put" && (e.createRevision ?? 0) > u.create);
    const calls = u.p.calls
      .map((c) => `${c.op} ${c.status}${c.doneAt === undefined ? "" : ` at ${(c.doneAt / 1000).toFixed(1)} s`}`)
      .join(", ");
    out.push({
      invariant: "unreceived-grant",
      detail: `${u.line}: etcd made ${u.p.owner} (${u.p.client}) a holder (token ${u.create}) at revision ${u.revision}${at(u.revision)}${gone ? `, deleted at revision ${gone.revision}` : ""}${again ? `; it joined the line again at revision ${again.createRevision}` : ""}; its client never received that grant (${calls})`,
    });
  }

  for (const [line, list] of byLine(o.grants)) {
    for (const g of list) {
      if (g.owner === undefined) continue;
      if (!etcdHolders.get(`${line}\0${g.token}`)?.has(g.owner)) {
        out.push({
          invariant: "phantom-grant",
          detail: `${line}: ${g.client} (${g.owner}) received token ${g.token}, which etcd never recorded as a holder of ${g.owner}`,
        });
      }
    }
  }
  return { violations: out, stats };
}
