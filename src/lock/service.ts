import { sha256, toHex } from "../bytes.js";
import { coalescedTxns, type SingleKeyTxns, singleTxns } from "../etcd/coalesced-txns.js";
import type { EtcdClient, KeyValue } from "../etcd/types.js";
import { EtcdUnavailableError, LeaseExistsError, LeaseNotFoundError, prefixEnd } from "../etcd/types.js";
import { type Metrics, noMetrics } from "../metrics.js";
import { Problem } from "../problems.js";
import { untilDeadline } from "../timers.js";
import { LeasePool, type PooledLease } from "./lease-pool.js";
import { type OwnGrant, OwnGrants, ReportedExpiry, SeenHeld } from "./local-knowledge.js";
import { formatHandle, type Handle, parseHandle, randomLeaseId, randomNonce } from "./names.js";
import { SharedWatches } from "./shared-watches.js";

/** What acquire and renew hand to the holder. */
export interface Grant {
  name: string;
  token: number;
  lease: string;
  ttl: number;
  expiresAt: string;
  owner?: string;
}

/** What anyone may see about a held lock: no lease handle. */
export interface LockInfo {
  name: string;
  token: number;
  /** Remaining seconds. */
  ttl: number;
  expiresAt: string;
  owner?: string;
}

export interface AcquireOptions {
  ttl: number;
  owner?: string;
  /** Seconds to wait for the lock; fractions allowed. */
  wait: number;
  idempotencyKey?: string;
  /**
   * Who is calling, as a secret only that caller can present (its API key; "" when auth
   * is off). An Idempotency-Key is bound to it: another caller's key is unknown here.
   */
  caller?: string;
  /** Fires when the caller has gone away. */
  signal?: AbortSignal;
}

export interface LockServiceOptions {
  prefix: string;
  /** Cap on concurrent waiting acquires in this instance. */
  maxWaiters: number;
  /** Fires when the instance shuts down: waiters are answered with 503 at once. */
  shutdownSignal?: AbortSignal;
  metrics?: Metrics;
  /**
   * Whether one request may wait on I/O another request started (default). Then waiters
   * share one etcd watch per key and concurrent txns are coalesced into one. Off on
   * Workers, where the runtime cancels such I/O as hung.
   */
  crossRequestIo?: boolean;
}

/** The caller hung up; nobody will read the answer. */
export class CallerGoneError extends Error {
  override name = "CallerGoneError";
}

/**
 * What is stored as the lock key's value, next to the lease etcd keeps on the key.
 * Nothing in it lets a reader of etcd rebuild the holder's handle: the lease ID is
 * visible in etcd, so the handle's other half (the nonce) is stored only as a hash,
 * and an idempotent grant's nonce is derived from secrets only its caller presents.
 */
interface StoredValue {
  owner?: string;
  /** TTL etcd granted, so renewals and idempotent replays can report it. */
  ttl?: number;
  /** Grant time (ms since the epoch), for the hold-time metric. */
  at?: number;
  /** SHA-256 of the grant's nonce (the second half of its handle), hex. */
  nh?: string;
  /**
   * Idempotent grants only: a random salt. The nonce is then
   * H(caller's secret, Idempotency-Key, salt), so a retry by the same caller with the
   * same key can recompute the handle, and nobody else (a reader of etcd included) can.
   */
  s?: string;
  /** Idempotent grants only: fingerprint of the request fields a retry must repeat. */
  fp?: string;
  /** The nonce in clear, as grants written by earlier versions stored it (still honoured). */
  n?: string;
}

/** An acquire's Idempotency-Key as this caller sent it, with the fields a retry must repeat. */
interface Idempotency {
  key: string;
  caller: string;
  /** Fingerprint of (ttl, owner, wait). */
  fp: string;
}

/**
 * The lock protocol, written once against `EtcdClient` (SPEC "etcd steps"). Stateless
 * apart from a count of this instance's waiters: every fact lives in etcd.
 */
