import {
  type DeleteItem,
  type EtcdClient,
  EtcdUnavailableError,
  type KeyValue,
  LeaseNotFoundError,
  prefixEnd,
} from "../etcd/types.js";
import { delay, untilDeadline } from "../timers.js";
import {
  CallerGone,
  ForeignKey,
  IdempotencyKeyMismatch,
  LockHeld,
  LockLost,
  ShuttingDown,
  TooManyWaiters,
} from "./errors.js";
import {
  decodeGrantValue,
  type GrantValue,
  type Idempotency,
  idempotentNonce,
  nonceHash,
  nonceMatches,
  replayNonce,
  requestFingerprint,
} from "./grant-value.js";
import { listingScopes } from "./listing.js";
import { formatHandle, type Handle, parseHandle, randomNonce } from "./names.js";
import type { Strategies } from "./strategies/index.js";
import { type OwnGrant, OwnGrants, ReportedExpiry, SeenHeld } from "./strategies/local-knowledge.js";
import type { Acquired, AcquireOptions, Ended, EngineOptions, Grant, ListOptions, LockInfo, Locks } from "./types.js";

/**
 * The lock protocol, written once against `EtcdClient` and the strategies it is given.
 * Every fact lives in etcd: a lock is one key, `prefix + name`, bound to the holder's
 * lease; its create revision is the fencing token. What the engine keeps in memory
 * (waiter count, local knowledge) only chooses which etcd call to make first, or makes
 * an answer's estimate tighter; a stale entry costs a round trip, never safety.
 *
 * Safety rule for every path below: a key is deleted only by a txn guarded by its
 * grant's revision, and a lease is revoked only when provably bound to no other grant.
 * Leases are reused across grants, so a lease ID read earlier proves nothing.
 */
export class LockEngine implements Locks {
  private waiters = 0;
  private readonly seenHeld = new SeenHeld();
  private readonly own = new OwnGrants();
  private readonly expiry = new ReportedExpiry();

  constructor(
    private readonly etcd: EtcdClient,
    private readonly strategies: Strategies,
    private readonly opts: EngineOptions,
  ) {}

  get activeWaiters(): number {
    return this.waiters;
  }

  sweepLeases(): void {
    this.strategies.leases.sweep();
  }

  close(): Promise<void> {
    return this.strategies.leases.close();
  }

  private key(name: string): string {
    return this.opts.prefix + name;
  }

