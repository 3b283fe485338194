import {
  type CreateItem,
  type DeleteItem,
  type EtcdClient,
  EtcdUnavailableError,
  type KeyValue,
  LeaseNotFoundError,
} from "../etcd/types.js";
import { delay, untilDeadline } from "../timers.js";
import {
  CallerGone,
  FenceStale,
  ForeignKey,
  IdempotencyKeyMismatch,
  LimitMismatch,
  LockHeld,
  LockLost,
  ShuttingDown,
  StateNotFound,
  TicketMismatch,
  TooManyWaiters,
  ticketLost,
} from "./errors.js";
import { LineKeys } from "./line-keys.js";
import { formatHandle, type Handle, parseHandle, randomLeaseId, randomNonce } from "./names.js";
import {
  decodeParticipant,
  type Idempotency,
  idempotentKeyId,
  idempotentNonce,
  nonceHash,
  nonceMatches,
  type ParticipantValue,
  replayNonce,
  requestFingerprint,
} from "./participant.js";
import { type LineRead, LineReader } from "./reading.js";
import { hasRoom, holds, lineLimit, type Member, mayHold, member, nextWaiting } from "./standing.js";
import type { Strategies } from "./strategies/index.js";
import { type GrantLease, hasTimeLeft } from "./strategies/lease-pool.js";
import type { LineRange, TurnOutcome } from "./strategies/line-views.js";
import type { LocalHandoff } from "./strategies/local-handoff.js";
import { type MarkerRef, type OwnGrant, OwnGrants, ReportedExpiry, SeenHeld } from "./strategies/local-knowledge.js";
import type { QueueLease } from "./strategies/queue-leases.js";
import type {
  Acquired,
  AcquireOptions,
  Ended,
  EngineOptions,
  Feed,
  FeedOptions,
  Grant,
  LineInfo,
  LineKind,
  LineRef,
  LineState,
  Lines,
  ListOptions,
  ReadOptions,
  RedeemOptions,
  RenewOptions,
  StateView,
  Ticket,
} from "./types.js";

/** One acquire (or ticket redeem) as the engine carries it through its steps. */
interface Ask {
  line: LineRef;
  /** "lock NAME" / "semaphore NAME", for messages. */
  what: string;
  range: LineRange;
  key: string;
  keyId: string;
  idem?: Idempotency;
  o: AcquireOptions;
  deadline: number;
  /** Locks: the lock-delay marker, whose existence keeps every grant of the name back. */
  delayKey?: string;
}

/** A participant that waits: its key as written, and what keeps it in line. */
interface Place {
  kv: KeyValue;
  v: ParticipantValue;
  nonce: string;
  /** A waiting request's short lease (absent for a ticket, or a place another attempt made). */
  queueLease?: QueueLease;
  /** Whether this request made the place and so removes it when it gives up. */
  owned: boolean;
  /** A ticket its caller already has: kept when a request waiting with it hangs up. */
  handedOut?: boolean;
  /** Given up already (see giveUp). */
  left?: boolean;
  /** The etcd revision this request last read the place at (what its answers must not predate). */
  readAt?: number;
}

/** A waiter a release on this instance may make the holder in its own txn (see handOver). */
interface Waiter {
  ask: Ask;
  place: Place;
}

/** How a handoff that claimed a waiter ended, as the waiter learns it. */
type Handed =
  /** The releasing txn made its key the holder: `kv` as written, at `at`. */
  | { took: { kv: KeyValue; v: ParticipantValue; at: number } }
  /** Nothing of it changed (or its key went with a lease that just ended): it waits on. */
  | { kept: true }
  /** The outcome is unknown: it leaves the line and fails with `error` (see handedTurn). */
  | { lost: { error: unknown; lease: bigint; written: string } };

/** A grant being ended at its holder's request: its key's revision and what it is bound to. */
interface Ending {
  revision: number;
  lease: bigint;
  /** TTL etcd granted (absent in a value written before it was kept). */
  ttl?: number;
  /** Grant time (ms since the epoch). */
  at?: number;
  marker?: MarkerRef;
}

/** The sentinel a wait for a turn ends with when the place left the line. */
const GONE = Symbol("gone");
/** A turn that came while the lock is in its lock-delay: the marker that keeps it back. */
interface Delayed {
  delayed: KeyValue;
}
/** A turn refused by a lock-delay marker that was gone by the time it was read: take it again. */
const AGAIN = Symbol("again");
const TIMED_OUT = Symbol("timed out");
/** A granting write whose lease had ended. */
const DIED = Symbol("died");

/** Whether a grant puts a lock-delay marker (so takes a fresh lease: see LeaseSource.take). */
const withDelay = (lockDelay: number | undefined, delayKey: string | undefined): boolean =>
  Boolean(lockDelay) && delayKey !== undefined;

/** How many times a join that found room retries before it waits like everyone else. */
const MAX_ROOM_RETRIES = 5;
/** Retries of a force release whose target changed between the read and the delete. */
const FORCE_ATTEMPTS = 3;
/** Largest semaphore limit: a force release or inspect reads at most this many keys. */
export const MAX_LIMIT = 10_000;

/**
 * The coordination engine: lines of holders and waiters in etcd (see standing.ts for
 * the rules, line-keys.ts for the key layout), written once against `EtcdClient` and
 * the strategies it is given. A lock is a line of limit 1; a semaphore, of its limit.
 *
 * Steps:
 * - acquire: one txn joins the line *holding*, when nobody newer than what the caller
 *   knows is in it (blind: when the line is empty); otherwise it read the line back. When
 *   there is no room: 409, or join *waiting* (a key on a short queue lease, or a ticket's
 *   lease) and wait for the turn; at the turn, the waiter's key is put again bound to a
 *   grant's lease, guarded by the waiter's own mod revision. The fencing token is the
 *   key's create revision: when it joined.
 * - renew: keep-alive of the grant's lease after a read that proves the handle's.
 * - release: delete guarded by the grant's revision; its lease goes to the pool. When
 *   the next in line is a plain waiter of this instance, the same txn makes it the
 *   holder instead, on the released lease (local handoff: see handOver).
 *
 * Safety rule for every path: a key is deleted only by a txn guarded by its revision,
 * and a lease is revoked only when provably bound to no other participant. Leases are
 * reused across grants, so a lease ID read earlier proves nothing.
 *
 * Lock-delay (locks only): a grant asked with `lockDelay` puts, in its granting txn, a
 * marker key outside the line (LineKeys.delayMarker) on a lease of its own whose TTL is
 * the grant's plus the delay, renewed with the grant's. Every txn that grants a lock
 * (a join holding, a turn) also requires that no marker exists. A clean end (release,
 * an abandoned answer, a ticket left) deletes the marker in the txn that deletes the
 * grant's key, so the name is free at once; an expiry leaves it for the delay (its
 * lease runs that much longer; a new etcd leader restarts both countdowns alike while
 * the grant lives, and one that restarts an orphaned marker's is cut back to the delay
 * by whoever finds it: see delayLeft); a force release puts it on a fresh lease of just
 * the delay. While a grant's key exists
 * the marker can only be that grant's: no other grant of the name can be made
 * meanwhile, and a force release deletes the key with it.
 */