export class LockService {
  private waiters = 0;
  private readonly pool = new LeasePool();
  private nextSweep = 0;
  private readonly seenHeld = new SeenHeld();
  private readonly own = new OwnGrants();
  private readonly expiry = new ReportedExpiry();
  private readonly watches: SharedWatches;
  private readonly txns: SingleKeyTxns;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly opts: LockServiceOptions,
  ) {
    const share = opts.crossRequestIo ?? true;
    this.watches = new SharedWatches(etcd, share);
    this.txns = share ? coalescedTxns(etcd) : singleTxns(etcd);
  }

  /**
   * Revokes a lease, deleting every key bound to it. Only ever called for a lease that
   * is provably bound to no other grant: a pooled one (its key was deleted by a guarded
   * txn before it was pooled, and the pool hands each lease to one acquire at a time),
   * one whose create txn's outcome is unknown (never given to anyone else), or one whose
   * grant a guarded txn just deleted (see forceRelease). Never one read from a key.
   */
  private revoke(lease: { id: bigint } | undefined): void {
    if (lease) this.etcd.leaseRevoke(lease.id).catch(() => {});
  }

  private pooled(lease: PooledLease): void {
    this.revoke(this.pool.put(lease));
  }

  /**
   * Revokes pooled leases that waited too long for reuse. Runs on every acquire; Node
   * also calls it on a timer so an idle instance cleans up too.
   */
  sweepLeases(): void {
    const now = Date.now();
    if (now < this.nextSweep) return;
    this.nextSweep = now + 250;
    for (const lease of this.pool.sweep(now)) this.revoke(lease);
  }

  /** Revokes every pooled lease (shutdown), waiting at most for the calls in flight. */
  async close(): Promise<void> {
    await Promise.allSettled(this.pool.drain().map((l) => this.etcd.leaseRevoke(l.id)));
  }

  get activeWaiters(): number {
    return this.waiters;
  }

  key(name: string): string {
    return this.opts.prefix + name;
  }

  private get metrics(): Metrics {
    return this.opts.metrics ?? noMetrics;
  }

  async acquire(name: string, o: AcquireOptions): Promise<{ grant: Grant; replayed: boolean }> {
    const started = performance.now();
    const waited = () => {
      if (o.wait > 0) this.metrics.waited((performance.now() - started) / 1000);
    };
    try {
      const result = await this.tryAcquire(name, o);
      waited();
      this.metrics.acquire("granted", name);
      return result;
    } catch (err) {
      const held = err instanceof Problem && err.code === "lock-held";
      if (held) waited();
      this.metrics.acquire(held ? (o.wait > 0 ? "timeout" : "held") : "error", name);
      throw err;
    }
  }

  private async tryAcquire(name: string, o: AcquireOptions): Promise<{ grant: Grant; replayed: boolean }> {
    this.sweepLeases();
    const key = this.key(name);
    const deadline = Date.now() + o.wait * 1000;
    const idem: Idempotency | undefined =
      o.idempotencyKey === undefined
        ? undefined
        : { key: o.idempotencyKey, caller: o.caller ?? "", fp: await requestFingerprint(o) };
    let waiting = false;
    let lastChance = false;
    let woken = false;
    let granted = false;
    // The read before the write pays only when the lock is likely held: then it saves a
    // transaction. When this instance has no sign of that (no waiters, no holder seen
    // lately), go straight to the txn, whose failure branch reports the holder anyway.
    let read = this.watches.hasWaiters(key) || this.seenHeld.likely(key);
    try {
      for (;;) {
        try {
          if (o.signal?.aborted) throw new CallerGoneError();
          let holder: KeyValue | undefined;
          let revision = 0;
          if (read) {
            ({ kv: holder, revision } = await this.etcd.get(key));
          }
          read = true;
          if (!holder) {
            const attempt = await this.tryCreate(key, name, o, idem);
            if ("grant" in attempt) {
              granted = true;
              this.seenHeld.forget(key);
              return { grant: attempt.grant, replayed: false };
            }
            holder = attempt.holder;
            revision = attempt.revision;
            if (!holder) continue;
          }

          const stored = decodeValue(holder.value);
          this.seenHeld.note(key, stored.ttl);
          const nonce = idem && (await replayNonce(stored, idem));
          if (idem && nonce !== undefined) {
            // Same caller, same Idempotency-Key: the same request again, or a misuse of the key.
            if (stored.fp !== idem.fp) throw idempotencyMismatch();
            const before = Date.now();
            const ttl = await this.etcd.leaseTimeToLive(holder.lease);
            if (ttl.ttl > 0) {
              return { grant: this.grantOf(name, holder, stored, nonce, ttl.ttl, before), replayed: true };
            }
            continue; // our earlier grant expired this instant; its key is going away
          }

          if (Date.now() >= deadline) {
            const before = Date.now();
            const ttl = await this.etcd.leaseTimeToLive(holder.lease);
            // A lease already gone means the key went with it: look once more before saying 409.
            if (ttl.ttl < 0 && !lastChance) {
              lastChance = true;
              continue;
            }
            throw lockHeld(
              name,
              holder,
              stored,
              this.expiry.estimate(key, holder.createRevision, before, Math.max(0, ttl.ttl)),
            );
          }

          if (!waiting) {
            if (this.waiters >= this.opts.maxWaiters) {
              throw new Problem(
                "too-many-waiters",
                `this instance already has ${this.opts.maxWaiters} waiting acquires; retry later or with a shorter wait`,
                {},
                { "Retry-After": "1" },
              );
            }
            this.waiters++;
            waiting = true;
          }
          // Waiting from the revision that showed the lock held, + 1, cannot miss a release
          // that happens between that read and the watch being set up: etcd replays history.
          const stopWaiting = untilDeadline(deadline, o.signal, this.opts.shutdownSignal);
          const outcome = await this.watches
            .wait(key, revision + 1, stopWaiting.signal)
            .finally(() => stopWaiting.done());
          if (outcome === "wake") {
            woken = true;
            // Woken by a release, the lock is most likely free: straight to the txn.
            read = false;
          } else if (o.signal?.aborted) throw new CallerGoneError();
          else if (this.opts.shutdownSignal?.aborted) {
            throw new Problem(
              "backend-unavailable",
              "this instance is shutting down; retry (another instance will serve you)",
              {},
              { "Retry-After": "1" },
            );
          }
          // wake → try again (straight to the txn); deadline → the loop's last check decides.
        } catch (err) {
          // A waiter rides out a passing etcd failure (a leader election, a member
          // restart) until its deadline rather than failing at the first error.
          if (!(err instanceof EtcdUnavailableError) || !waiting || o.signal?.aborted) throw err;
          const pause = Math.min(250, deadline - Date.now());
          if (pause <= 0) throw err;
          await new Promise((r) => setTimeout(r, pause));
        }
      }
    } finally {
      if (waiting) this.waiters--;
      // Woken for a release but leaving without the lock: the next waiter gets the turn.
      if (woken && !granted) this.watches.passOn(key);
    }
  }

  /** A fresh lease with a random ID. */
  private async grantLease(ttl: number): Promise<{ id: bigint; grantedTtl: number }> {
    let id = randomLeaseId();
    for (let attempt = 1; ; attempt++) {
      try {
        const grantedTtl = await this.etcd.leaseGrant(id, ttl);
        this.pool.granted(ttl, grantedTtl);
        return { id, grantedTtl };
      } catch (err) {
        // 2^63 IDs make a collision next to impossible; still, never reuse a taken one.
        if (!(err instanceof LeaseExistsError) || attempt >= 3) throw err;
        id = randomLeaseId();
      }
    }
  }

  /**
   * Lease + create-if-absent txn. A lost race returns the (unattached) lease to the pool.
   * `{ revision: 0 }` without a holder: the pooled lease had died; try again.
   */
  private async tryCreate(
    key: string,
    name: string,
    o: AcquireOptions,
    idem: Idempotency | undefined,
  ): Promise<{ grant: Grant } | { holder?: KeyValue; revision: number }> {
    const sentAt = Date.now();
    const pooled = this.pool.take(o.ttl);
    const salt = idem && randomNonce();
    const nonce = idem && salt ? await idempotentNonce(idem, salt) : randomNonce();
    const lease = pooled ?? (await this.grantLease(o.ttl));
    const stored: StoredValue = {
      ...(o.owner !== undefined ? { owner: o.owner } : {}),
      ttl: lease.grantedTtl,
      at: sentAt,
      nh: await nonceHash(nonce),
      ...(idem && salt ? { s: salt, fp: idem.fp } : {}),
    };
    // A pooled lease is reset to its full TTL by a keep-alive sent alongside the txn, not
    // before it: the pool hands out only leases with over a second left, so the txn does
    // not race their expiry, and the acquire costs one round trip instead of two.
    const [created, renewed] = await Promise.allSettled([
      this.txns.createIfAbsent({ key, value: JSON.stringify(stored), lease: lease.id }),
      pooled ? this.etcd.leaseKeepAliveOnce(lease.id) : Promise.resolve(lease.grantedTtl),
    ]);
    const died =
      (created.status === "rejected" && created.reason instanceof LeaseNotFoundError) ||
      (renewed.status === "fulfilled" && renewed.value <= 0);
    if (died) return { revision: 0 }; // and its key, if the txn made one, went with it
    if (created.status === "rejected" || renewed.status === "rejected") {
      // Whether the txn applied (or the lease was reset) is unknown; the lease is ours
      // alone, so revoking it removes the key if it was made. Best effort: if etcd is
      // down the lease simply expires.
      this.revoke(lease);
      throw created.status === "rejected" ? created.reason : (renewed as PromiseRejectedResult).reason;
    }
    const txn = created.value;
    if (!txn.created) {
      this.pooled({ id: lease.id, grantedTtl: lease.grantedTtl, since: sentAt });
      return { revision: txn.revision, ...(txn.kv ? { holder: txn.kv } : {}) };
    }
    const own = { lease: lease.id, nonce, revision: txn.revision, ttl: lease.grantedTtl, at: sentAt };
    this.own.add(key, own);
    const grant: Grant = {
      name,
      token: txn.revision,
      lease: formatHandle({ lease: lease.id, nonce }),
      ttl: lease.grantedTtl,
      expiresAt: this.expiry.estimate(key, txn.revision, sentAt, lease.grantedTtl),
      ...(o.owner !== undefined ? { owner: o.owner } : {}),
    };
    const signal = o.signal;
    if (signal) {
      // A grant nobody receives must not stay held by nobody. The signal only fires when
      // the caller disconnects before the response is fully sent.
      const abandon = () => void this.abandon(key, own).catch(() => {});
      if (signal.aborted) {
        abandon();
        throw new CallerGoneError();
      }
      signal.addEventListener("abort", abandon, { once: true });
    }
    return { grant };
  }

  /**
   * Ends a grant whose answer never reached its caller. By then an idempotent retry may
   * have received the grant and released it, and its lease may serve another name (even
   * another tenant's): so the key is deleted only by a txn guarded by this grant's
   * revision, and only a lease that txn proved was still this grant's is reused.
   */
  private async abandon(key: string, grant: OwnGrant): Promise<void> {
    this.own.take(key, grant);
    if (await this.txns.deleteIfUnchanged({ key, modRevision: grant.revision })) {
      this.releasedLease(grant.lease, grant.ttl);
    }
  }

  async renew(name: string, handle: string): Promise<Grant> {
    try {
      const grant = await this.tryRenew(name, handle);
      this.metrics.renew("renewed", name);
      return grant;
    } catch (err) {
      this.metrics.renew(err instanceof Problem && err.code === "lock-lost" ? "lost" : "error", name);
      throw err;
    }
  }

  private async tryRenew(name: string, handle: string): Promise<Grant> {
    const h = parseHandle(handle);
    const { kv, stored } = await this.heldBy(name, h);
    const sentAt = Date.now();
    const ttl = await this.etcd.leaseKeepAliveOnce(kv.lease);
    if (ttl <= 0) throw lockLost(name);
    return { ...this.grantOf(name, kv, stored, h?.nonce ?? "", ttl, sentAt), ttl };
  }

  async release(name: string, handle: string): Promise<void> {
    try {
      const h = parseHandle(handle);
      const key = this.key(name);
      const own = h && this.own.take(key, h);
      if (own && (await this.txns.deleteIfUnchanged({ key, modRevision: own.revision }))) {
        this.releasedLease(own.lease, own.ttl);
        this.released(own, "released", name);
        return;
      }
      const { kv, stored } = await this.heldBy(name, h);
      // Delete the key only if it is still exactly this grant's (an expiry or a new grant
      // in between changes its mod revision): never a 204 for nothing.
      if (!(await this.txns.deleteIfUnchanged({ key, modRevision: kv.modRevision }))) throw lockLost(name);
      this.releasedLease(kv.lease, stored.ttl);
      this.released(stored, "released", name);
    } catch (err) {
      this.metrics.release(err instanceof Problem && err.code === "lock-lost" ? "lost" : "error", name);
      throw err;
    }
  }

  /**
   * A released lock's lease stays alive and goes to the pool for the next grant, saving
   * a revoke and a grant.
   */
  private releasedLease(id: bigint, ttl: number | undefined): void {
    if (ttl !== undefined) this.pooled({ id, grantedTtl: ttl, since: Date.now() });
    else this.revoke({ id });
  }

  private released(stored: { at?: number }, outcome: "released" | "forced", name: string) {
    this.metrics.release(outcome, name);
    if (stored.at !== undefined) this.metrics.held(Math.max(0, Date.now() - stored.at) / 1000);
  }

  /**
   * Admin release regardless of holder: ends the grant the read found. `false` when
   * nothing was held.
   *
   * Never revokes the lease the read saw: leases are reused across grants (see
   * lease-pool.ts), so between the read and a revoke the lock may have been released and
   * its lease bound to another name, even another tenant's. The key is deleted by a txn
   * guarded by the grant's revision; if the grant changed meanwhile, the new one is read
   * and ended the same way. Only after that txn succeeded is the lease revoked: it was
   * then this grant's alone, and a deleted grant's lease is never pooled (its holder's
   * release finds no key), so nothing else can be bound to it.
   */
  async forceRelease(name: string): Promise<boolean> {
    const key = this.key(name);
    for (let attempt = 1; ; attempt++) {
      const { kv } = await this.etcd.get(key);
      if (!kv) return false;
      if (kv.lease === 0n) {
        throw new Problem("internal-error", "the lock key has no lease; it was not written by leasehold");
      }
      if (await this.txns.deleteIfUnchanged({ key, modRevision: kv.modRevision })) {
        this.revoke({ id: kv.lease });
        this.released(decodeValue(kv.value), "forced", name);
        return true;
      }
      // The grant changed between the read and the txn: a new holder (or none) now.
      if (attempt >= 3) {
        throw new EtcdUnavailableError(`${name} changed hands on every attempt to force-release it`);
      }
    }
  }

  async inspect(name: string): Promise<LockInfo | undefined> {
    const read = await this.etcd.get(this.key(name));
    if (!read.kv) return undefined;
    return this.infoOf(name, read.kv);
  }

  /**
   * Held locks in name order whose names start with `prefix` and with one of `within`
   * (the caller's allowed prefixes), starting after the name `after`.
   */
  async list(o: {
    prefix: string;
    within: readonly string[];
    limit: number;
    after?: string;
  }): Promise<{ items: LockInfo[]; next?: string }> {
    // Each allowed prefix narrows to one key range; nested ranges are covered by their
    // outer one, and the remaining ranges are disjoint, so scanning them in order keeps
    // the listing in name order.
    const scopes = [
      ...new Set(o.within.flatMap((w) => (o.prefix.startsWith(w) ? [o.prefix] : w.startsWith(o.prefix) ? [w] : []))),
    ]
      .sort()
      .filter((p, i, all) => !all.slice(0, i).some((outer) => p.startsWith(outer)));
    const kvs: KeyValue[] = [];
    let more = false;
    for (const [i, scope] of scopes.entries()) {
      const end = prefixEnd(this.key(scope));
      const start = o.after !== undefined && o.after >= scope ? `${this.key(o.after)}\0` : this.key(scope);
      if (start >= end) continue;
      const res = await this.etcd.range(start, end, o.limit - kvs.length);
      kvs.push(...res.kvs);
      if (kvs.length >= o.limit) {
        more = res.more || i < scopes.length - 1;
        break;
      }
    }
    const infos = await Promise.all(kvs.map((kv) => this.infoOf(kv.key.slice(this.opts.prefix.length), kv)));
    const items = infos.filter((i): i is LockInfo => i !== undefined);
    const last = kvs.at(-1);
    return { items, ...(more && last ? { next: last.key.slice(this.opts.prefix.length) } : {}) };
  }

  private async infoOf(name: string, kv: KeyValue): Promise<LockInfo | undefined> {
    if (kv.lease === 0n) return undefined;
    const before = Date.now();
    const ttl = await this.etcd.leaseTimeToLive(kv.lease);
    if (ttl.ttl < 0) return undefined;
    const stored = decodeValue(kv.value);
    return {
      name,
      token: kv.createRevision,
      ttl: ttl.ttl,
      expiresAt: this.expiry.estimate(kv.key, kv.createRevision, before, ttl.ttl),
      ...(stored.owner !== undefined ? { owner: stored.owner } : {}),
    };
  }

  /** The lock's key and value when `handle` names its grant; otherwise lock-lost. */
  private async heldBy(name: string, handle: Handle | undefined): Promise<{ kv: KeyValue; stored: StoredValue }> {
    if (handle === undefined) throw lockLost(name);
    const { kv } = await this.etcd.get(this.key(name));
    const stored = kv ? decodeValue(kv.value) : {};
    // The lease alone is not enough: leases are reused across grants, the nonce is not.
    if (!kv || kv.lease !== handle.lease || !(await nonceMatches(stored, handle.nonce))) throw lockLost(name);
    return { kv, stored };
  }

  /**
   * The grant as its holder sees it. `from`: when the call that measured `remaining`
   * was sent, so the expiry is a lower bound of the lease's.
   */
  private grantOf(
    name: string,
    kv: KeyValue,
    stored: StoredValue,
    nonce: string,
    remaining: number,
    from: number,
  ): Grant {
    return {
      name,
      token: kv.createRevision,
      lease: formatHandle({ lease: kv.lease, nonce }),
      ttl: stored.ttl ?? remaining,
      expiresAt: this.expiry.estimate(kv.key, kv.createRevision, from, remaining),
      ...(stored.owner !== undefined ? { owner: stored.owner } : {}),
    };
  }
}

