/**
 * What this instance remembers about locks between requests. Only ever a hint: every
 * decision made from it is checked by etcd (a compare in a txn) or only picks which
 * etcd call to make first, so a stale or missing entry costs a round trip, never safety.
 * Both maps are bounded; the oldest entry goes first.
 */

import { KeyCounts } from "./key-counts.js";

function setBounded<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) {
    // The oldest eighth goes at once, not the oldest entry alone: a Map keeps deleted
    // entries in place until it next grows or rehashes, and finding its first live entry
    // walks over every one deleted before it. One at a time, a full map of 10,000 cost
    // about 9 µs per insert (every grant makes one: its keys are unique); this, well
    // under 1 µs.
    let evict = Math.max(1, max >> 3);
    for (const oldest of map.keys()) {
      map.delete(oldest);
      if (--evict === 0) break;
    }
  }
  map.set(key, value);
}

/**
 * Keys this instance recently found held (forgetting after the holder's TTL): an
 * acquire of one of them reads before it writes.
 */
export class SeenHeld {
  private readonly until = new Map<string, number>();
  /** Joins of each key's line in flight here (bounded by the requests in flight). */
  private readonly joins = new KeyCounts();

  constructor(private readonly max = 10_000) {}

  /**
   * A join of `key`'s line is being sent; call the result once it is answered. Meanwhile
   * the line counts as likely held: a crowd arriving at once (1,000 waiters on 10 names)
   * would otherwise send a blind join each, each on a lease of its own (granted for it,
   * pooled when the join fails, and revoked unused seconds later), where one read each
   * sends them straight to wait.
   */
  joining(key: string): () => void {
    this.joins.add(key);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.joins.remove(key);
    };
  }

  note(key: string, ttlSeconds = 30): void {
    setBounded(this.until, key, Date.now() + ttlSeconds * 1000, this.max);
  }

  likely(key: string): boolean {
    if (this.joins.has(key)) return true;
    const until = this.until.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.until.delete(key);
    return false;
  }

  forget(key: string): void {
    this.until.delete(key);
  }
}

/** A grant this instance made, as written to etcd. */
/** A lock-delay marker: its key, and the lease made for it alone. */
export interface MarkerRef {
  key: string;
  lease: bigint;
}

export interface OwnGrant {
  lease: bigint;
  nonce: string;
  /** The revision the grant was written at: the key's mod revision until someone else writes it. */
  revision: number;
  /** TTL etcd granted. */
  ttl: number;
  /** Grant time (ms since the epoch). */
  at: number;
  /** A grant with a lock-delay: its marker (deleted with a clean release). */
  marker?: MarkerRef;
}

/**
 * Grants this instance made, so that their release skips the read: a handle that
 * matches the entry's lease and nonce is released with `Txn(if mod_revision(key) ==
 * revision then Delete)`. An unchanged mod revision proves the key still holds the
 * value this instance wrote with that nonce (any later write, a claim included, moves
 * it, and a delete plus re-create gives a new revision), so the nonce check made here
 * holds in etcd too.
 */
export class OwnGrants {
  private readonly grants = new Map<string, OwnGrant>();

  constructor(private readonly max = 10_000) {}

  add(key: string, grant: OwnGrant): void {
    setBounded(this.grants, key, grant, this.max);
  }

  /**
   * The grant of `key` was written again at `revision` by its holder (a new value, same
   * nonce): its entry follows, if the handle matches it. A new entry, not a changed one:
   * whoever holds the old one (an abandoned answer's clean-up) keeps its old revision.
   */
  moved(key: string, handle: { lease: bigint; nonce: string }, revision: number): void {
    const grant = this.grants.get(key);
    if (grant?.lease !== handle.lease || grant.nonce !== handle.nonce) return;
    this.grants.set(key, { ...grant, revision });
  }

  /** Removes and returns the entry for `key` when the handle matches it. */
  take(key: string, handle: { lease: bigint; nonce: string }): OwnGrant | undefined {
    const grant = this.grants.get(key);
    if (grant?.lease !== handle.lease || grant.nonce !== handle.nonce) return undefined;
    this.grants.delete(key);
    return grant;
  }
}

/**
 * The latest expiry this instance reported for each grant, so that its `expiresAt`
 * never moves backwards between calls. etcd reports a lease's remaining TTL in whole
 * seconds, rounded down: an estimate made from it (send time + remaining) is a lower
 * bound of the expiry, up to a second below the one an acquire or renew reported
 * (send time + the full TTL). Every estimate is a lower bound of the same expiry (a
 * renewal only moves it later), so the largest one seen is both the tightest and still
 * never later than the lease's real expiry.
 */
export class ReportedExpiry {
  private readonly latest = new Map<string, { revision: number; at: number }>();

  constructor(private readonly max = 10_000) {}

  /**
   * ISO time of the expiry of the grant of `key` made at `revision`, from a call sent at
   * `sentAt` (ms) that found `remaining` seconds left.
   */
  estimate(key: string, revision: number, sentAt: number, remaining: number): string {
    let at = sentAt + remaining * 1000;
    const known = this.latest.get(key);
    if (known?.revision === revision && known.at > at) at = known.at;
    else setBounded(this.latest, key, { revision, at }, this.max);
    return new Date(at).toISOString();
  }

  /** The grant of `key` ended: nothing more is reported for it. */
  forget(key: string): void {
    this.latest.delete(key);
  }
}
