/**
 * The history the checker's clients record, and the invariants checked over it.
 *
 * Time is the checker's own: every event gets a sequence number from one counter in one
 * (single-threaded) process, so "A happened before B" is exact, and milliseconds from
 * `performance.now()` are kept for durations.
 */

import { secretHash } from "./history.js";

/** One grant a client received (201, or 200 for an idempotent retry of its own acquire). */
export interface GrantRecord {
  name: string;
  token: number;
  lease: string;
  client: string;
  /** When the client sent its (first) acquire for this grant. */
  requestedSeq: number;
  /** When the grant arrived; the client writes to the fence in the same step. */
  receivedSeq: number;
  receivedAt: number;
  ttl: number;
  /** When the release that answered 204 was sent; absent when no release succeeded. */
  releaseSentSeq?: number;
  /** Which API key received it (scenarios with auth on). */
  caller?: string;
  /** When (run clock, ms) the client sent its (first) acquire: the lease lives at least `ttl` from then. */
  requestedAt?: number;
  /** The holder's renews and releases of this grant. */
  calls?: CallRecord[];
  /** When the holder sent its first release of this grant, whatever the answer. */
  releaseFirstSentSeq?: number;
  /** Semaphores only (absent: a lock): a semaphore's line is not the lock's of the same name. */
  kind?: "semaphore";
  /** How many may hold at once (absent: 1, a lock). */
  limit?: number;
  /** The `owner` its acquire sent: ties the grant to its participant (see check-lines.ts). */
  owner?: string;
}

/** One renew or release of a grant: a renew's 200 proves the lease lives `ttl` from `sentAt`. */
export interface CallRecord {
  op: "renew" | "release";
  sentSeq: number;
  sentAt: number;
  doneSeq: number;
  doneAt: number;
  status: number;
}

/** One admin force release (`DELETE /locks/{name}?force=true`); `status` 0 or -1: no answer. */
export interface ForceRecord {
  name: string;
  /** Semaphores only (absent: a lock). */
  kind?: "semaphore";
  /** The holder's token it named (`?token=`), if any. */
  token?: number;
  sentSeq: number;
  doneSeq: number;
  status: number;
}

/** One write to the fenced resource. */
export interface WriteRecord {
  name: string;
  token: number;
  client: string;
  seq: number;
  /** `receivedSeq` of the writer's grant. */
  grantReceivedSeq: number;
  accepted: boolean;
  /** Made after a deliberate stall past the TTL. */
  afterStall: boolean;
}

/**
 * The fenced resource: per name, the highest token it has seen; a write is accepted iff
 * its token is at least that. Lives in the checker's process, so writes are instant.
 */
export class Fence {
  private readonly highest = new Map<string, number>();
  readonly writes: WriteRecord[] = [];

  write(w: Omit<WriteRecord, "accepted">): boolean {
    const top = this.highest.get(w.name) ?? Number.NEGATIVE_INFINITY;
    const accepted = w.token >= top;
    if (accepted) this.highest.set(w.name, w.token);
    this.writes.push({ ...w, accepted });
    return accepted;
  }
}

export interface Violation {
  invariant:
    | "unique-token"
    | "token-order"
    | "mutual-exclusion"
    | "stale-write-accepted"
    | "handle-shared"
    | "forced-clean-hold"
    | "lost-while-live"
    | "over-limit"
    | "queue-order"
    | "served-after-leaving"
    | "unreceived-grant"
    | "phantom-grant"
    | "observer-gap"
    | "observer-duplicate"
    | "observer-older-token"
    | "observer-reset"
    | "lost-append"
    | "lost-update"
    | "refused-append-present"
    | "duplicate-element"
    | "phantom-element"
    | "stale-state-write"
    | "state-token-order"
    | "stale-write-acknowledged"
    | "linearizability";
  detail: string;
  /**
   * lost-while-live: the span (run clock, ms) in which the grant must have ended, after
   * its last proof of life (the send of its acquire or of its last renew answered 200)
   * and before the answer that showed it gone; and the grant, by its handle's hash.
   */
  ended?: { after: number; before: number; grant: string };
  /** linearizability: the line (as the model names it) that no order fits. */
  line?: string;
}

export interface CheckResult {
  violations: Violation[];
  /** Writes made by a holder that a later grant had superseded (see `checkHistory`). */
  staleWrites: number;
  staleRejected: number;
  /** Writes rejected by the fence in all. */
  rejectedWrites: number;
}