/** SHA-256 of a grant's nonce, as stored (hex, 128 bits are plenty to compare). */
async function nonceHash(nonce: string): Promise<string> {
  return toHex(await sha256(`leasehold nonce\0${nonce}`)).slice(0, 32);
}

async function nonceMatches(stored: StoredValue, nonce: string): Promise<boolean> {
  if (stored.nh !== undefined) return stored.nh === (await nonceHash(nonce));
  return stored.n !== undefined && stored.n === nonce;
}

/** An idempotent grant's nonce: only a caller presenting the same secret and key can compute it. */
async function idempotentNonce(idem: Idempotency, salt: string): Promise<string> {
  return toHex(await sha256(`leasehold idempotency\0${idem.caller}\0${idem.key}\0${salt}`)).slice(0, 16);
}

/**
 * The nonce of the stored grant when it was made by this caller with this
 * Idempotency-Key; `undefined` for any other grant (another caller's key included).
 */
async function replayNonce(stored: StoredValue, idem: Idempotency): Promise<string | undefined> {
  if (stored.s === undefined || stored.nh === undefined) return undefined;
  const nonce = await idempotentNonce(idem, stored.s);
  return (await nonceHash(nonce)) === stored.nh ? nonce : undefined;
}

/** What an idempotent retry must repeat: the request's own fields. */
async function requestFingerprint(o: AcquireOptions): Promise<string> {
  return toHex(await sha256(JSON.stringify([o.ttl, o.owner ?? null, o.wait]))).slice(0, 16);
}