export class LineEngine implements Lines {
  private waiters = 0;
  private readonly keys: LineKeys;
  private readonly reader: LineReader;
  private readonly seenBusy = new SeenHeld();
  private readonly own = new OwnGrants();
  private readonly expiry = new ReportedExpiry();
  private readonly handoff: LocalHandoff<Waiter, Handed>;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly strategies: Strategies,
    private readonly opts: EngineOptions,
  ) {
    this.keys = new LineKeys(opts.prefix);
    this.reader = new LineReader(etcd, this.keys, strategies.changes, this.expiry, opts);
    this.handoff = strategies.handoff();
  }

  get activeWaiters(): number {
    return this.waiters;
  }

  get activeReads(): number {
    return this.reader.activeReads;
  }

  get activeFeeds(): number {
    return this.reader.activeFeeds;
  }

  sweepLeases(): void {
    this.strategies.leases.sweep();
  }

  async close(): Promise<void> {
    await Promise.all([this.strategies.leases.close(), this.strategies.queue.close()]);
  }

  // ---------------------------------------------------------------- acquire

  async acquire(line: LineRef, o: AcquireOptions): Promise<Acquired> {
    this.strategies.leases.sweep();
    const idem: Idempotency | undefined =
      o.idempotencyKey === undefined
        ? undefined
        : {
            key: o.idempotencyKey,
            caller: o.caller ?? "",
            // Not `wait`: a client retrying after a lost answer sends the wait it has left.
            // A value is fingerprinted only when sent, so grants made without one keep theirs.
            fp: requestFingerprint([
              o.ttl,
              o.owner ?? null,
              o.limit,
              o.queue ?? false,
              ...(o.value !== undefined ? [o.value] : []),
              ...(o.lockDelay ? [{ lockDelay: o.lockDelay }] : []),
            ]),
          };
    const keyId = idem ? idempotentKeyId(idem) : randomNonce();
    const ask: Ask = {
      line,
      what: describe(line),
      range: this.keys.range(line),
      key: this.keys.participant(line, keyId),
      keyId,
      ...(idem ? { idem } : {}),
      o,
      deadline: Date.now() + o.wait * 1000,
      ...(line.kind === "lock" ? { delayKey: this.keys.delayMarker(line) } : {}),
    };
    // An idempotent acquire does not read its key first: a retry's key, if an earlier
    // attempt made it, fails the join's compare (the line is then not empty, or has a key
    // newer than `known`), and every path that finds no room looks for it (the line read
    // back, the waiting join's create-if-absent, or the replay before a refusal). The read
    // would cost every idempotent acquire, which the official client always sends, a
    // round trip to etcd for the rare retry.
    const { waits } = this.strategies;
    // The read before the write pays only when the line is likely busy: then it saves a
    // txn. Otherwise the join goes blind, and a failed join reads the line anyway.
    let known: LineRead | undefined =
      waits.watching(ask.range.start) || this.seenBusy.likely(ask.range.start)
        ? await this.reader.readOldest(ask.range, o.limit + 1)
        : undefined;
    let lastChance = false;
    for (let attempt = 0; ; attempt++) {
      if (o.signal?.aborted) throw new CallerGone();
      if (known) {
        checkLimit(ask.what, known.oldest, o.limit);
        if (known.oldest.some((m) => m.kv.key === ask.key)) {
          // Our own key (an idempotent attempt made it since our first look).
          const again = await this.replay(ask);
          if (again) return again;
          known = undefined;
          continue;
        }
        if (!hasRoom(known.oldest, known.count, o.limit) || attempt > MAX_ROOM_RETRIES) {
          this.seenBusy.note(ask.range.start);
          if (o.wait > 0 || o.queue) {
            // This frame lives as long as the wait (up to a minute, for each of thousands
            // of waiters): it must not keep the line read, which the wait no longer needs.
            known = undefined;
            return await this.waitInLine(ask);
          }
          // An earlier attempt of this request may have a place further back than the
          // line read showed (it waited in line): that place is this request's answer.
          const again = await this.replay(ask);
          if (again) return again;
          const refusal = await this.refusal(ask, known.oldest);
          if (refusal) throw refusal;
          // The holder's lease ended this instant: its key is going; look once more.
          if (lastChance) throw new LockHeld(ask.what, undefined, 1);
          lastChance = true;
          known = undefined;
          continue;
        }
      }
      const joined = this.seenBusy.joining(ask.range.start);
      const r = await this.joinHolding(ask, known?.revision ?? 0).finally(joined);
      if ("grant" in r) {
        this.seenBusy.forget(ask.range.start);
        return { grant: r.grant, replayed: false };
      }
      if ("delayed" in r) {
        // Nobody holds it, but its last grant ended without a release moments ago.
        if (o.wait > 0 || o.queue) {
          known = undefined;
          return await this.waitInLine(ask);
        }
        const again = await this.replay(ask);
        if (again) return again;
        throw await this.delayRefusal(ask, r.delayed);
      }
      known = r.known;
    }
  }

  /**
   * One txn: join the line holding, if nobody joined after `known` (0: if it is empty).
   * Otherwise what the line holds, read in the same txn.
   */
  private async joinHolding(ask: Ask, known: number): Promise<{ grant: Grant } | { known?: LineRead } | Delayed> {
    const { leases, txns } = this.strategies;
    const { o } = ask;
    const sentAt = Date.now();
    const { nonce, secret } = this.newNonce(ask.idem);
    const lease = await leases.take(o.ttl, { fresh: withDelay(o.lockDelay, ask.delayKey) });
    const marker = await this.newMarker(ask, lease.grantedTtl).catch((err: unknown) => {
      leases.reusable(lease, sentAt);
      throw err;
    });
    const v: ParticipantValue = {
      h: 1,
      ...this.requestFields(o),
      ttl: lease.grantedTtl,
      at: sentAt,
      nh: nonceHash(nonce),
      ...secret,
      ...(marker ? { dl: marker.lease.toString(16) } : {}),
    };
    const written = JSON.stringify(v);
    const r = await this.grantingWrite(
      txns.join({
        start: ask.range.start,
        end: ask.range.end,
        maxCreateRevision: known,
        key: ask.key,
        value: written,
        lease: lease.id,
        readLimit: o.limit + 1,
        ...(ask.delayKey ? { absent: ask.delayKey } : {}),
        ...(marker ? { with: marker } : {}),
      }),
      { key: ask.key, written, lease, marker, idempotent: ask.idem !== undefined },
    );
    if (r === DIED) return {}; // and its key, if the txn made one, went with it
    if (!r.joined) {
      // A txn sent again after its first answer was lost (a transport's retry) finds the
      // key the first send made: that join applied, and the lease is bound to it.
      const made = r.read.kvs.find((kv) => kv.key === ask.key && kv.value === written && kv.lease === lease.id);
      if (made) return { grant: this.granted(ask, made, v, nonce, made.modRevision, sentAt) };
      leases.reusable(lease, sentAt);
      this.dropMarkerLease(marker);
      const oldest = r.read.kvs.map(member);
      // The marker of a holder that asked for a lock-delay is there too: that is held.
      if (r.read.blocker && !oldest.some(holds)) return { delayed: r.read.blocker };
      return { known: { revision: r.revision, oldest, count: r.read.count } };
    }
    const kv: KeyValue = {
      key: ask.key,
      value: written,
      createRevision: r.revision,
      modRevision: r.revision,
      lease: lease.id,
    };
    return { grant: this.granted(ask, kv, v, nonce, r.revision, sentAt) };
  }

  /**
   * A write that grants (a join holding, a turn), sent with the reset of a pooled lease,
   * settled. The keep-alive goes alongside the write, not before it: the pool hands out
   * only leases with over a second left, so the write does not race their expiry, and
   * the grant costs one round trip instead of two. DIED when the lease had ended (then
   * whatever the write made went with it). When the outcome is unknown, the grant is
   * ended if it was made and the error thrown: without an Idempotency-Key nobody else
   * can ever receive it, and the lease is ours alone, so revoking it removes the key if
   * it was made; with one, the caller's retry may receive the grant (through any
   * instance), so it is ended only while unclaimed.
   */
  private async grantingWrite<T>(
    write: Promise<T>,
    g: { key: string; written: string; lease: GrantLease; marker: CreateItem | undefined; idempotent: boolean },
  ): Promise<T | typeof DIED> {
    const [wrote, renewed] = await Promise.allSettled([
      write,
      g.lease.pooled ? this.etcd.leaseKeepAliveOnce(g.lease.id) : Promise.resolve(g.lease.grantedTtl),
    ]);
    const died =
      (wrote.status === "rejected" && wrote.reason instanceof LeaseNotFoundError) ||
      (renewed.status === "fulfilled" && renewed.value <= 0);
    if (died) {
      this.dropMarkerLease(g.marker);
      return DIED;
    }
    if (wrote.status === "rejected" || renewed.status === "rejected") {
      if (g.idempotent) void this.settleUnknown(g.key, g.lease.id, g.written, g.marker?.lease).catch(() => {});
      else {
        this.strategies.leases.discard(g.lease.id);
        this.dropMarkerLease(g.marker);
      }
      throw wrote.status === "rejected" ? wrote.reason : (renewed as PromiseRejectedResult).reason;
    }
    return wrote.value;
  }

  /** A fresh nonce; with an Idempotency-Key, one its caller can derive again (and the salt to). */
  private newNonce(idem: Idempotency | undefined): { nonce: string; secret: Partial<ParticipantValue> } {
    if (!idem) return { nonce: randomNonce(), secret: {} };
    const salt = randomNonce();
    return { nonce: idempotentNonce(idem, salt), secret: { s: salt, fp: idem.fp } };
  }

  private requestFields(o: AcquireOptions): Partial<ParticipantValue> {
    return {
      ...(o.owner !== undefined ? { owner: o.owner } : {}),
      ...(o.value !== undefined ? { val: o.value } : {}),
      ...(o.limit !== 1 ? { limit: o.limit } : {}),
      ...(o.lockDelay ? { ld: o.lockDelay } : {}),
    };
  }

  // ---------------------------------------------------------------- lock-delay

  /**
   * The lock-delay marker a grant asked with `lockDelay` puts with itself: on a new lease
   * of its own that outlives the grant's (`ttl`, as etcd granted it) by the delay.
   */
  private async newMarker(ask: Ask, ttl: number, lockDelay = ask.o.lockDelay): Promise<CreateItem | undefined> {
    if (!lockDelay || !ask.delayKey) return undefined;
    const lease = randomLeaseId();
    await this.etcd.leaseGrant(lease, ttl + lockDelay);
    return { key: ask.delayKey, value: JSON.stringify({ ld: lockDelay }), lease };
  }

  /** A marker lease whose marker was never written: it is bound to nothing. */
  private dropMarkerLease(marker: CreateItem | undefined): void {
    if (marker) this.etcd.leaseRevoke(marker.lease).catch(() => {});
  }

  /** The refusal while the lock is in its lock-delay: Retry-After is what the marker has left. */
  private async delayRefusal(ask: Ask, marker: KeyValue, position?: number): Promise<LockHeld> {
    const ttl = await this.delayLeft(marker);
    return new LockHeld(ask.what, undefined, Math.max(1, ttl), position, "lock-delay");
  }

  /**
   * Seconds a lock-delay marker has left; called only while nobody holds the lock. A
   * marker's lease runs the delay past its grant's: at the grant's end it has about the
   * delay left. More than that means a new etcd leader restarted it at its full TTL
   * (grant ttl + delay) after its grant had ended; it is then moved to a fresh lease of
   * just the delay (guarded by its revision, so only this marker), which still ends it
   * no earlier than the grant's end + the delay.
   */
  private async delayLeft(marker: KeyValue): Promise<number> {
    const { ttl } = await this.etcd.leaseTimeToLive(marker.lease);
    const ld = decodeParticipant(marker.value).ld;
    if (ld === undefined || ttl <= ld + 1) return ttl;
    const moved = await this.remark({ key: marker.key, lease: marker.lease }, ld, {
      key: marker.key,
      modRevision: marker.modRevision,
    }).catch(() => false);
    return moved ? ld : ttl;
  }

  /** The marker keeping the lock back, if any (when a turn or a grant was refused with nobody holding). */
  private async delayMarker(ask: Ask): Promise<KeyValue | undefined> {
    return ask.delayKey === undefined ? undefined : (await this.etcd.get(ask.delayKey)).kv;
  }

  /** Waits until the marker's lease can have ended (at most until the deadline). */
  private async outwait(ask: Ask, marker: KeyValue): Promise<void> {
    const ttl = await this.delayLeft(marker);
    // etcd removes an expired lease's keys within about half a second of its TTL.
    const pause = Math.min(Math.max(100, ttl * 1000), ask.deadline - Date.now());
    if (pause > 0) await delay(pause, ask.o.signal).catch(() => {});
  }

  /**
   * Deletes a grant's key if unchanged since `modRevision`; with its lock-delay marker
   * (`delay`: the marker's lease) in the same txn, so a clean end frees the name at once.
   */
  private async deleteGrant(key: string, modRevision: number, marker: MarkerRef | undefined): Promise<boolean> {
    if (marker === undefined) return this.deleteAt(key, modRevision);
    const deleted =
      (await this.etcd.guardedWrite({ unchanged: [{ key, modRevision }], delete: [key, marker.key] })) !== 0;
    // The marker's lease was made for this grant's marker alone, which is gone now.
    if (deleted) this.etcd.leaseRevoke(marker.lease).catch(() => {});
    return deleted;
  }

  /** The marker of a holder that asked for a lock-delay (`dl` holds its lease, in hex). */
  private markerOf(line: LineRef, v: ParticipantValue): MarkerRef | undefined {
    if (v.dl === undefined || line.kind !== "lock") return undefined;
    return { key: this.keys.delayMarker(line), lease: BigInt(`0x${v.dl}`) };
  }

  /**
   * Bookkeeping of a grant just written at `revision`: remembered for a read-free
   * release, and ended again if its caller hangs up before the answer is sent.
   */
  private granted(ask: Ask, kv: KeyValue, v: ParticipantValue, nonce: string, revision: number, at: number): Grant {
    const ttl = v.ttl ?? ask.o.ttl;
    const marker = this.markerOf(ask.line, v);
    const own: OwnGrant = { lease: kv.lease, nonce, revision, ttl, at, ...(marker ? { marker } : {}) };
    this.own.add(kv.key, own);
    const grant: Grant = {
      name: ask.line.name,
      token: kv.createRevision,
      lease: formatHandle({ lease: kv.lease, keyId: ask.keyId, nonce }),
      ttl,
      expiresAt: this.expiry.estimate(kv.key, kv.createRevision, at, ttl),
      ...(v.owner !== undefined ? { owner: v.owner } : {}),
      ...(v.val !== undefined ? { value: v.val } : {}),
      ...(ask.line.kind === "semaphore" ? { limit: v.limit ?? 1 } : {}),
    };
    const signal = ask.o.signal;
    if (signal) {
      // A grant nobody receives must not stay held by nobody. The signal only fires when
      // the caller disconnects before the response is fully sent.
      const abandon = () => void this.abandon(ask.line, kv.key, own).catch(() => {});
      if (signal.aborted) {
        abandon();
        throw new CallerGone();
      }
      signal.addEventListener("abort", abandon, { once: true });
    }
    return grant;
  }

  /**
   * Ends a grant whose answer never reached its caller. By then an idempotent retry may
   * have received the grant (claiming it moves its mod revision) and released it, and
   * its lease may serve another line: so the key is deleted only by a txn guarded by the
   * revision this grant was written at, and only a lease that txn proved was still this
   * grant's is reused. Ended as a release would end it: the next waiter here may be
   * handed the place in the same txn.
   */
  private async abandon(line: LineRef, key: string, grant: OwnGrant): Promise<void> {
    this.own.take(key, grant);
    await this.endHeld(line, key, grant);
  }

  /**
   * Ends an idempotent grant whose txn's outcome was unknown, if it was made and nobody
   * has received it (unclaimed: still the value this attempt wrote; a claim changes it).
   * Otherwise the lease is left alone to expire: it may be bound to a grant a retry
   * received, or, after that grant's release, pooled for another line.
   */
  private async settleUnknown(key: string, lease: bigint, written: string, markerLease?: bigint): Promise<void> {
    const { kv } = await this.etcd.get(key);
    if (kv?.lease !== lease || kv.value !== written) return;
    const line = this.keys.lineOf(key);
    const marker =
      markerLease !== undefined && line ? { key: this.keys.delayMarker(line), lease: markerLease } : undefined;
    if (await this.deleteGrant(key, kv.modRevision, marker)) this.strategies.leases.discard(lease);
  }

  /** Txn: if mod_revision(key) == revision then Delete(key). Whether it deleted. */
  private deleteAt(key: string, modRevision: number): Promise<boolean> {
    return this.strategies.txns.deleteIfUnchanged({ key, modRevision });
  }

  /** Why an acquire that did not wait is refused; `undefined` when the holder just ended. */
  private async refusal(ask: Ask, oldest: Member[], position?: number): Promise<LockHeld | undefined> {
    const first = oldest.find(holds);
    if (!first) {
      const marker = await this.delayMarker(ask);
      if (marker) return this.delayRefusal(ask, marker, position);
      return new LockHeld(ask.what, undefined, 1, position);
    }
    const sent = Date.now();
    const { ttl } = await this.etcd.leaseTimeToLive(first.kv.lease);
    if (ttl < 0 && position === undefined) return undefined;
    const expiresAt = this.expiry.estimate(first.kv.key, first.kv.createRevision, sent, Math.max(0, ttl));
    const left = Math.max(0, (Date.parse(expiresAt) - Date.now()) / 1000);
    const holder =
      ask.line.kind === "lock"
        ? {
            ...(first.v.owner !== undefined ? { owner: first.v.owner } : {}),
            token: first.kv.createRevision,
            expiresAt,
          }
        : undefined;
    return new LockHeld(ask.what, holder, Math.max(1, Math.ceil(left)), position);
  }

  // ---------------------------------------------------------------- waiting in line

  /** Joins the line waiting, and waits for the turn (or answers a ticket). */
  private async waitInLine(ask: Ask): Promise<Acquired> {
    const { o } = ask;
    const counted = o.wait > 0;
    if (counted) {
      if (this.waiters >= this.opts.maxWaiters) throw new TooManyWaiters(this.opts.maxWaiters);
      this.waiters++;
    }
    try {
      for (;;) {
        const place = await this.joinWaiting(ask);
        if (!("kv" in place)) return place;
        let r: Acquired | typeof GONE;
        try {
          r = await this.waitForTurn(ask, place);
        } catch (err) {
          // Whatever failed (etcd unreachable when the position was read, a refused
          // watch), the place must not stay in line: its queue lease is kept alive for the
          // instance's other waiters, and a place nobody waits on would stall the line.
          // A ticket stays.
          if (place.v.t !== 1) await this.giveUp(place);
          throw err;
        }
        if (r !== GONE) return r;
        // Our place went (its queue lease ended under an etcd outage, or it was made a holder
        // on a lease that ended at once): join again at the back. The key left the queue
        // lease either way, and a lease still counting this waiter is never let go when idle.
        place.queueLease?.done();
        if (Date.now() >= ask.deadline) throw await this.held(ask, undefined);
      }
    } finally {
      if (counted) this.waiters--;
    }
  }

  /** Puts the waiter's key, bound to a queue lease or (tickets) to a new lease of its own. */
  private async joinWaiting(ask: Ask, again = false): Promise<Place | Acquired> {
    const { o } = ask;
    const { nonce, secret } = this.newNonce(ask.idem);
    let queueLease: QueueLease | undefined;
    let lease: bigint;
    let tt: number | undefined;
    if (o.queue) {
      lease = randomLeaseId();
      tt = await this.etcd.leaseGrant(lease, o.ticketTtl ?? 30);
    } else {
      queueLease = await this.strategies.queue.take();
      lease = queueLease.id;
    }
    const v: ParticipantValue = {
      ...(o.queue ? { t: 1 as const, tt } : {}),
      ...this.requestFields(o),
      ttl: o.ttl,
      at: Date.now(),
      nh: nonceHash(nonce),
      ...secret,
    };
    const value = JSON.stringify(v);
    const giveUp = () => {
      if (queueLease) queueLease.forsake();
      else this.etcd.leaseRevoke(lease).catch(() => {}); // a ticket's lease was only ever this key's
    };
    let created: Awaited<ReturnType<typeof this.strategies.txns.createIfAbsent>>;
    try {
      created = await this.strategies.txns.createIfAbsent({ key: ask.key, value, lease, line: ask.range.start });
    } catch (err) {
      giveUp();
      // The queue lease ended (an etcd outage outlasted its TTL) before a keep-alive found
      // out: nothing was written, and giving it up retired it, so join on a new one.
      if (err instanceof LeaseNotFoundError && queueLease && !again) return this.joinWaiting(ask, true);
      throw err;
    }
    if (!created.created) {
      // Only an idempotent attempt's key can be there already: take what it became.
      giveUp();
      const again = await this.replay(ask);
      if (again) return again;
      throw new EtcdUnavailableError(`${ask.what} changed while joining its line; try again`);
    }
    const kv = { key: ask.key, value, createRevision: created.revision, modRevision: created.revision, lease };
    return { kv, v, nonce, ...(queueLease ? { queueLease } : {}), owned: true };
  }

  /**
   * Waits for the place's turn until the deadline, then takes the grant. A ticket that
   * does not get its turn in time is answered as a ticket (it keeps its place); any
   * other waiter leaves the line and is refused with its position.
   */
  private async waitForTurn(ask: Ask, place: Place): Promise<Acquired | typeof GONE> {
    const { o } = ask;
    const ticket = place.v.t === 1;
    // A ticket waiting inside a request is kept in line by that request meanwhile.
    const keeper = ticket ? this.keepTicket(place) : undefined;
    // Nothing is judged from a copy of the line older than this revision.
    let after = place.kv.modRevision;
    try {
      for (;;) {
        const r = await this.nextTurn(ask, place, after);
        if (r === GONE) {
          if (ticket) throw ticketLost(ask.what);
          return GONE;
        }
        if (r === TIMED_OUT) {
          if (o.signal?.aborted) {
            if (!place.handedOut) await this.giveUp(place);
            throw new CallerGone();
          }
          if (ticket) {
            // One last look: the turn may have come while the ticket was being made.
            const { oldest } = await this.reader.readOldest(ask.range, o.limit);
            const turn = oldest.find((x) => x.kv.key === place.kv.key);
            const grant = turn && mayHold(oldest, turn.kv.key, o.limit) && (await this.convert(ask, place, turn));
            return grant && grant !== AGAIN && !("delayed" in grant)
              ? grant
              : { ticket: await this.ticketOf(ask, place) };
          }
          const position = await this.positionOf(ask.range, place.kv).catch(() => undefined);
          await this.giveUp(place);
          if (this.opts.shutdownSignal?.aborted) throw new ShuttingDown();
          throw await this.held(ask, position);
        }
        if ("handed" in r) return r.handed;
        // Another attempt waiting for this same place (an idempotent retry, a second
        // redeem of the ticket) converted it first: that grant is this participant's, and
        // converting it again would bind it to a second lease behind its holder's back.
        const grant = holds(r) ? await this.claimTurn(ask, place, r) : await this.convert(ask, place, r);
        if (grant === AGAIN) continue;
        if (grant && "delayed" in grant) {
          // The turn came in the lock's lock-delay: it stays this place's once that is over.
          await this.outwait(ask, grant.delayed);
          continue;
        }
        if (grant) return grant;
        // The key changed after the copy showed it: wait for a copy that shows what it became.
        after = r.kv.modRevision + 1;
      }
    } finally {
      if (keeper) clearInterval(keeper);
    }
  }

  /** The place became a grant through another attempt: the same grant, handed out again. */
  private async claimTurn(ask: Ask, place: Place, m: Member): Promise<Acquired | undefined> {
    const grant = await this.claim(ask.line, ask.keyId, m, place.nonce);
    if (!grant) return undefined;
    // The key left the queue lease when the other attempt converted it.
    place.queueLease?.done();
    return { grant, replayed: true };
  }

  /**
   * The waiter's next turn (its key as the line shows it), or why there is none; or the
   * grant a release on this instance handed it meanwhile (see handOver).
   */
  private async nextTurn(
    ask: Ask,
    place: Place,
    after: number,
  ): Promise<Member | typeof GONE | typeof TIMED_OUT | { handed: Acquired }> {
    const { o } = ask;
    for (;;) {
      // Past the deadline (a ticket answered at once) no copy of the line is worth making.
      if (o.signal?.aborted || Date.now() >= ask.deadline) return TIMED_OUT;
      const stop = untilDeadline(ask.deadline, o.signal, this.opts.shutdownSignal);
      // Read before a claim can come: the signal is made on first read, and a claim fires it.
      const signal = stop.signal;
      // A claim aborts the wait directly (no signal of its own to relay: one event less per handoff).
      const here = this.mayBeHandedTo(place)
        ? this.handoff.enter(ask.range.start, place.kv.key, { ask, place }, (reason) => stop.abort(reason))
        : undefined;
      let r: TurnOutcome | undefined;
      let failure: unknown;
      try {
        r = await this.strategies.waits.awaitTurn(ask.range, place.kv.key, o.limit, after, signal);
      } catch (err) {
        failure = err;
      } finally {
        stop.done();
      }
      // A release that claimed this waiter decides first, whatever else ended the wait
      // (its turn, its deadline, its caller hanging up, a shutdown, an etcd failure).
      const handed = await here?.leave();
      if (handed) {
        const grant = await this.handedTurn(ask, place, handed);
        if (grant) return { handed: grant };
        continue;
      }
      if (r === undefined) {
        // A waiter rides out a passing etcd failure (a leader election, a member
        // restart) until its deadline rather than failing at the first error.
        if (!(failure instanceof EtcdUnavailableError) || o.signal?.aborted) throw failure;
        const pause = Math.min(250, ask.deadline - Date.now());
        if (pause <= 0) return TIMED_OUT;
        await delay(pause, o.signal).catch(() => {});
        continue;
      }
      // A key of the same ID made anew (by another attempt, after this place left) is not this place.
      if (r.turn === "hold") return r.member.kv.createRevision === place.kv.createRevision ? r.member : GONE;
      if (r.turn === "gone") return GONE;
      return TIMED_OUT;
    }
  }

  /**
   * Whether a release on this instance may make this place the holder in its own txn
   * (handOver): a request waiting here in a place it made, with nothing that needs more
   * than that txn. Not a ticket (its place outlives the request, and its lease is its
   * own), not an idempotent attempt (a retry may wait for the same place elsewhere, and
   * a grant of unknown outcome is settled differently for it), and no lock-delay (its
   * grant comes with a marker on a lease made for it).
   */
  private mayBeHandedTo(place: Place): boolean {
    const { v } = place;
    return place.queueLease !== undefined && place.owned && v.t !== 1 && v.s === undefined && v.ld === undefined;
  }

  /**
   * What a release's handoff (handOver) means for the waiter it claimed: its grant, or
   * `undefined` to wait on as before. When the handoff's outcome is unknown, the waiter
   * leaves the line and fails with its error, as a turn of unknown outcome does: first
   * its key is deleted if still as it joined (guarded by that revision, so the handoff's
   * txn, should etcd apply it late, fails on it), then, if the txn did apply, its key as
   * the txn wrote it (guarded by its revision; its lease then bound to nothing). In that
   * order nothing the txn may have written stays held by nobody, unless etcd cannot be
   * reached for either; then the grant's lease, which nobody keeps alive, ends it.
   */
  private async handedTurn(ask: Ask, place: Place, h: Handed): Promise<Acquired | undefined> {
    if ("kept" in h) return undefined;
    if ("took" in h) return this.tookTurn(ask, place, h.took.kv, h.took.v, h.took.at);
    await this.giveUp(place);
    await this.settleUnknown(place.kv.key, h.lost.lease, h.lost.written).catch(() => {});
    throw h.lost.error;
  }

  /** The place's key now holds (`kv`, written at `at`): it left its waiting lease. */
  private tookTurn(ask: Ask, place: Place, kv: KeyValue, v: ParticipantValue, at: number): Acquired {
    place.left = true;
    // A queue lease goes back; a ticket's is bound to nothing now.
    if (place.queueLease) place.queueLease.done();
    else if (place.owned && place.v.t === 1) this.etcd.leaseRevoke(place.kv.lease).catch(() => {});
    return { grant: this.granted(ask, kv, v, place.nonce, kv.modRevision, at), replayed: false };
  }

  /** A waiter's value as the holder it becomes, on a lease etcd granted `ttl` for, at `at`. */
  private holderValue(waiting: ParticipantValue, ttl: number, at: number, marker?: CreateItem): ParticipantValue {
    const { t: _t, tt: _tt, ...rest } = waiting;
    return { ...rest, h: 1, ttl, at, ...(marker ? { dl: marker.lease.toString(16) } : {}) };
  }

  /**
   * The turn came: the waiter's key is put again, bound to a grant's lease, guarded by
   * the key's mod revision as the line showed it (so a place that left, or changed, is
   * never made a holder). Its create revision, the fencing token, stays. `undefined`
   * when the key changed: wait again (the line says what became of it).
   */
  private async convert(ask: Ask, place: Place, m: Member): Promise<Acquired | Delayed | typeof AGAIN | undefined> {
    const { leases } = this.strategies;
    const sentAt = Date.now();
    const lease = await leases.take(place.v.ttl ?? ask.o.ttl, { fresh: withDelay(place.v.ld, ask.delayKey) });
    const marker = await this.newMarker(ask, lease.grantedTtl, place.v.ld).catch((err: unknown) => {
      leases.reusable(lease, sentAt);
      throw err;
    });
    const v = this.holderValue(place.v, lease.grantedTtl, sentAt, marker);
    const written = JSON.stringify(v);
    const held = { key: m.kv.key, value: written, lease: lease.id };
    let revision: number | typeof DIED;
    try {
      revision = await this.grantingWrite(
        ask.delayKey === undefined
          ? this.etcd.putIfUnchanged({ ...held, modRevision: m.kv.modRevision })
          : // A lock's turn also needs its lock-delay to be over (no marker).
            this.etcd.guardedWrite({
              unchanged: [{ key: m.kv.key, modRevision: m.kv.modRevision }],
              created: [{ key: ask.delayKey, createRevision: 0 }],
              put: marker ? [held, marker] : [held],
            }),
        { key: m.kv.key, written, lease, marker, idempotent: place.v.s !== undefined },
      );
    } catch (err) {
      // The key may now hold on the grant's lease, no longer on the queue lease.
      place.queueLease?.forsake();
      throw err;
    }
    if (revision === DIED) return undefined;
    if (revision === 0) {
      leases.reusable(lease, sentAt);
      this.dropMarkerLease(marker);
      if (ask.delayKey === undefined) return undefined;
      // The txn failed on the key (it changed) or on a marker. A key that changed (another
      // attempt at this place took the turn, with a marker of its own) is waited for, then
      // claimed. A key still as the line showed it after the marker was read means the
      // marker (not this place's own grant's) failed it: wait it out, or, when it was gone
      // already, take the turn again at once (no change of the line would come to wake it).
      const blocker = await this.delayMarker(ask);
      if ((await this.etcd.get(m.kv.key)).kv?.modRevision !== m.kv.modRevision) return undefined;
      return blocker ? { delayed: blocker } : AGAIN;
    }
    return this.tookTurn(ask, place, { ...m.kv, value: written, modRevision: revision, lease: lease.id }, v, sentAt);
  }

  /** Gives up a place this request made (guarded by the revision it was written at). */
  private async giveUp(place: Place): Promise<void> {
    if (!place.owned || place.left) return;
    place.left = true;
    try {
      await this.deleteAt(place.kv.key, place.kv.modRevision);
    } catch {
      // Outcome unknown: the place must not stay in line behind our back.
      if (place.queueLease) place.queueLease.forsake();
      else this.etcd.leaseRevoke(place.kv.lease).catch(() => {});
      return;
    }
    if (place.queueLease) place.queueLease.done();
    else this.etcd.leaseRevoke(place.kv.lease).catch(() => {});
  }

  /** Keeps a ticket's lease alive while a request waits with it. */
  private keepTicket(place: Place): ReturnType<typeof setInterval> {
    const every = Math.max(500, ((place.v.tt ?? 30) * 1000) / 3);
    const timer = setInterval(() => void this.etcd.leaseKeepAliveOnce(place.kv.lease).catch(() => {}), every);
    (timer as { unref?: () => void }).unref?.();
    return timer;
  }

  private async ticketOf(ask: Ask, place: Place): Promise<Ticket> {
    return {
      ticket: formatHandle({ lease: place.kv.lease, keyId: ask.keyId, nonce: place.nonce }),
      position: await this.positionOf(ask.range, place.kv, Math.max(place.kv.modRevision, place.readAt ?? 0)),
      ttl: place.v.tt ?? ask.o.ticketTtl ?? 30,
    };
  }

  /**
   * Waiters ahead of `kv` in its line (holders not counted), from a copy of the line at
   * least as new as `atLeast` (what the caller has seen), else from etcd.
   */
  private async positionOf(range: LineRange, kv: KeyValue, atLeast = kv.modRevision): Promise<number> {
    const local = this.strategies.waits.position(range.start, kv.key, atLeast);
    if (local !== undefined) return local;
    // etcd counts a range before its create-revision filter: count the keys themselves.
    const ahead = await this.etcd.scan(range.start, range.end, { maxCreateRevision: kv.createRevision - 1 });
    return ahead.kvs.filter((o) => !holds(member(o))).length;
  }

  /** The refusal of a waiter that gave up: 409 with the line's holder as it is now. */
  private async held(ask: Ask, position: number | undefined): Promise<LockHeld> {
    const { oldest } = await this.reader.readOldest(ask.range, ask.o.limit);
    return (await this.refusal(ask, oldest, position ?? 0)) ?? new LockHeld(ask.what, undefined, 1, position);
  }

  // ---------------------------------------------------------------- idempotent retries

  /**
   * The participant an earlier attempt with the same Idempotency-Key made, as the
   * answer it would have had: its grant (claimed first), its ticket, or, for a waiter
   * still in line, a wait on that place. `undefined` when there is none (any more).
   */
  private async replay(ask: Ask): Promise<Acquired | undefined> {
    const idem = ask.idem;
    if (!idem) return undefined;
    const { kv, revision } = await this.etcd.get(ask.key);
    if (!kv) return undefined;
    const m = member(kv);
    const nonce = replayNonce(m.v, idem);
    // The key ID is derived from this caller's secret and key: anything else there is a fault.
    if (nonce === undefined) throw new EtcdUnavailableError(`${ask.what} has a participant this request cannot read`);
    if (m.v.fp !== idem.fp) throw new IdempotencyKeyMismatch();
    if (holds(m)) {
      const grant = await this.claim(ask.line, ask.keyId, m, nonce);
      return grant && { grant, replayed: true };
    }
    const place: Place = { kv, v: m.v, nonce, owned: m.v.t === 1, handedOut: m.v.t === 1, readAt: revision };
    if (m.v.t === 1) {
      if ((await this.etcd.leaseKeepAliveOnce(kv.lease)) <= 0) return undefined;
      if (ask.o.wait <= 0) return { ticket: await this.ticketOf(ask, place) };
    }
    return this.waitForTurnCounted(ask, place);
  }

  /** `waitForTurn` for a place that exists already; `undefined` when it left the line. */
  private async waitForTurnCounted(ask: Ask, place: Place): Promise<Acquired | undefined> {
    const counted = ask.o.wait > 0;
    if (counted) {
      if (this.waiters >= this.opts.maxWaiters) throw new TooManyWaiters(this.opts.maxWaiters);
      this.waiters++;
    }
    try {
      const r = await this.waitForTurn(ask, place);
      return r === GONE ? undefined : r;
    } finally {
      if (counted) this.waiters--;
    }
  }

  /**
   * Hands out a grant again (an idempotent retry, or a ticket redeemed twice). The grant
   * is claimed first: its value is put again with a claim mark, which moves its mod
   * revision, so the first attempt's clean-up (which deletes only at the revision it
   * wrote, and only its own unclaimed value) can no longer end the grant this answer
   * hands out. `undefined` when the grant changed or ended meanwhile.
   */
  private async claim(line: LineRef, keyId: string, m: Member, nonce: string): Promise<Grant | undefined> {
    let kv = m.kv;
    if (m.v.c !== 1) {
      const value = JSON.stringify({ ...m.v, c: 1 });
      let revision: number;
      try {
        revision = await this.etcd.putIfUnchanged({ key: kv.key, modRevision: kv.modRevision, value, lease: kv.lease });
      } catch (err) {
        if (err instanceof LeaseNotFoundError) return undefined;
        throw err;
      }
      if (revision === 0) return undefined;
      kv = { ...kv, value, modRevision: revision };
    }
    const sent = Date.now();
    const { ttl } = await this.etcd.leaseTimeToLive(kv.lease);
    if (ttl <= 0) return undefined;
    return this.grantOf(line, keyId, kv, m.v, nonce, ttl, sent);
  }

  // ---------------------------------------------------------------- tickets

  /** The participant a ticket names (whatever it became since); otherwise the ticket is lost. */
  private async ticketHolder(
    line: LineRef,
    what: string,
    ticket: string,
  ): Promise<{ h: Handle; m: Member; revision: number }> {
    const h = parseHandle(ticket);
    const { kv, revision } = h ? await this.etcd.get(this.keys.participant(line, h.keyId)) : { revision: 0 };
    const m = kv && member(kv);
    if (!h || !m || !nonceMatches(m.v, h.nonce)) throw ticketLost(what);
    return { h, m, revision };
  }

  async redeem(line: LineRef, ticket: string, o: RedeemOptions): Promise<Acquired> {
    const what = describe(line);
    const { h, m, revision } = await this.ticketHolder(line, what, ticket);
    if (holds(m)) {
      // Redeemed before, and that answer was lost: the same grant again.
      const grant = await this.claim(line, h.keyId, m, h.nonce);
      if (!grant) throw ticketLost(what);
      return { grant, replayed: true };
    }
    if (m.v.t !== 1 || m.kv.lease !== h.lease) throw ticketLost(what);
    const limit = m.v.limit ?? 1;
    if (o.ttl !== undefined && o.ttl !== m.v.ttl) {
      throw new TicketMismatch(`ttl differs from the ticket's: it was taken with ttl ${m.v.ttl}, got ${o.ttl}`);
    }
    if (o.owner !== undefined && o.owner !== m.v.owner) {
      throw new TicketMismatch(`owner differs from the one the ticket was taken with, got ${JSON.stringify(o.owner)}`);
    }
    if (o.value !== undefined && o.value !== m.v.val) {
      throw new TicketMismatch("value differs from the one the ticket was taken with");
    }
    if (o.limit !== undefined && o.limit !== limit) {
      throw new TicketMismatch(`limit differs from the ticket's: it was taken with limit ${limit}, got ${o.limit}`);
    }
    if (o.lockDelay !== undefined && o.lockDelay !== (m.v.ld ?? 0)) {
      throw new TicketMismatch(
        `lockDelay differs from the ticket's: it was taken with lockDelay ${m.v.ld ?? 0}, got ${o.lockDelay}`,
      );
    }
    // Coming back is what keeps a ticket in line.
    if ((await this.etcd.leaseKeepAliveOnce(h.lease)) <= 0) throw ticketLost(what);
    const ask: Ask = {
      line,
      what,
      range: this.keys.range(line),
      key: m.kv.key,
      keyId: h.keyId,
      o: {
        ttl: m.v.ttl ?? 30,
        ...(m.v.owner !== undefined ? { owner: m.v.owner } : {}),
        ...(m.v.val !== undefined ? { value: m.v.val } : {}),
        limit,
        wait: o.wait,
        queue: true,
        ...(m.v.ld ? { lockDelay: m.v.ld } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      },
      deadline: Date.now() + o.wait * 1000,
      ...(line.kind === "lock" ? { delayKey: this.keys.delayMarker(line) } : {}),
    };
    const place: Place = { kv: m.kv, v: m.v, nonce: h.nonce, owned: true, handedOut: true, readAt: revision };
    const r = await this.waitForTurnCounted(ask, place);
    if (!r) throw ticketLost(what);
    return r;
  }

  async leave(line: LineRef, ticket: string): Promise<void> {
    const what = describe(line);
    const { h, m } = await this.ticketHolder(line, what, ticket);
    if (holds(m)) {
      // It became a grant (a redeem's answer was lost): leaving ends that grant.
      await this.endGrant(line, what, m);
      return;
    }
    if (m.v.t !== 1 || m.kv.lease !== h.lease) throw ticketLost(what);
    if (!(await this.deleteAt(m.kv.key, m.kv.modRevision))) throw ticketLost(what);
    // A ticket's lease was made for this key alone.
    await this.etcd.leaseRevoke(h.lease).catch(() => false);
  }

  // ---------------------------------------------------------------- holders

  async renew(line: LineRef, handle: string, o: RenewOptions = {}): Promise<Grant> {
    const what = describe(line);
    const h = parseHandle(handle);
    let m = await this.heldBy(line, what, h);
    if (o.value !== undefined && o.value !== m.v.val && h) m = await this.publish(line, what, h, m, o.value);
    const sentAt = Date.now();
    const marker = this.markerOf(line, m.v);
    // A lock-delay marker's lease is renewed with the grant's, so it stays the delay ahead:
    // first, so a keep-alive of the grant's never succeeds where the marker's failed.
    if (marker) await this.etcd.leaseKeepAliveOnce(marker.lease);
    const ttl = await this.etcd.leaseKeepAliveOnce(m.kv.lease);
    if (ttl <= 0 && marker) {
      // The grant expired while this renew ran, after its marker was kept alive for the
      // grant's TTL plus the delay: the delay counts from now instead.
      await this.shortenMarker(marker, m.v.ld ?? 1).catch(() => {});
    }
    if (ttl <= 0 || !h) throw new LockLost(what);
    return { ...this.grantOf(line, h.keyId, m.kv, m.v, h.nonce, ttl, sentAt), ttl };
  }

  /**
   * Replaces the value a holder publishes: its key put again on its own lease, guarded by
   * the mod revision the handle check read, so a value is never written for a grant that
   * ended (or a key that changed) since. A key that changed but is still this grant's
   * (claimed by an idempotent retry meanwhile) is read and tried again.
   */
  private async publish(line: LineRef, what: string, h: Handle, held: Member, value: string): Promise<Member> {
    let m = held;
    for (let attempt = 1; ; attempt++) {
      const written = JSON.stringify({ ...m.v, val: value });
      let revision: number;
      try {
        revision = await this.etcd.putIfUnchanged({
          key: m.kv.key,
          modRevision: m.kv.modRevision,
          value: written,
          lease: m.kv.lease,
        });
      } catch (err) {
        if (err instanceof LeaseNotFoundError) throw new LockLost(what);
        throw err;
      }
      if (revision !== 0) {
        // This instance's read-free release follows the grant to its new revision.
        this.own.moved(m.kv.key, h, revision);
        return member({ ...m.kv, value: written, modRevision: revision });
      }
      if (attempt >= FORCE_ATTEMPTS) throw new EtcdUnavailableError(`${what} changed on every attempt to publish`);
      m = await this.heldBy(line, what, h);
    }
  }

  async release(line: LineRef, handle: string): Promise<Ended> {
    const what = describe(line);
    const h = parseHandle(handle);
    // A grant this instance made: an unchanged mod revision proves the key still holds
    // the value written with this nonce, so no read first.
    const key = h && this.keys.participant(line, h.keyId);
    const own = h && key ? this.own.take(key, h) : undefined;
    if (own && key && (await this.endHeld(line, key, own))) return { grantedAt: own.at };
    return this.endGrant(line, what, await this.heldBy(line, what, h));
  }

  /** Ends a grant if it is still exactly this grant's (see endHeld); otherwise LockLost. */
  private async endGrant(line: LineRef, what: string, m: Member): Promise<Ended> {
    const marker = this.markerOf(line, m.v);
    const ending: Ending = {
      revision: m.kv.modRevision,
      lease: m.kv.lease,
      ...(m.v.ttl !== undefined ? { ttl: m.v.ttl } : {}),
      ...(m.v.at !== undefined ? { at: m.v.at } : {}),
      ...(marker ? { marker } : {}),
    };
    // An expiry or a new grant in between changes the mod revision: never a 204 for nothing.
    if (!(await this.endHeld(line, m.kv.key, ending))) throw new LockLost(what);
    return m.v.at !== undefined ? { grantedAt: m.v.at } : {};
  }

  /**
   * Ends a grant as its holder asked (a release, an answer nobody received), if its key
   * is still at `g.revision`: in one txn that also makes this instance's next waiter the
   * holder when it can (handOver), else by a guarded delete (its lock-delay marker with
   * it). A lease no waiter took goes to the pool. Whether it ended.
   */
  private async endHeld(line: LineRef, key: string, g: Ending): Promise<boolean> {
    const handed = await this.handOver(line, key, g);
    if (!handed && !(await this.deleteGrant(key, g.revision, g.marker))) return false;
    // The grant ended: its reported expiry serves nothing now (a later grant of the same
    // key has another revision), and keeping it would only crowd the bounded map.
    this.expiry.forget(key);
    if (handed?.leaseTaken) return true;
    // Dated from the grant, not from now: a holder may release after its TTL ran out but
    // before etcd revoked the lease, and a lease pooled as fresh would take the next grant
    // (or a waiter's turn) down with it moments later.
    if (g.ttl !== undefined) this.strategies.leases.reusable({ id: g.lease, grantedTtl: g.ttl }, g.at);
    else this.strategies.leases.discard(g.lease);
    return true;
  }

  /**
   * Local handoff: ends the grant `key` and makes the next participant of its line the
   * holder in ONE txn, when that participant is a plain request waiting on this instance
   * (mayBeHandedTo), and answers that request at once (handedTurn):
   *
   *   Txn(if mod_revision(key) == g.revision and mod_revision(waiter) == its join's
   *       [locks: and create_revision(lock-delay marker) == 0]
   *       then Delete(key), Put(waiter, its holder value, a grant lease))
   *
   * instead of a delete, the watch event that wakes the waiter, and the waiter's own txn.
   * The waiter's create revision, its token, stays, as with its own turn. Handoffs of
   * other lines started meanwhile may share the txn (group commit: txns.guardedWrite);
   * each keeps its own guards, and one whose guards failed is told so alone.
   *
   * Why that is safe: the waiter is alive (its request waits in this process). Who is
   * next is read from this instance's copy of the line (kept while a waiter of it waits
   * there), which is the line as it was at some revision v: every key that existed at v.
   * A key ahead of the waiter in the line at the txn was created before the waiter, so
   * before v, and has existed since (a key made again gets a new create revision), so it
   * is in the copy, ahead of the waiter there too; and a holder in the copy still holds
   * (a holder never waits again). Keys not in the copy were made later, so are behind the
   * waiter; keys in it that left or became holders since only leave it fewer ahead, or
   * more of them holding. So if the copy, without the releasing key, says the waiter may
   * hold (mayHold: among the first `limit`, everyone ahead holding), then it may at the
   * txn, once that key is deleted, as long as the txn's guards hold: the releasing key
   * is still this grant (else this would hand over a grant that ended), and the waiter's
   * key is still exactly as it joined (a key gone or made anew, at the back, since the
   * copy was read must never be put as a holder).
   *
   * A claimed waiter is out of the registry before the txn is sent, and waits for this
   * outcome before anything else (its turn, giving up): `undefined` when nothing was
   * written (no waiter to hand to, a guard failed, the lease ended: the caller deletes the
   * grant as usual, and the waiter waits on); `leaseTaken` when the grant's lease is now
   * the waiter's (or ended), so not pooled. An unknown outcome is thrown, as a failed
   * delete's would be; the waiter then leaves the line (handedTurn).
   */
  private async handOver(line: LineRef, key: string, g: Ending): Promise<{ leaseTaken: boolean } | undefined> {
    // A grant with a lock-delay marker ends by deleting the marker too: its successor waits as usual.
    if (g.marker) return undefined;
    const { start } = this.keys.range(line);
    const copy = this.strategies.waits.copy(start);
    const next = copy && nextWaiting(copy, key);
    const claim =
      next &&
      this.handoff.claim(
        start,
        next.kv.key,
        ({ ask, place }) =>
          place.kv.modRevision === next.kv.modRevision && mayHold(copy, next.kv.key, ask.o.limit, key),
      );
    if (!claim) return undefined;
    const { ask, place } = claim.waiter;
    const { leases } = this.strategies;
    const sentAt = Date.now();
    const ttl = place.v.ttl ?? ask.o.ttl;
    // The released grant's own lease serves the waiter when etcd granted it the TTL the
    // waiter asks for and it has time left (by the pool's rule): no lease to take, none to pool.
    const reused = g.ttl === ttl && hasTimeLeft(g.at ?? 0, g.ttl, sentAt);
    let lease: GrantLease;
    try {
      lease = reused ? { id: g.lease, grantedTtl: ttl, pooled: true } : await leases.take(ttl);
    } catch {
      claim.settle({ kept: true });
      return undefined;
    }
    const v = this.holderValue(place.v, lease.grantedTtl, sentAt);
    const written = JSON.stringify(v);
    // A lease from the pool is sent with its reset, as a turn's is (see grantingWrite): it
    // is this instance's alone. The released grant's lease is not, until the txn's guard
    // proves its key is still this grant: the grant may have ended meanwhile (released
    // through another instance, whose pool gave the lease to another grant), and a reset
    // sent then would keep that grant alive past its TTL, and past its lock-delay marker.
    // So it is reset once the txn made it the waiter's.
    const [wrote, renewedAlongside] = await Promise.allSettled([
      this.strategies.txns.guardedWrite({
        write: {
          unchanged: [
            { key, modRevision: g.revision },
            { key: place.kv.key, modRevision: place.kv.modRevision },
          ],
          ...(ask.delayKey !== undefined ? { created: [{ key: ask.delayKey, createRevision: 0 }] } : {}),
          delete: [key],
          put: [{ key: place.kv.key, value: written, lease: lease.id }],
        },
        line: start,
      }),
      lease.pooled && !reused ? this.etcd.leaseKeepAliveOnce(lease.id) : Promise.resolve(lease.grantedTtl),
    ]);
    if (wrote.status === "rejected" && !(wrote.reason instanceof LeaseNotFoundError)) {
      claim.settle({ lost: { error: wrote.reason, lease: lease.id, written } });
      throw wrote.reason;
    }
    if (wrote.status === "rejected" || wrote.value === 0) {
      // Nothing was written (a guard failed, or the lease had ended): the grant is deleted
      // as usual and the waiter waits on. A lease taken for it is bound to nothing.
      claim.settle({ kept: true });
      if (!reused && renewedAlongside.status === "fulfilled" && renewedAlongside.value > 0) {
        leases.reusable(lease, sentAt);
      }
      return undefined;
    }
    const revision = wrote.value;
    const settle = (renewed: PromiseSettledResult<number>) => {
      if (renewed.status === "fulfilled" && renewed.value > 0) {
        const kv: KeyValue = { ...place.kv, value: written, modRevision: revision, lease: lease.id };
        claim.settle({ took: { kv, v, at: sentAt } });
      } else if (renewed.status === "fulfilled") {
        // The lease ended just after the txn, taking the waiter's new key with it: the
        // grant did end; the waiter finds its place gone and joins again.
        claim.settle({ kept: true });
      } else {
        // Whether the lease was reset is unknown, so its grant's TTL is: the waiter's key
        // must not stay held on it (see handedTurn).
        claim.settle({ lost: { error: renewed.reason, lease: lease.id, written } });
      }
    };
    // The released grant ended with the txn: its release is answered without waiting for
    // the reset, which only the waiter's answer needs.
    if (reused) {
      this.etcd.leaseKeepAliveOnce(lease.id).then(
        (value) => settle({ status: "fulfilled", value }),
        (reason: unknown) => settle({ status: "rejected", reason }),
      );
    } else settle(renewedAlongside);
    return { leaseTaken: reused };
  }

  /** The holder the handle names; otherwise LockLost. */
  private async heldBy(line: LineRef, what: string, h: Handle | undefined): Promise<Member> {
    if (!h) throw new LockLost(what);
    const { kv } = await this.etcd.get(this.keys.participant(line, h.keyId));
    const m = kv && member(kv);
    // The lease alone is not enough: leases are reused across grants, the nonce is not.
    if (!m || !holds(m) || m.kv.lease !== h.lease || !nonceMatches(m.v, h.nonce)) throw new LockLost(what);
    return m;
  }

  /**
   * Ends a holder's grant, whoever holds it: the oldest, or the one whose token is given.
   *
   * Never revokes the lease the read saw: between the read and a revoke the grant may
   * have been released and its lease bound to another line, even another tenant's. The
   * key is deleted by a txn guarded by its mod revision; if it changed meanwhile, the line
   * is read again. Only after that txn succeeded is the lease revoked: it was then this
   * grant's alone, and a deleted grant's lease is never pooled (its holder's release finds
   * no key), so nothing else can be bound to it.
   */
  async forceRelease(line: LineRef, token?: number): Promise<Ended | undefined> {
    const what = describe(line);
    const range = this.keys.range(line);
    for (let attempt = 1; ; attempt++) {
      const { oldest } = await this.reader.readOldest(range, line.kind === "lock" ? 1 : MAX_LIMIT);
      const target = oldest.find((m) => holds(m) && (token === undefined || m.kv.createRevision === token));
      if (!target) {
        if (oldest.some((m) => m.kv.lease === 0n)) throw new ForeignKey(what);
        return undefined;
      }
      const marker = this.markerOf(line, target.v);
      if (
        marker ? await this.forceDelayed(target, marker) : await this.deleteAt(target.kv.key, target.kv.modRevision)
      ) {
        // Awaited (best effort): when the admin is answered, the holder's lease is gone too.
        await this.etcd.leaseRevoke(target.kv.lease).catch(() => {});
        return target.v.at !== undefined ? { grantedAt: target.v.at } : {};
      }
      if (attempt >= FORCE_ATTEMPTS) {
        throw new EtcdUnavailableError(`${what} changed hands on every attempt to force-release it`);
      }
    }
  }

  /**
   * Force-ends a grant that asked for a lock-delay: the txn that deletes its key puts its
   * marker on a fresh lease of just the delay, so the name is kept back for the delay
   * from now (the marker's own lease still counted the grant's TTL too).
   */
  private forceDelayed(m: Member, marker: MarkerRef): Promise<boolean> {
    return this.remark(marker, m.v.ld ?? 1, { key: m.kv.key, modRevision: m.kv.modRevision }, [m.kv.key]);
  }

  /**
   * A grant's marker, still on the lease made for it (so still that grant's: no other
   * grant of the name can be made while it exists), put on a fresh lease of just the delay.
   */
  private async shortenMarker(marker: MarkerRef, lockDelay: number): Promise<void> {
    const { kv } = await this.etcd.get(marker.key);
    if (kv?.lease !== marker.lease) return;
    await this.remark(marker, lockDelay, { key: kv.key, modRevision: kv.modRevision });
  }

  /**
   * One txn, if `unchanged` still is: the marker put on a fresh lease of `lockDelay`
   * (counting from now), and `del` deleted. Whether it applied.
   */
  private async remark(marker: MarkerRef, lockDelay: number, unchanged: DeleteItem, del: string[] = []) {
    const fresh = randomLeaseId();
    await this.etcd.leaseGrant(fresh, lockDelay);
    const moved =
      (await this.etcd.guardedWrite({
        unchanged: [unchanged],
        delete: del,
        put: [{ key: marker.key, value: JSON.stringify({ ld: lockDelay }), lease: fresh }],
      })) !== 0;
    // Whichever of the two leases the marker is not on is bound to nothing.
    this.etcd.leaseRevoke(moved ? marker.lease : fresh).catch(() => {});
    return moved;
  }

  // ---------------------------------------------------------------- fences

  async fence(line: LineRef, token: number): Promise<void> {
    const current = await this.reader.holderTokens(line);
    if (!current.includes(token)) throw new FenceStale(describe(line), token, current);
  }

  async writeState(line: LineRef, handle: string, value: string): Promise<StateView> {
    const what = describe(line);
    const m = await this.heldBy(line, what, parseHandle(handle));
    const token = m.kv.createRevision;
    const updatedAt = new Date().toISOString();
    const stored: StoredState = { value, token, at: updatedAt };
    // The participant's key with the create revision read is this grant, still holding
    // (a holder never waits again; an expiry, release or force deletes the key): so the
    // state is written only while the grant is current, whatever happened since the read.
    const revision = await this.etcd.guardedWrite({
      created: [{ key: m.kv.key, createRevision: token }],
      put: [{ key: this.keys.state(line), value: JSON.stringify(stored), lease: 0n }],
    });
    if (revision === 0) throw new LockLost(what);
    return { value, token, revision, updatedAt };
  }

  async readState(line: LineRef): Promise<StateView> {
    const { kv } = await this.etcd.get(this.keys.state(line));
    const stored = kv && decodeState(kv.value);
    if (!kv || !stored) throw new StateNotFound(describe(line));
    return { value: stored.value, token: stored.token, revision: kv.modRevision, updatedAt: stored.at };
  }

  // ---------------------------------------------------------------- reading (reading.ts)

  inspect(line: LineRef): Promise<LineInfo | undefined> {
    return this.reader.inspect(line);
  }

  read(line: LineRef, o: ReadOptions = {}): Promise<LineState> {
    return this.reader.read(line, o);
  }

  openFeed(o: FeedOptions): Promise<Feed> {
    return this.reader.openFeed(o);
  }

  list(kind: LineKind, o: ListOptions): Promise<{ items: LineInfo[]; next?: string }> {
    return this.reader.list(kind, o);
  }

  /**
   * The grant as its holder sees it. `sent`: when the call that measured `remaining`
   * was sent, so the expiry is a lower bound of the lease's.
   */
  private grantOf(
    line: LineRef,
    keyId: string,
    kv: KeyValue,
    v: ParticipantValue,
    nonce: string,
    remaining: number,
    sent: number,
  ): Grant {
    return {
      name: line.name,
      token: kv.createRevision,
      lease: formatHandle({ lease: kv.lease, keyId, nonce }),
      ttl: v.ttl ?? remaining,
      expiresAt: this.expiry.estimate(kv.key, kv.createRevision, sent, remaining),
      ...(v.owner !== undefined ? { owner: v.owner } : {}),
      ...(v.val !== undefined ? { value: v.val } : {}),
      ...(line.kind === "semaphore" ? { limit: v.limit ?? 1 } : {}),
    };
  }
}

/** A line's guarded state as stored in etcd. */
interface StoredState {
  value: string;
  token: number;
  at: string;
}

function decodeState(raw: string): StoredState | undefined {
  try {
    const o = JSON.parse(raw) as Partial<StoredState>;
    if (typeof o.value !== "string" || typeof o.token !== "number" || typeof o.at !== "string") return undefined;
    return { value: o.value, token: o.token, at: o.at };
  } catch {
    return undefined;
  }
}

function describe(line: LineRef): string {
  return `${line.kind} ${line.name}`;
}

/** Callers of one line must agree on its limit (a lock's is always 1). */
function checkLimit(what: string, oldest: Member[], limit: number): void {
  const current = lineLimit(oldest);
  if (current !== undefined && current !== limit) throw new LimitMismatch(what, current, limit);
}