/** Which line a record is of: a lock's is its name; a semaphore's of the same name is another. */
export const lineOf = (r: { name: string; kind?: string }): string =>
  r.kind === "semaphore" ? `semaphore ${r.name}` : r.name;

/** Records grouped by line (see `lineOf`). */
export const byLine = <T extends { name: string; kind?: string }>(items: readonly T[]): Map<string, T[]> => {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const line = lineOf(item);
    const list = out.get(line);
    if (list) list.push(item);
    else out.set(line, [item]);
  }
  return out;
};

/** Index of the first element of `sorted` (ascending by `key`) whose key is >= `value`. */
const lowerBound = <T>(sorted: readonly T[], key: (t: T) => number, value: number): number => {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(sorted[mid] as T) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};

/** Running maxima over grants in the order they were received. */
const prefixMax = (sorted: readonly GrantRecord[], value: (g: GrantRecord) => number): number[] => {
  const out: number[] = [];
  let top = Number.NEGATIVE_INFINITY;
  for (const g of sorted) {
    top = Math.max(top, value(g));
    out.push(top);
  }
  return out;
};

/**
 * Checks leasehold's promise over a history:
 * - unique-token: no token is granted twice for one name (two grants of a name with one
 *   token must be one grant: same lease). Different names may share a token: locks
 *   created in one etcd txn share its revision. A lock and a semaphore of the same name
 *   are different lines (see `lineOf`), as are their tokens;
 * - token-order: if grant A was received before grant B was requested (same name),
 *   A's token is smaller than B's;
 * - mutual-exclusion: two holds that both ended in a successful release (204) never
 *   overlap between "grant received" and "release sent";
 * - over-limit (semaphores): never more than `limit` such holds overlap, nor more than
 *   `limit` grants are provably live at once (see `lostWhileLive`);
 * - stale-write-accepted: a write is stale when, before it was made, the checker had
 *   received a grant of the same name that supersedes the writer's (a larger token, or
 *   one requested after the writer's grant arrived); every stale write must be rejected;
 * - handle-shared: a handle returned to one API key is never returned to another;
 * - forced-clean-hold: no force release answered 204 lies inside a hold whose own
 *   release then succeeded (a force-released holder is not a clean holder);
 * - lost-while-live: a grant ends only by release, force or expiry (see `lostWhileLive`).
 */