function idempotencyMismatch(): Problem {
  return new Problem(
    "idempotency-key-mismatch",
    "this Idempotency-Key was used with other request fields (ttl, owner or wait); use a new key for a different request",
  );
}

function lockHeld(name: string, holder: KeyValue, stored: StoredValue, expiresAt: string): Problem {
  const remaining = Math.max(0, (Date.parse(expiresAt) - Date.now()) / 1000);
  return new Problem(
    "lock-held",
    `lock ${name} is held by ${stored.owner === undefined ? "another holder" : JSON.stringify(stored.owner)}`,
    {
      holder: {
        ...(stored.owner !== undefined ? { owner: stored.owner } : {}),
        token: holder.createRevision,
        expiresAt,
      },
    },
    { "Retry-After": String(Math.max(1, Math.ceil(remaining))) },
  );
}

function lockLost(name: string): Problem {
  return new Problem(
    "lock-lost",
    `lock ${name} is not held with this lease: it expired, was released, or now belongs to someone else`,
  );
}

function decodeValue(value: string): StoredValue {
  try {
    const v = JSON.parse(value) as unknown;
    if (typeof v !== "object" || v === null) return {};
    const o = v as Record<string, unknown>;
    return {
      ...(typeof o.owner === "string" ? { owner: o.owner } : {}),
      ...(typeof o.ttl === "number" ? { ttl: o.ttl } : {}),
      ...(typeof o.at === "number" ? { at: o.at } : {}),
      ...(typeof o.nh === "string" ? { nh: o.nh } : {}),
      ...(typeof o.s === "string" ? { s: o.s } : {}),
      ...(typeof o.fp === "string" ? { fp: o.fp } : {}),
      ...(typeof o.n === "string" ? { n: o.n } : {}),
    };
  } catch {
    return {};
  }
}