  async acquire(name: string, o: AcquireOptions): Promise<Acquired> {
    const { waits } = this.strategies;
    this.strategies.leases.sweep();
    const key = this.key(name);
    const deadline = Date.now() + o.wait * 1000;
    const idem: Idempotency | undefined =
      o.idempotencyKey === undefined
        ? undefined
        : {
            key: o.idempotencyKey,
            caller: o.caller ?? "",
            // Not `wait`: a client retrying after a lost answer sends the wait it has left.
            fp: requestFingerprint([o.ttl, o.owner ?? null]),
          };
    let waiting = false;
    let lastChance = false;
    let woken = false;
    let granted = false;
    // The read before the write pays only when the lock is likely held: then it saves a
    // transaction. When this instance has no sign of that (no waiters, no holder seen
    // lately), go straight to the txn, whose failure branch reports the holder anyway.
    let read = waits.hasWaiters(key) || this.seenHeld.likely(key);
    try {
      for (;;) {
        try {
          if (o.signal?.aborted) throw new CallerGone();
          let holder: KeyValue | undefined;
          let revision = 0;
          if (read) ({ kv: holder, revision } = await this.etcd.get(key));
          read = true;
          if (!holder) {
            const attempt = await this.tryCreate(key, name, o, idem);
            if ("grant" in attempt) {
              granted = true;
              this.seenHeld.forget(key);
              return { grant: attempt.grant, replayed: false };
            }
            ({ holder, revision } = attempt);
            if (!holder) continue;
          }

          const stored = decodeGrantValue(holder.value);
          this.seenHeld.note(key, stored.ttl);
          const nonce = idem && replayNonce(stored, idem);
          if (idem && nonce !== undefined) {
            // Same caller, same Idempotency-Key: the same request again, or a misuse of the key.
            if (stored.fp !== idem.fp) throw new IdempotencyKeyMismatch();
            // Claim the grant before handing it out again: the claim (the same value put
            // again) moves the key's mod revision, so the first attempt's clean-up, which
            // deletes only a key still at its create revision (its caller hung up, or its
            // create txn's answer was lost), can no longer end the grant this retry gets.
            if (holder.modRevision === holder.createRevision && !(await this.claim(key, holder))) continue;
            const sent = Date.now();
            const { ttl } = await this.etcd.leaseTimeToLive(holder.lease);
            if (ttl > 0) return { grant: this.grantOf(name, holder, stored, nonce, ttl, sent), replayed: true };
            continue; // our earlier grant expired this instant; its key is going away
          }

          if (Date.now() >= deadline) {
            const sent = Date.now();
            const { ttl } = await this.etcd.leaseTimeToLive(holder.lease);
            // A lease already gone means the key went with it: look once more before saying 409.
            if (ttl < 0 && !lastChance) {
              lastChance = true;
              continue;
            }
            throw this.held(name, holder, stored, sent, Math.max(0, ttl));
          }

          if (!waiting) {
            if (this.waiters >= this.opts.maxWaiters) throw new TooManyWaiters(this.opts.maxWaiters);
            this.waiters++;
            waiting = true;
          }
          // Waiting from the revision that showed the lock held, + 1, cannot miss a release
          // that happens between that read and the wait starting: etcd replays history.
          const stop = untilDeadline(deadline, o.signal, this.opts.shutdownSignal);
          const outcome = await waits.wait(key, revision + 1, stop.signal).finally(() => stop.done());
          if (outcome === "wake") {
            woken = true;
            // Woken by a release, the lock is most likely free: straight to the txn.
            read = false;
          } else if (o.signal?.aborted) throw new CallerGone();
          else if (this.opts.shutdownSignal?.aborted) throw new ShuttingDown();
          // wake → try again (straight to the txn); deadline → the loop's last check decides.
        } catch (err) {
          // A waiter rides out a passing etcd failure (a leader election, a member
          // restart) until its deadline rather than failing at the first error.
          if (!(err instanceof EtcdUnavailableError) || !waiting || o.signal?.aborted) throw err;
          const pause = Math.min(250, deadline - Date.now());
          if (pause <= 0) throw err;
          await delay(pause, o.signal);
        }
      }
    } finally {
      if (waiting) this.waiters--;
      // Woken for a release but leaving without the lock: the next waiter gets the turn.
      if (woken && !granted) waits.passOn(key);
    }
  }

  /** Puts a grant's value again if unchanged; `false` when it changed or its lease ended. */
  private async claim(key: string, kv: KeyValue): Promise<boolean> {
    try {
      return await this.etcd.putIfUnchanged({ key, modRevision: kv.modRevision, value: kv.value, lease: kv.lease });
    } catch (err) {
      if (err instanceof LeaseNotFoundError) return false;
      throw err;
    }
  }