export function checkHistory(
  grants: readonly GrantRecord[],
  writes: readonly WriteRecord[],
  forces: readonly ForceRecord[] = [],
): CheckResult {
  const violations: Violation[] = [];

  const byHandle = new Map<string, GrantRecord>();
  for (const g of grants) {
    if (g.caller === undefined) continue;
    const first = byHandle.get(g.lease);
    if (!first) byHandle.set(g.lease, g);
    else if (first.caller !== g.caller) {
      violations.push({
        invariant: "handle-shared",
        detail: `${g.name}: the handle of token ${first.token} went to API key ${first.caller} (${first.client}) and to API key ${g.caller} (${g.client})`,
      });
    }
  }
  const forcesByName = byLine(forces);

  const byToken = new Map<string, GrantRecord>();
  for (const g of grants) {
    const key = `${lineOf(g)}\0${g.token}`;
    const first = byToken.get(key);
    if (!first) byToken.set(key, g);
    else if (first.lease !== g.lease) {
      violations.push({
        invariant: "unique-token",
        detail: `token ${g.token} granted to ${first.client} (${lineOf(first)}) and to ${g.client} (${lineOf(g)})`,
      });
    }
  }

  const grantsByName = new Map<string, GrantRecord[]>();
  for (const [name, list] of byLine(grants)) {
    const sorted = [...list].sort((a, b) => a.receivedSeq - b.receivedSeq);
    grantsByName.set(name, sorted);
    const maxToken = prefixMax(sorted, (g) => g.token);
    for (const b of sorted) {
      // Grants received strictly before B was requested.
      const n = lowerBound(sorted, (g) => g.receivedSeq, b.requestedSeq);
      if (n === 0 || (maxToken[n - 1] as number) < b.token) continue;
      const a = sorted.slice(0, n).find((g) => g.token >= b.token && g.lease !== b.lease);
      if (a) {
        violations.push({
          invariant: "token-order",
          detail: `${name}: token ${a.token} (${a.client}) was received before ${b.client} asked, yet ${b.client} got token ${b.token}`,
        });
      }
    }

    const limit = sorted[0]?.limit ?? 1;
    const held = sorted
      .filter((g) => g.releaseSentSeq !== undefined)
      .sort((x, y) => x.receivedSeq - y.receivedSeq) as (GrantRecord & { releaseSentSeq: number })[];
    // Earlier holds still open (not yet released) when the next one's grant arrived.
    let open: (GrantRecord & { releaseSentSeq: number })[] = [];
    for (const g of held) {
      open = open.filter((o) => o.releaseSentSeq > g.receivedSeq);
      if (open.length >= limit) {
        const others = open.map((o) => `${o.client} (token ${o.token})`).join(", ");
        const all = open.length === 1 ? "both held it and both" : "all held it at once and all";
        violations.push({
          invariant: limit === 1 ? "mutual-exclusion" : "over-limit",
          detail: `${name}${limit === 1 ? "" : ` (limit ${limit})`}: ${others} and ${g.client} (token ${g.token}) ${all} released it successfully`,
        });
      }
      open.push(g);
    }

    const nameForces = forcesByName.get(name) ?? [];
    // A force release answered 204 ended a grant between its send and its answer. Inside
    // a clean hold of a lock only that hold existed, and its own release found it intact:
    // both cannot be true. (A semaphore's force release may have ended another permit.)
    for (const g of limit === 1 ? held : []) {
      const f = nameForces.find((f) => f.status === 204 && f.sentSeq > g.receivedSeq && f.doneSeq < g.releaseSentSeq);
      if (f) {
        violations.push({
          invariant: "forced-clean-hold",
          detail: `${name}: a force release answered 204 while ${g.client} (token ${g.token}) held it, yet its release then succeeded`,
        });
      }
    }
    violations.push(...lostWhileLive(name, sorted, nameForces, limit));
  }

  let staleWrites = 0;
  let staleRejected = 0;
  let rejectedWrites = 0;
  for (const [name, list] of byLine(writes)) {
    const isStale = staleTest(grantsByName.get(name) ?? []);
    for (const w of list) {
      if (!w.accepted) rejectedWrites++;
      if (!isStale(w)) continue;
      staleWrites++;
      if (!w.accepted) staleRejected++;
      else {
        violations.push({
          invariant: "stale-write-accepted",
          detail: `${name}: ${w.client} wrote with token ${w.token}${w.afterStall ? " after a stall" : ""} after a later grant had been received, and the fence accepted it`,
        });
      }
    }
  }
  return { violations, staleWrites, staleRejected, rejectedWrites };
}

/**
 * For one line's grants in the order they arrived: whether a write made at `seq` by the
 * grant with `token` (arrived at `grantReceivedSeq`) was stale, that is whether before it
 * the checker had received a grant of the same name that supersedes the writer's (a
 * larger token, or one requested after the writer's grant arrived: it was granted, so
 * the writer's had ended). The writer's own grant has its token and was requested before
 * it arrived, so it never counts as superseding.
 */
export function staleTest(
  sorted: readonly GrantRecord[],
): (w: { seq: number; token: number; grantReceivedSeq: number }) => boolean {
  const maxToken = prefixMax(sorted, (g) => g.token);
  const maxRequested = prefixMax(sorted, (g) => g.requestedSeq);
  return (w) => {
    const n = lowerBound(sorted, (g) => g.receivedSeq, w.seq);
    return n > 0 && ((maxToken[n - 1] as number) > w.token || (maxRequested[n - 1] as number) > w.grantReceivedSeq);
  };
}

/** Slack for etcd's lease timers against the checker's clock when a lease must still live. */
export const LIVE_MARGIN_MS = 200;

/**
 * A grant ends only by its holder's release, a force release, or expiry; etcd never
 * ends a lease before its TTL (it extends them on a leader change). A lease lives at
 * least `ttl` from the send of the acquire that made it and of every renew answered 200
 * (etcd resets it after the request was sent). So while the holder has sent no release,
 * no force release of the name may have run, and that deadline has not passed, the grant
 * is provably live: another grant of the name received then, or a renew or release answered 410,
 * means something ended it that had no right to (a revoke of a lease read earlier and
 * since reused, a clean-up of the wrong key...).
 */
