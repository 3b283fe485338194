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
      // Leave a margin: one about to expire could die between keep-alive and txn.
      if (now - lease.since < (lease.grantedTtl - 1) * 1000) return lease;
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
