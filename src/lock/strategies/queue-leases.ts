import type { EtcdClient } from "../../etcd/types.js";
import { randomLeaseId } from "../names.js";

/**
 * The short lease a waiting request's place in line is bound to. While the request
 * waits, something keeps the lease alive; when the request or its instance dies, the
 * keep-alives stop and etcd deletes the place within the lease's TTL, so a line never
 * stalls behind a waiter that is gone.
 */
export const QUEUE_LEASE_TTL = 5;
/** How long an instance keeps its waiters' session lease once nobody waits (for the next waiter). */
export const SESSION_IDLE_MS = 10_000;
const KEEPALIVE_MS = (QUEUE_LEASE_TTL * 1000) / 4;

export interface QueueLease {
  id: bigint;
  /** The waiter is done with the lease: its key is gone, or now holds on a grant's lease. */
  done(): void;
  /** A key of the waiter's may have been left on the lease: see that it goes anyway. */
  forsake(): void;
}

export interface QueueLeases {
  take(): Promise<QueueLease>;
  /** Shutdown: ends the lease(s) (this instance's waiters have been let go). */
  close(): Promise<void>;
}

function keepAlive(etcd: EtcdClient, id: bigint, onGone: () => void): ReturnType<typeof setInterval> {
  const timer = setInterval(() => {
    etcd.leaseKeepAliveOnce(id).then(
      (ttl) => ttl <= 0 && onGone(),
      () => {}, // etcd unreachable now: the next tick tries again, within the TTL
    );
  }, KEEPALIVE_MS);
  (timer as { unref?: () => void }).unref?.();
  return timer;
}

interface Session {
  id: bigint;
  ready: Promise<void>;
  users: number;
  timer?: ReturnType<typeof setInterval>;
  idle?: ReturnType<typeof setTimeout>;
}

/**
 * Node: one lease for all of this instance's waiters (etcd's "session"): one keep-alive
 * per interval however many wait, instead of one per waiter. A waiter whose key may
 * have been left behind (its delete's outcome is unknown) retires the session: new
 * waiters get a new one, and the old lease, no longer kept alive, takes the stray key
 * (and its other waiters' keys, who then join again) with it within its TTL.
 */
export class SessionLease implements QueueLeases {
  private current: Session | undefined;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly idleMs = SESSION_IDLE_MS,
  ) {}

  async take(): Promise<QueueLease> {
    let s = this.current;
    if (!s) {
      const id = randomLeaseId();
      const created: Session = {
        id,
        users: 0,
        ready: this.etcd.leaseGrant(id, QUEUE_LEASE_TTL).then(() => {
          created.timer = keepAlive(this.etcd, id, () => this.retire(created));
        }),
      };
      created.ready.catch(() => this.retire(created));
      s = created;
      this.current = s;
    }
    clearTimeout(s.idle);
    s.users++;
    const session = s;
    try {
      await session.ready;
    } catch (err) {
      session.users--;
      throw err;
    }
    let returned = false;
    const leave = (retire: boolean) => {
      if (returned) return;
      returned = true;
      session.users--;
      if (retire) this.retire(session);
      else if (session.users === 0 && this.current === session) this.idleOut(session);
    };
    return { id: session.id, done: () => leave(false), forsake: () => leave(true) };
  }

  private idleOut(s: Session): void {
    clearTimeout(s.idle);
    s.idle = setTimeout(() => {
      if (s.users > 0 || this.current !== s) return;
      this.retire(s);
      // No waiter is left on it: revoking only removes keys whose deletes failed.
      this.etcd.leaseRevoke(s.id).catch(() => {});
    }, this.idleMs);
    (s.idle as { unref?: () => void }).unref?.();
  }

  private retire(s: Session): void {
    if (this.current === s) this.current = undefined;
    clearInterval(s.timer);
    clearTimeout(s.idle);
  }

  async close(): Promise<void> {
    const s = this.current;
    if (!s) return;
    this.retire(s);
    await s.ready.then(
      () => this.etcd.leaseRevoke(s.id),
      () => false,
    );
  }
}

/**
 * Workers: a lease per waiter, kept alive by the waiting request itself (I/O one
 * request started cannot be awaited by another there) and revoked when it is done:
 * only that waiter's key was ever bound to it.
 */
export class LeasePerWaiter implements QueueLeases {
  constructor(private readonly etcd: EtcdClient) {}

  async take(): Promise<QueueLease> {
    const id = randomLeaseId();
    await this.etcd.leaseGrant(id, QUEUE_LEASE_TTL);
    const timer = keepAlive(this.etcd, id, () => clearInterval(timer));
    const end = () => {
      clearInterval(timer);
      this.etcd.leaseRevoke(id).catch(() => {});
    };
    return { id, done: end, forsake: end };
  }

  async close(): Promise<void> {}
}