function lostWhileLive(
  name: string,
  sorted: readonly GrantRecord[],
  forces: readonly ForceRecord[],
  limit = 1,
): Violation[] {
  const out: Violation[] = [];
  // A force release may act any time from its send to its answer (forever, without one).
  const forcedBetween = (a: GrantRecord, beforeSeq: number) =>
    forces.some((f) => f.sentSeq < beforeSeq && (f.status <= 0 || f.status >= 500 || f.doneSeq > a.requestedSeq));
  const releasedBefore = (a: GrantRecord, seq: number) =>
    a.releaseFirstSentSeq !== undefined && a.releaseFirstSentSeq < seq;
  /** The send of the last refresh (acquire, renew answered 200) sent before `before` (run clock, ms). */
  const refreshedAt = (a: GrantRecord & { requestedAt: number }, before: number) => {
    let from = a.requestedAt;
    for (const r of a.calls ?? []) {
      if (r.op === "renew" && r.status === 200 && r.sentAt < before) from = Math.max(from, r.sentAt);
    }
    return from;
  };
  /** The lease provably lives until this (run clock, ms), from refreshes sent before `before`. */
  const liveUntil = (a: GrantRecord & { requestedAt: number }, before: number) =>
    refreshedAt(a, before) + a.ttl * 1_000 - LIVE_MARGIN_MS;
  const ended = (a: GrantRecord & { requestedAt: number }, before: number, seenAt: number) => ({
    after: refreshedAt(a, before),
    before: seenAt,
    grant: secretHash(a.lease),
  });

  for (const a of sorted) {
    if (a.requestedAt === undefined) continue;
    const withTime = a as GrantRecord & { requestedAt: number };
    for (const r of a.calls ?? []) {
      // A renew may have read the key after a release sent before its answer deleted it;
      // a release, only after an earlier release.
      const released = releasedBefore(a, r.op === "renew" ? r.doneSeq : r.sentSeq);
      if (r.status !== 410 || released || forcedBetween(a, r.doneSeq)) continue;
      const until = liveUntil(withTime, r.sentAt);
      if (r.doneAt < until) {
        out.push({
          invariant: "lost-while-live",
          detail: `${name}: ${a.client}'s ${r.op} of token ${a.token} was answered 410 ${Math.round(until - r.doneAt)} ms before its lease could expire, with no release or force release sent`,
          ended: ended(withTime, r.sentAt, r.doneAt),
        });
      }
    }
  }

  // Grants in the order received; `live` keeps those whose lease may still be provably live.
  // A new grant while `limit` others are provably live (a lock: one) means one of them
  // was ended early, or more than `limit` hold at once.
  // Only grants made before B (a smaller token) count: B's answer may arrive long after
  // B was made (a network stall), when a later grant is live and B's has already expired.
  let live: (GrantRecord & { requestedAt: number })[] = [];
  for (const b of sorted) {
    live = live.filter((a) => liveUntil(a, Number.POSITIVE_INFINITY) > b.receivedAt);
    const holding = live.filter(
      (a) =>
        a.lease !== b.lease &&
        a.token < b.token &&
        !releasedBefore(a, b.receivedSeq) &&
        !forcedBetween(a, b.receivedSeq) &&
        b.receivedAt < liveUntil(a, b.receivedAt),
    );
    if (limit === 1) {
      for (const a of holding) {
        out.push({
          invariant: "lost-while-live",
          detail: `${name}: ${b.client} got token ${b.token} ${Math.round(liveUntil(a, b.receivedAt) - b.receivedAt)} ms before ${a.client}'s grant (token ${a.token}) could expire, with no release or force release sent`,
          ended: ended(a, b.receivedAt, b.receivedAt),
        });
      }
    } else if (holding.length >= limit) {
      out.push({
        invariant: "over-limit",
        detail: `${name} (limit ${limit}): ${b.client} got token ${b.token} while ${holding.length} other grants were provably live, with no release or force release sent (${holding
          .map((a) => `${a.client} token ${a.token}, ${Math.round(liveUntil(a, b.receivedAt) - b.receivedAt)} ms left`)
          .join("; ")})`,
      });
    }
    if (b.requestedAt !== undefined) live.push(b as GrantRecord & { requestedAt: number });
  }
  return out;
}