  /**
   * Lease + create-if-absent txn. A lost race returns the (unattached) lease for reuse.
   * `{ revision: 0 }` without a holder: the pooled lease had died; try again.
   */
  private async tryCreate(
    key: string,
    name: string,
    o: AcquireOptions,
    idem: Idempotency | undefined,
  ): Promise<{ grant: Grant } | { holder?: KeyValue; revision: number }> {
    const { leases, txns } = this.strategies;
    const sentAt = Date.now();
    const salt = idem && randomNonce();
    const nonce = idem && salt ? idempotentNonce(idem, salt) : randomNonce();
    const lease = await leases.take(o.ttl);
    const value: GrantValue = {
      ...(o.owner !== undefined ? { owner: o.owner } : {}),
      ttl: lease.grantedTtl,
      at: sentAt,
      nh: nonceHash(nonce),
      ...(idem && salt ? { s: salt, fp: idem.fp } : {}),
    };
    // A pooled lease is reset to its full TTL by a keep-alive sent alongside the txn, not
    // before it: the pool hands out only leases with over a second left, so the txn does
    // not race their expiry, and the acquire costs one round trip instead of two.
    const written = JSON.stringify(value);
    const [created, renewed] = await Promise.allSettled([
      txns.createIfAbsent({ key, value: written, lease: lease.id }),
      lease.pooled ? this.etcd.leaseKeepAliveOnce(lease.id) : Promise.resolve(lease.grantedTtl),
    ]);
    const died =
      (created.status === "rejected" && created.reason instanceof LeaseNotFoundError) ||
      (renewed.status === "fulfilled" && renewed.value <= 0);
    if (died) return { revision: 0 }; // and its key, if the txn made one, went with it
    if (created.status === "rejected" || renewed.status === "rejected") {
      // Whether the txn applied (or the lease was reset) is unknown. Without an
      // Idempotency-Key nobody else can ever receive this grant, and the lease is ours
      // alone, so revoking it removes the key if it was made. With one, the caller's retry
      // may receive the grant (through any instance): end it only while unclaimed.
      if (idem) void this.settleUnknown(key, lease.id, written).catch(() => {});
      else leases.discard(lease.id);
      throw created.status === "rejected" ? created.reason : (renewed as PromiseRejectedResult).reason;
    }
    const txn = created.value;
    // The key found bound to this very lease was made by an earlier send of this txn
    // whose answer was lost (a retry by the transport or by group commit).
    const ours = !txn.created && txn.kv?.lease === lease.id;
    if (ours && txn.kv?.value !== written) {
      // Cannot happen while each lease serves one attempt at a time; if it did, pooling
      // this lease would bind it to two grants: leave it to expire.
      throw new EtcdUnavailableError(`the create txn for ${name} found its own lease on another value`);
    }
    if (!txn.created && !ours) {
      leases.reusable(lease, sentAt);
      return { revision: txn.revision, ...(txn.kv ? { holder: txn.kv } : {}) };
    }
    const token = txn.created ? txn.revision : (txn.kv?.createRevision ?? txn.revision);
    const own: OwnGrant = { lease: lease.id, nonce, revision: token, ttl: lease.grantedTtl, at: sentAt };
    this.own.add(key, own);
    const grant: Grant = {
      name,
      token,
      lease: formatHandle({ lease: lease.id, nonce }),
      ttl: lease.grantedTtl,
      expiresAt: this.expiry.estimate(key, token, sentAt, lease.grantedTtl),
      ...(o.owner !== undefined ? { owner: o.owner } : {}),
    };
    const signal = o.signal;
    if (signal) {
      // A grant nobody receives must not stay held by nobody. The signal only fires when
      // the caller disconnects before the response is fully sent.
      const abandon = () => void this.abandon(key, own).catch(() => {});
      if (signal.aborted) {
        abandon();
        throw new CallerGone();
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
    if (await this.deleteGrant({ key, modRevision: grant.revision })) {
      this.strategies.leases.reusable({ id: grant.lease, grantedTtl: grant.ttl });
    }
  }

  /**
   * Ends an idempotent grant whose create txn's outcome was unknown, if it was made and
   * nobody has received it (unclaimed: still at its create revision, with the value this
   * attempt wrote). Otherwise the lease is left alone to expire: it may be bound to a
   * grant a retry received, or, after that grant's release, pooled for another name.
   */
  private async settleUnknown(key: string, lease: bigint, written: string): Promise<void> {
    const { kv } = await this.etcd.get(key);
    if (kv?.lease !== lease || kv.value !== written || kv.modRevision !== kv.createRevision) return;
    if (await this.deleteGrant({ key, modRevision: kv.modRevision })) this.strategies.leases.discard(lease);
  }

  /** Txn: if mod_revision(key) == the grant's revision then Delete(key). Whether it deleted. */
  private deleteGrant(item: DeleteItem): Promise<boolean> {
    return this.strategies.txns.deleteIfUnchanged(item);
  }

  async renew(name: string, handle: string): Promise<Grant> {
    const h = parseHandle(handle);
    const { kv, stored } = await this.heldBy(name, h);
    const sentAt = Date.now();
    const ttl = await this.etcd.leaseKeepAliveOnce(kv.lease);
    if (ttl <= 0) throw new LockLost(name);
    return { ...this.grantOf(name, kv, stored, h?.nonce ?? "", ttl, sentAt), ttl };
  }

  async release(name: string, handle: string): Promise<Ended> {
    const h = parseHandle(handle);
    const key = this.key(name);
    // A grant this instance made: an unchanged mod revision proves the key still holds
    // the value written with this nonce (lock keys are never updated), so no read first.
    const own = h && this.own.take(key, h);
    if (own && (await this.deleteGrant({ key, modRevision: own.revision }))) {
      this.strategies.leases.reusable({ id: own.lease, grantedTtl: own.ttl });
      return { grantedAt: own.at };
    }
    const { kv, stored } = await this.heldBy(name, h);
    // Delete the key only if it is still exactly this grant's (an expiry or a new grant
    // in between changes its mod revision): never a 204 for nothing.
    if (!(await this.deleteGrant({ key, modRevision: kv.modRevision }))) throw new LockLost(name);
    // The still-live lease goes to the pool for the next grant, saving a revoke and a grant.
    if (stored.ttl !== undefined) this.strategies.leases.reusable({ id: kv.lease, grantedTtl: stored.ttl });
    else this.strategies.leases.discard(kv.lease);
    return stored.at !== undefined ? { grantedAt: stored.at } : {};
  }

  /**
   * Ends the grant the read found, whoever holds it.
   *
   * Never revokes the lease the read saw: between the read and a revoke the lock may
   * have been released and its lease bound to another name, even another tenant's. The
   * key is deleted by a txn guarded by the grant's revision; if the grant changed
   * meanwhile, the new one is read and ended the same way. Only after that txn succeeded
   * is the lease revoked: it was then this grant's alone, and a deleted grant's lease is
   * never pooled (its holder's release finds no key), so nothing else can be bound to it.
   */
  async forceRelease(name: string): Promise<Ended | undefined> {
    const key = this.key(name);
    for (let attempt = 1; ; attempt++) {
      const { kv } = await this.etcd.get(key);
      if (!kv) return undefined;
      if (kv.lease === 0n) throw new ForeignKey(name);
      if (await this.deleteGrant({ key, modRevision: kv.modRevision })) {
        // Awaited (best effort): when the admin is answered, the holder's lease is gone too.
        await this.etcd.leaseRevoke(kv.lease).catch(() => {});
        const { at } = decodeGrantValue(kv.value);
        return at !== undefined ? { grantedAt: at } : {};
      }
      // The grant changed between the read and the txn: a new holder (or none) now.
      if (attempt >= 3) throw new EtcdUnavailableError(`${name} changed hands on every attempt to force-release it`);
    }
  }

  async inspect(name: string): Promise<LockInfo | undefined> {
    const { kv } = await this.etcd.get(this.key(name));
    return kv && this.infoOf(name, kv);
  }

  /** Held locks in name order within the caller's scopes, starting after `after`. */
  async list(o: ListOptions): Promise<{ items: LockInfo[]; next?: string }> {
    const scopes = listingScopes(o.prefix, o.within);
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
    const nameOf = (kv: KeyValue) => kv.key.slice(this.opts.prefix.length);
    const infos = await Promise.all(kvs.map((kv) => this.infoOf(nameOf(kv), kv)));
    const items = infos.filter((i): i is LockInfo => i !== undefined);
    const last = kvs.at(-1);
    return { items, ...(more && last ? { next: nameOf(last) } : {}) };
  }

  private async infoOf(name: string, kv: KeyValue): Promise<LockInfo | undefined> {
    if (kv.lease === 0n) return undefined;
    const sent = Date.now();
    const { ttl } = await this.etcd.leaseTimeToLive(kv.lease);
    if (ttl < 0) return undefined;
    const { owner } = decodeGrantValue(kv.value);
    return {
      name,
      token: kv.createRevision,
      ttl,
      expiresAt: this.expiry.estimate(kv.key, kv.createRevision, sent, ttl),
      ...(owner !== undefined ? { owner } : {}),
    };
  }

  /** The lock's key and value when `handle` names its grant; otherwise LockLost. */
  private async heldBy(name: string, handle: Handle | undefined): Promise<{ kv: KeyValue; stored: GrantValue }> {
    if (handle === undefined) throw new LockLost(name);
    const { kv } = await this.etcd.get(this.key(name));
    const stored = kv ? decodeGrantValue(kv.value) : {};
    // The lease alone is not enough: leases are reused across grants, the nonce is not.
    if (!kv || kv.lease !== handle.lease || !nonceMatches(stored, handle.nonce)) throw new LockLost(name);
    return { kv, stored };
  }

  /**
   * The grant as its holder sees it. `sent`: when the call that measured `remaining`
   * was sent, so the expiry is a lower bound of the lease's.
   */
  private grantOf(name: string, kv: KeyValue, v: GrantValue, nonce: string, remaining: number, sent: number): Grant {
    return {
      name,
      token: kv.createRevision,
      lease: formatHandle({ lease: kv.lease, nonce }),
      ttl: v.ttl ?? remaining,
      expiresAt: this.expiry.estimate(kv.key, kv.createRevision, sent, remaining),
      ...(v.owner !== undefined ? { owner: v.owner } : {}),
    };
  }

  private held(name: string, holder: KeyValue, v: GrantValue, sent: number, remaining: number): LockHeld {
    const expiresAt = this.expiry.estimate(holder.key, holder.createRevision, sent, remaining);
    const left = Math.max(0, (Date.parse(expiresAt) - Date.now()) / 1000);
    return new LockHeld(
      name,
      { ...(v.owner !== undefined ? { owner: v.owner } : {}), token: holder.createRevision, expiresAt },
      Math.max(1, Math.ceil(left)),
    );
  }
}
