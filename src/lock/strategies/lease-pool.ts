import { type EtcdClient, LeaseExistsError } from "../../etcd/types.js";
import { randomLeaseId } from "../names.js";

/**
 * Leases this instance can reuse for new grants. A lease whose lock was released (its
 * key deleted by leasehold, the lease still alive) is put here; the next acquire with
 * the same TTL takes it, resets it with one keep-alive (answered by the etcd leader
 * alone, no raft write) and binds the new key to it, instead of spending a LeaseGrant
 * write. Each grant still gets a fresh random nonce in its handle, so a former
 * holder's handle never matches a later grant on a reused lease.
 *
 * A pooled lease keeps counting down. One nobody reuses within the idle window is
 * handed back by `sweep` for revoking, so unused leases do not linger in etcd for up
 * to their whole TTL (which may be a day).
 */
export interface PooledLease {
  id: bigint;
  /** TTL etcd granted the lease with (what a keep-alive resets it to). */
  grantedTtl: number;
  /** When it was last known alive with a full TTL (ms). */
  since: number;
}

/**
 * Whether a lease last known alive with its full TTL at `since` is worth binding a new
 * grant to at `now`: a margin of a second, because one about to expire could die between
 * the keep-alive sent with the grant's txn and the txn.
 */
export function hasTimeLeft(since: number, grantedTtl: number, now = Date.now()): boolean {
  return now - since < (grantedTtl - 1) * 1000;
}

export class LeasePool {
  /** Pooled leases by granted TTL, most recently released last. */
  private readonly free = new Map<number, PooledLease[]>();
  /** Requested TTL → TTL etcd grants for it (etcd raises values below its minimum). */
  private readonly grantedFor = new Map<number, number>();

  constructor(
    private readonly maxPerTtl = 1024,
    /** How long a lease may wait in the pool for reuse (ms). */
    private readonly idleMs = 3_000,
  ) {}

  /** Learns what etcd granted for a requested TTL. */
  granted(requested: number, granted: number): void {
    this.grantedFor.set(requested, granted);
  }

  take(requested: number, now = Date.now()): PooledLease | undefined {
    const list = this.free.get(this.grantedFor.get(requested) ?? requested);
    while (list && list.length > 0) {
      const lease = list.pop() as PooledLease;
      if (hasTimeLeft(lease.since, lease.grantedTtl, now)) return lease;
    }
    return undefined;
  }

  /** Pools a lease; returns one pushed out by the size bound (the caller revokes it). */
  put(lease: PooledLease): PooledLease | undefined {
    let list = this.free.get(lease.grantedTtl);
    if (!list) {
      list = [];
      this.free.set(lease.grantedTtl, list);
    }
    const evicted = list.length >= this.maxPerTtl ? list.shift() : undefined;
    list.push(lease);
    return evicted;
  }

  /**
   * Removes leases idle longer than the window and returns those that may still be
   * alive (to revoke); ones whose TTL has surely run out are just dropped.
   */
  sweep(now = Date.now()): PooledLease[] {
    const stale: PooledLease[] = [];
    for (const [ttl, list] of this.free) {
      const keep = list.filter((l) => now - l.since <= this.idleMs);
      for (const l of list) if (now - l.since > this.idleMs && now - l.since < l.grantedTtl * 1000) stale.push(l);
      if (keep.length > 0) this.free.set(ttl, keep);
      else this.free.delete(ttl);
    }
    return stale;
  }

  /** Empties the pool (shutdown); returns every lease for revoking. */
  drain(): PooledLease[] {
    const all = [...this.free.values()].flat();
    this.free.clear();
    return all;
  }

  get size(): number {
    let n = 0;
    for (const list of this.free.values()) n += list.length;
    return n;
  }
}

/** A lease a new grant will be bound to. */
export interface GrantLease {
  id: bigint;
  /** TTL etcd granted (what a keep-alive resets it to). */
  grantedTtl: number;
  /** Taken from the pool: still counting down until the keep-alive sent with the txn resets it. */
  pooled: boolean;
}

/**
 * Where the engine gets a lease for each grant and what it does with one whose grant
 * ended. Every lease handed back here must be bound to no key: see the callers.
 */
export interface LeaseSource {
  /**
   * A lease for a grant of `ttl`: a pooled one, or (`fresh`, or none pooled) a new one.
   * A pooled lease's ID may still be in a former holder's handle, and a renew with that
   * handle that read the key before its release keeps the lease alive after it (etcd has
   * no conditional keep-alive): harmless for most grants (one outlives its TTL by that
   * stall), but a grant with a lock-delay must not outlive its marker, so it takes a fresh one.
   */
  take(ttl: number, o?: { fresh?: boolean }): Promise<GrantLease>;
  /**
   * The lease's key was deleted by a txn guarded by its grant's revision (or never
   * created): the lease is bound to nothing and may serve another grant.
   */
  reusable(lease: { id: bigint; grantedTtl: number }, since?: number): void;
  /**
   * Revokes a lease bound to no other grant (one whose create txn's outcome is unknown:
   * it was never given to anyone else, and revoking it removes the key if the txn made one).
   */
  discard(id: bigint): void;
  /** Revokes pooled leases nobody reused in time (cheap; called on every acquire). */
  sweep(): void;
  /** Revokes every pooled lease (shutdown), waiting at most for the calls in flight. */
  close(): Promise<void>;
}

/**
 * Leases from a `LeasePool`, else `LeaseGrant` with a random ID. Reusing a released
 * lease saves a LeaseGrant and a LeaseRevoke (two raft writes) per lock cycle: measured
 * in BENCHMARKS.md, it is most of why a cycle through the service costs fewer etcd
 * writes than a client doing grant, txn and revoke itself.
 */
export class PooledLeases implements LeaseSource {
  private nextSweep = 0;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly pool = new LeasePool(),
  ) {}

  async take(ttl: number, o: { fresh?: boolean } = {}): Promise<GrantLease> {
    const pooled = o.fresh ? undefined : this.pool.take(ttl);
    if (pooled) return { id: pooled.id, grantedTtl: pooled.grantedTtl, pooled: true };
    let id = randomLeaseId();
    for (let attempt = 1; ; attempt++) {
      try {
        const grantedTtl = await this.etcd.leaseGrant(id, ttl);
        this.pool.granted(ttl, grantedTtl);
        return { id, grantedTtl, pooled: false };
      } catch (err) {
        // 2^63 IDs make a collision next to impossible; still, never reuse a taken one.
        if (!(err instanceof LeaseExistsError) || attempt >= 3) throw err;
        id = randomLeaseId();
      }
    }
  }

  reusable(lease: { id: bigint; grantedTtl: number }, since = Date.now()): void {
    const evicted = this.pool.put({ id: lease.id, grantedTtl: lease.grantedTtl, since });
    if (evicted) this.discard(evicted.id);
  }

  discard(id: bigint): void {
    this.etcd.leaseRevoke(id).catch(() => {});
  }

  sweep(): void {
    const now = Date.now();
    if (now < this.nextSweep) return;
    this.nextSweep = now + 250;
    for (const lease of this.pool.sweep(now)) this.discard(lease.id);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.pool.drain().map((l) => this.etcd.leaseRevoke(l.id)));
  }
}
