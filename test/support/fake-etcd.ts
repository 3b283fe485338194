import { comparedKeys, comparesHold } from "../../src/etcd/guarded.js";
import { newestOf, readsNewest } from "../../src/etcd/join.js";
import {
  type AllOrNothing,
  type CreateItem,
  type DeleteItem,
  type EtcdClient,
  EtcdUnavailableError,
  type GetResult,
  type GuardedAllResult,
  type GuardedWrite,
  type JoinAllResult,
  type JoinItem,
  type KeyValue,
  LeaseExistsError,
  LeaseNotFoundError,
  type LeaseTtl,
  type RangeResult,
  type ScanQuery,
  type ScanResult,
  type UpdateItem,
  type WatchEnd,
  type WatchEvent,
  type WatchOptions,
} from "../../src/etcd/types.js";

/**
 * An in-memory `EtcdClient` for fast unit tests: one etcd member with no network, keeping
 * the semantics the lock protocol relies on.
 *
 * - One global revision, raised by one for every write that changes something (a txn's
 *   puts and deletes share it); reads, failed compares, and deletes or revokes that find
 *   no key leave it alone. A fresh store is at revision 1, as a fresh etcd is.
 * - Leases have caller-chosen IDs; a TTL below `minTtl` is raised to it (etcd's minimum is
 *   1.5 × the election timeout rounded up: 2 s with default timing). Time is a virtual
 *   clock moved only by `advance(ms)`: a lease whose deadline it reaches is revoked on the
 *   spot (real etcd revokes within ~500 ms after), its keys deleted at one revision.
 * - Every PUT and DELETE is kept in an event log until `compact(rev)`, so a watch
 *   (`watchDeletes`, `watchRange`) replays history from its start revision and then
 *   delivers live (asynchronously, as a stream would, each revision's events together); a
 *   start revision below the compaction point ends the watch with "compacted".
 * - `scan` and `joinAll`'s reads count as etcd 3.4 does: `count` is every key in the
 *   range, whatever `maxCreateRevision` filtered out.
 * - Errors as the transports report them: `LeaseExistsError`, `LeaseNotFoundError` (a txn
 *   whose chosen branch puts with a missing lease; nothing written), `0` from a keep-alive
 *   and `{ttl: -1}` from timeToLive for a missing lease, `false` from its revoke; etcd's
 *   own refusals (duplicate keys in a txn, more than `maxTxnOps` operations in a branch)
 *   as plain errors, which the transports pass on as errors that are not about
 *   reachability.
 *
 * Fault injection, to script races deterministically: `failNext` makes a call reject
 * (before it takes effect, or after: the write applied but its answer was lost),
 * `pauseNext` holds a call until the test releases it, `nextCall` tells when one arrives.
 */
export interface FakeEtcdOptions {
  /** Smallest lease TTL granted, seconds (etcd 3.4 with default timing: 2). */
  minTtl?: number;
  /** etcd's --max-txn-ops: operations allowed per txn branch (default 128). */
  maxTxnOps?: number;
  /** Start of the virtual clock, ms since the epoch. */
  startMs?: number;
}

/** The EtcdClient calls faults can be injected into. */
export type Method = Exclude<keyof EtcdClient, "close">;
export type Args<M extends Method> = Parameters<EtcdClient[M]>;

export interface FaultOptions<M extends Method> {
  /** Only a call whose arguments match (default: the next call of the method). */
  match?: (...args: Args<M>) => boolean;
  /**
   * Where in the call the fault strikes: `false` (default) before it takes effect, `true`
   * after (a write applied, a read was served; only the answer is late or lost).
   * A watch is always struck before it is established.
   */
  applied?: boolean;
}

export interface Paused<M extends Method> {
  /** Resolves with the call's arguments once it is held (after it applied, with `applied`). */
  reached: Promise<Args<M>>;
  /** Lets the call go on (and fail, when `error` was given). */
  release(): void;
}

export interface FakeLease {
  id: bigint;
  grantedTtl: number;
  /** Virtual ms at which the lease expires. */
  expiresAt: number;
  keys: ReadonlySet<string>;
}

/** etcd's limit on a lease's TTL (`MaxLeaseTTL`). */
const MAX_LEASE_TTL = 9_000_000_000;
const MAX_INT64 = (1n << 63n) - 1n;

interface StoredKv {
  value: string;
  createRevision: number;
  modRevision: number;
  lease: bigint;
}

interface MutableLease {
  id: bigint;
  grantedTtl: number;
  expiresAt: number;
  keys: Set<string>;
}

interface LoggedEvent {
  key: string;
  revision: number;
  event: WatchEvent;
  /** The key as it was before the event (a watch with prevKv reports it). */
  prev?: KeyValue;
}

interface LiveWatch {
  /** The watched key, or the start of the watched range. */
  key: string;
  /** The end of the watched range; `undefined` when only `key` is watched. */
  rangeEnd: string | undefined;
  deletesOnly: boolean;
  prevKv?: boolean;
  /** Revisions from this one on are still to be reported. */
  next: number;
  /** A delivery is queued. */
  queued: boolean;
  onEvents(revision: number, events: WatchEvent[]): void;
  end(outcome: WatchEnd | Error): void;
}

interface Hook {
  method: Method;
  match?: (...args: never[]) => boolean;
  applied: boolean;
  error?: Error;
  gate?: { reached(args: unknown[]): void; released: Promise<void> };
}

interface CallWaiter {
  method: Method;
  match?: (...args: never[]) => boolean;
  resolve(args: unknown[]): void;
}

/** Byte order of the UTF-8 encodings, as etcd sorts keys. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** As in etcd: range_end `undefined` or "" means the key `start` alone, "\0" every key from `start` on. */
function inRange(key: string, start: string, end: string | undefined): boolean {
  if (end === undefined || end === "") return key === start;
  return compareKeys(key, start) >= 0 && (end === "\0" || compareKeys(key, end) < 0);
}

export class FakeEtcd implements EtcdClient {
  private rev = 1;
  private compacted = 0;
  private clock: number;
  private closed = false;
  private readonly kvs = new Map<string, StoredKv>();
  private readonly leases = new Map<bigint, MutableLease>();
  /** Every PUT and DELETE since the compaction point, in revision order. */
  private readonly events: LoggedEvent[] = [];
  private readonly watches = new Set<LiveWatch>();
  private hooks: Hook[] = [];
  private callWaiters: CallWaiter[] = [];
  private readonly minTtl: number;
  private readonly maxTxnOps: number;
  /** Every EtcdClient call in order, with its arguments. */
  readonly calls: { method: Method; args: unknown[] }[] = [];

  constructor(o: FakeEtcdOptions = {}) {
    this.minTtl = o.minTtl ?? 2;
    this.maxTxnOps = o.maxTxnOps ?? 128;
    this.clock = o.startMs ?? Date.UTC(2030, 0, 1);
  }

  // -------------------------------------------------------------------------------------
  // Test controls (no faults, not recorded in `calls`).

  /** The virtual clock, ms since the epoch. */
  now(): number {
    return this.clock;
  }

  /** Moves the virtual clock on, revoking every lease whose deadline it reaches (soonest first). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError("advance: ms must be >= 0");
    this.clock += ms;
    const due = [...this.leases.values()]
      .filter((l) => l.expiresAt <= this.clock)
      .sort((a, b) => a.expiresAt - b.expiresAt);
    for (const l of due) this.revokeLease(l);
  }

  /** The store's current revision. */
  get revision(): number {
    return this.rev;
  }

  /** The key's current value, read without going through the client. */
  peek(key: string): KeyValue | undefined {
    const kv = this.kvs.get(key);
    return kv && { key, ...kv };
  }

  /** The keys in [start, end), oldest (by create revision) first, read without going through the client. */
  peekRange(start: string, end: string): KeyValue[] {
    return this.scanNow(start, end, { byCreate: true }).kvs;
  }

  /** The lease's state, or `undefined` once it is revoked or expired. */
  lease(id: bigint): FakeLease | undefined {
    const l = this.leases.get(id);
    return l && { id: l.id, grantedTtl: l.grantedTtl, expiresAt: l.expiresAt, keys: new Set(l.keys) };
  }

  /** A plain Put, as another etcd client would write it; returns its revision. */
  put(key: string, value: string, lease = 0n): number {
    if (lease !== 0n && !this.leases.has(lease)) throw new LeaseNotFoundError("etcdserver: requested lease not found");
    this.rev++;
    this.putAt(key, value, lease, this.rev);
    return this.rev;
  }

  /** A plain Delete; returns the revision after it (unchanged when the key did not exist). */
  delete(key: string): number {
    if (this.kvs.has(key)) {
      this.rev++;
      this.deleteAt(key, this.rev);
    }
    return this.rev;
  }

  /** Compacts history before `revision`: watches that start below it end "compacted". */
  compact(revision: number): void {
    if (revision > this.rev) throw new Error("mvcc: required revision is a future revision");
    if (revision <= this.compacted) throw new Error("mvcc: required revision has been compacted");
    this.compacted = revision;
    // What a live watch has yet to get stays: real etcd would have sent it already.
    const owed = Math.min(revision, ...[...this.watches].map((w) => w.next));
    this.events.splice(0, this.firstEventAt(owed));
  }

  /**
   * Ends the open watches (of `key`, or all) as a broken stream would: with an error
   * (a transport that could not re-establish it) or "compacted" (it had to resume from
   * a compacted revision).
   */
  endWatches(outcome: Error | "compacted", key?: string): void {
    for (const w of [...this.watches]) if (key === undefined || w.key === key) w.end(outcome);
  }

  /** Open watches (of `key`, or all). */
  openWatches(key?: string): number {
    return [...this.watches].filter((w) => key === undefined || w.key === key).length;
  }

  /** The next matching call of `method` rejects with `error` (default EtcdUnavailableError). */
  failNext<M extends Method>(method: M, o: FaultOptions<M> & { error?: Error } = {}): void {
    this.hooks.push({
      method,
      ...(o.match ? { match: o.match as Hook["match"] } : {}),
      applied: o.applied ?? false,
      error: o.error ?? new EtcdUnavailableError(`etcd ${method} failed (injected)`),
    });
  }

  /**
   * Holds the next matching call of `method` until `release()`: before it takes effect,
   * or with `applied` after it did (a read answered with what it saw then). With `error`
   * the call rejects when released.
   */
  pauseNext<M extends Method>(method: M, o: FaultOptions<M> & { error?: Error } = {}): Paused<M> {
    let reached: (args: Args<M>) => void = () => {};
    let release: () => void = () => {};
    const reachedP = new Promise<Args<M>>((r) => {
      reached = r;
    });
    const released = new Promise<void>((r) => {
      release = r;
    });
    this.hooks.push({
      method,
      ...(o.match ? { match: o.match as Hook["match"] } : {}),
      applied: o.applied ?? false,
      ...(o.error ? { error: o.error } : {}),
      gate: { reached: (args) => reached(args as Args<M>), released },
    });
    return { reached: reachedP, release };
  }

  /** Resolves with the arguments of the next matching call of `method` (which goes on as usual). */
  nextCall<M extends Method>(method: M, match?: (...args: Args<M>) => boolean): Promise<Args<M>> {
    return new Promise((resolve) => {
      this.callWaiters.push({
        method,
        ...(match ? { match: match as CallWaiter["match"] } : {}),
        resolve: (args) => resolve(args as Args<M>),
      });
    });
  }

  /** How many times `method` was called (since the last `resetCalls`). */
  count(method: Method): number {
    return this.calls.filter((c) => c.method === method).length;
  }

  /** The arguments of every call of `method`, in order. */
  argsOf<M extends Method>(method: M): Args<M>[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args as Args<M>);
  }

  resetCalls(): void {
    this.calls.length = 0;
  }

  // -------------------------------------------------------------------------------------
  // EtcdClient.

  get(key: string): Promise<GetResult> {
    return this.call("get", [key], () => {
      const kv = this.peek(key);
      return { revision: this.rev, ...(kv ? { kv } : {}) };
    });
  }

  range(start: string, end: string, limit: number): Promise<RangeResult> {
    return this.call("range", [start, end, limit], () => {
      const { kvs, more } = this.scanNow(start, end, { limit });
      return { revision: this.rev, kvs, more };
    });
  }

  scan(start: string, end: string, q: ScanQuery): Promise<ScanResult> {
    return this.call("scan", [start, end, q], () => this.scanNow(start, end, q));
  }

  leaseGrant(id: bigint, ttlSeconds: number): Promise<number> {
    return this.call("leaseGrant", [id, ttlSeconds], () => {
      if (!Number.isSafeInteger(ttlSeconds)) throw new RangeError(`lease TTL must be an integer, got ${ttlSeconds}`);
      if (id <= 0n || id > MAX_INT64) throw new RangeError("fake etcd: lease IDs must be positive int64s");
      if (ttlSeconds > MAX_LEASE_TTL) throw new Error("etcdserver: too large lease TTL");
      if (this.leases.has(id)) throw new LeaseExistsError("etcdserver: lease already exists");
      const grantedTtl = Math.max(ttlSeconds, this.minTtl);
      this.leases.set(id, { id, grantedTtl, expiresAt: this.clock + grantedTtl * 1000, keys: new Set() });
      return grantedTtl;
    });
  }

  leaseKeepAliveOnce(id: bigint): Promise<number> {
    return this.call("leaseKeepAliveOnce", [id], () => {
      const l = this.leases.get(id);
      if (!l) return 0;
      l.expiresAt = this.clock + l.grantedTtl * 1000;
      return l.grantedTtl;
    });
  }

  leaseRevoke(id: bigint): Promise<boolean> {
    return this.call("leaseRevoke", [id], () => {
      const l = this.leases.get(id);
      if (!l) return false;
      this.revokeLease(l);
      return true;
    });
  }

  leaseTimeToLive(id: bigint): Promise<LeaseTtl> {
    return this.call("leaseTimeToLive", [id], () => {
      const l = this.leases.get(id);
      if (!l) return { ttl: -1, grantedTtl: 0 };
      // etcd truncates the remaining time to whole seconds.
      return { ttl: Math.floor((l.expiresAt - this.clock) / 1000), grantedTtl: l.grantedTtl };
    });
  }

  createAllIfAbsent(items: CreateItem[]): Promise<AllOrNothing> {
    return this.call("createAllIfAbsent", [items], () => {
      this.checkTxn(items);
      if (!items.every((i) => !this.kvs.has(i.key))) return this.failed(items);
      this.checkLeases(items);
      if (items.length > 0) {
        this.rev++;
        for (const i of items) this.putAt(i.key, i.value, i.lease, this.rev);
      }
      return { applied: true, revision: this.rev };
    });
  }

  deleteAllIfUnchanged(items: DeleteItem[]): Promise<AllOrNothing> {
    return this.call("deleteAllIfUnchanged", [items], () => {
      this.checkTxn(items);
      // An absent key's mod_revision is 0.
      if (!items.every((i) => (this.kvs.get(i.key)?.modRevision ?? 0) === i.modRevision)) return this.failed(items);
      const present = items.filter((i) => this.kvs.has(i.key));
      if (present.length > 0) {
        this.rev++;
        for (const i of present) this.deleteAt(i.key, this.rev);
      }
      return { applied: true, revision: this.rev };
    });
  }

  putIfUnchanged(item: UpdateItem): Promise<number> {
    return this.call("putIfUnchanged", [item], () => {
      if ((this.kvs.get(item.key)?.modRevision ?? 0) !== item.modRevision) return 0;
      if (item.lease !== 0n && !this.leases.has(item.lease)) {
        throw new LeaseNotFoundError("etcdserver: requested lease not found");
      }
      this.rev++;
      this.putAt(item.key, item.value, item.lease, this.rev);
      return this.rev;
    });
  }

  joinAll(items: JoinItem[]): Promise<JoinAllResult> {
    return this.call("joinAll", [items], () => {
      // Per branch: a compare and a Put each, one more compare with `absent` and one more
      // Put with `with` (the reads of a failed join go in txns of their own).
      const compares = items.reduce((n, i) => n + (i.absent === undefined ? 1 : 2), 0);
      const writes = items.reduce((n, i) => n + (i.with === undefined ? 1 : 2), 0);
      this.checkTxn(items, Math.max(compares, writes) / Math.max(1, items.length));
      // etcd's compare over a range holds when every key in it holds it (so when it is empty).
      const holds = (i: JoinItem) =>
        [...this.kvs].every(([k, kv]) => !inRange(k, i.start, i.end) || kv.createRevision < i.maxCreateRevision + 1) &&
        (i.absent === undefined || !this.kvs.has(i.absent));
      if (!items.every(holds)) {
        const reads = items.map((i) => {
          const oldest = this.scanNow(i.start, i.end, {
            byCreate: true,
            limit: i.readLimit,
            countOnly: i.readLimit <= 0,
          });
          // As the transports: a join into an empty line reads no newest key.
          const newest = readsNewest(i)
            ? Math.max(0, ...this.scanNow(i.start, i.end, {}).kvs.map((kv) => kv.createRevision))
            : newestOf(oldest);
          const blocker = i.absent === undefined ? undefined : this.peek(i.absent);
          return {
            kvs: oldest.kvs,
            count: oldest.count,
            ...(newest !== undefined ? { newest } : {}),
            ...(blocker ? { blocker } : {}),
          };
        });
        return { applied: false, revision: this.rev, reads };
      }
      const puts = items.flatMap((i) => (i.with ? [i, i.with] : [i]));
      this.checkLeases(puts);
      if (items.length > 0) {
        this.rev++;
        for (const i of puts) this.putAt(i.key, i.value, i.lease, this.rev);
      }
      return { applied: true, revision: this.rev };
    });
  }

  guardedWrite(w: GuardedWrite): Promise<number> {
    return this.call("guardedWrite", [w], () => {
      const holds =
        (w.unchanged ?? []).every((i) => (this.kvs.get(i.key)?.modRevision ?? 0) === i.modRevision) &&
        (w.created ?? []).every((i) => (this.kvs.get(i.key)?.createRevision ?? 0) === i.createRevision);
      if (!holds) return 0;
      this.checkLeases(w.put ?? []);
      this.rev++;
      for (const key of w.delete ?? []) if (this.kvs.has(key)) this.deleteAt(key, this.rev);
      for (const p of w.put ?? []) this.putAt(p.key, p.value, p.lease, this.rev);
      return this.rev;
    });
  }

  guardedWriteAll(writes: GuardedWrite[]): Promise<GuardedAllResult> {
    return this.call("guardedWriteAll", [writes], () => {
      const written = writes.flatMap((w) => [...(w.delete ?? []), ...(w.put ?? []).map((p) => p.key)]);
      const compared = writes.flatMap(comparedKeys);
      const ops = Math.max(compared.length, written.length);
      if (ops > this.maxTxnOps) throw new Error("etcdserver: too many operations in txn request");
      if (new Set(written).size !== written.length) throw new Error("etcdserver: duplicate key given in txn request");
      const reads = writes.map((w) => comparedKeys(w).map((key) => this.peek(key)));
      if (!writes.every((w, i) => comparesHold(w, reads[i] ?? []))) {
        return { applied: false, revision: this.rev, reads };
      }
      this.checkLeases(writes.flatMap((w) => w.put ?? []));
      this.rev++;
      for (const w of writes) {
        for (const key of w.delete ?? []) if (this.kvs.has(key)) this.deleteAt(key, this.rev);
        for (const p of w.put ?? []) this.putAt(p.key, p.value, p.lease, this.rev);
      }
      return { applied: true, revision: this.rev };
    });
  }

  watchDeletes(
    key: string,
    fromRevision: number,
    onDelete: (revision: number) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd> {
    return this.call("watchDeletes", [key, fromRevision, onDelete, signal], () =>
      this.watch({ key, rangeEnd: undefined, deletesOnly: true }, fromRevision, (r) => onDelete(r), signal),
    );
  }

  watchRange(
    start: string,
    end: string,
    fromRevision: number,
    onEvents: (revision: number, events: WatchEvent[]) => void,
    signal: AbortSignal,
    options?: WatchOptions,
  ): Promise<WatchEnd> {
    return this.call("watchRange", [start, end, fromRevision, onEvents, signal], () =>
      this.watch(
        { key: start, rangeEnd: end, deletesOnly: false, prevKv: options?.prevKv ?? false },
        fromRevision,
        onEvents,
        signal,
      ),
    );
  }

  ping(): Promise<void> {
    return this.call("ping", [], () => {});
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.watches]) w.end("aborted");
  }

  // -------------------------------------------------------------------------------------
  // Internals.

  /** One client call: recorded, asynchronous like a network round trip, with any fault set for it. */
  private async call<R>(method: Method, args: unknown[], run: () => R): Promise<Awaited<R>> {
    this.calls.push({ method, args });
    const waiters = this.callWaiters.filter((w) => w.method === method && (!w.match || w.match(...(args as never[]))));
    this.callWaiters = this.callWaiters.filter((w) => !waiters.includes(w));
    for (const w of waiters) w.resolve(args);
    const hook = this.hooks.find((h) => h.method === method && (!h.match || h.match(...(args as never[]))));
    if (hook) this.hooks = this.hooks.filter((h) => h !== hook);

    // A watch is only ever held or failed before it is established.
    const applied = hook?.applied === true && method !== "watchDeletes" && method !== "watchRange";
    await Promise.resolve();
    if (this.closed) throw new EtcdUnavailableError("etcd client is closed");
    if (hook && !applied) await this.strike(hook, args);
    const result = run();
    if (hook && applied) await this.strike(hook, args);
    return await result;
  }

  private async strike(hook: Hook, args: unknown[]): Promise<void> {
    if (hook.gate) {
      hook.gate.reached(args);
      await hook.gate.released;
    }
    if (hook.error) throw hook.error;
  }

  /**
   * etcd refuses a txn naming a key twice, or with more operations in a branch than
   * --max-txn-ops (`opsPerItem` in the longest branch).
   */
  private checkTxn(items: { key: string }[], opsPerItem = 1): void {
    if (items.length * opsPerItem > this.maxTxnOps) throw new Error("etcdserver: too many operations in txn request");
    if (new Set(items.map((i) => i.key)).size !== items.length) {
      throw new Error("etcdserver: duplicate key given in txn request");
    }
  }

  /** etcd checks the leases of the branch it takes only, before writing anything. */
  private checkLeases(items: { lease: bigint }[]): void {
    for (const i of items) {
      if (i.lease !== 0n && !this.leases.has(i.lease)) {
        throw new LeaseNotFoundError("etcdserver: requested lease not found");
      }
    }
  }

  /** A Range as etcd 3.4 serves it: `count` before the create revision filter, `more` after. */
  private scanNow(start: string, end: string, q: ScanQuery): ScanResult {
    const all = [...this.kvs.keys()].filter((k) => inRange(k, start, end)).sort(compareKeys);
    if (q.countOnly) return { revision: this.rev, kvs: [], count: all.length, more: false };
    let kvs = all.map((k) => this.peek(k) as KeyValue);
    const max = q.maxCreateRevision ?? 0;
    if (max > 0) kvs = kvs.filter((kv) => kv.createRevision <= max);
    // Stable, as etcd's sort: equal create revisions (one txn) stay in key order.
    if (q.byCreate) kvs.sort((a, b) => a.createRevision - b.createRevision);
    const limit = q.limit ?? 0;
    const taken = limit > 0 ? kvs.slice(0, limit) : kvs;
    return { revision: this.rev, kvs: taken, count: all.length, more: taken.length < kvs.length };
  }

  /** A failed txn's reads: each key, at its revision (the current one here). */
  private failed(items: { key: string }[]): AllOrNothing {
    return { applied: false, revision: this.rev, kvs: items.map((i) => this.peek(i.key)) };
  }

  private putAt(key: string, value: string, lease: bigint, revision: number): void {
    const old = this.kvs.get(key);
    const prev = this.peek(key);
    if (old && old.lease !== 0n) this.leases.get(old.lease)?.keys.delete(key);
    this.kvs.set(key, { value, createRevision: old?.createRevision ?? revision, modRevision: revision, lease });
    if (lease !== 0n) this.leases.get(lease)?.keys.add(key);
    this.record({ key, revision, event: { type: "put", kv: this.peek(key) as KeyValue }, ...(prev ? { prev } : {}) });
  }

  private deleteAt(key: string, revision: number): void {
    const old = this.kvs.get(key);
    const prev = this.peek(key);
    if (!old || !prev) return;
    this.kvs.delete(key);
    if (old.lease !== 0n) this.leases.get(old.lease)?.keys.delete(key);
    this.record({ key, revision, event: { type: "delete", key, revision }, prev });
  }

  /** Revokes a lease: its keys go in one revision (none when it had no keys). */
  private revokeLease(l: MutableLease): void {
    this.leases.delete(l.id);
    if (l.keys.size === 0) return;
    this.rev++;
    // In key order, as etcd deletes them (its watchers see them so).
    for (const key of [...l.keys].sort(compareKeys)) this.deleteAt(key, this.rev);
  }

  /** A watch from `fromRevision` (0 or below: from the next revision, as in etcd). */
  private watch(
    target: Pick<LiveWatch, "key" | "rangeEnd" | "deletesOnly" | "prevKv">,
    fromRevision: number,
    onEvents: LiveWatch["onEvents"],
    signal: AbortSignal,
  ): Promise<WatchEnd> {
    if (signal.aborted) return Promise.resolve("aborted");
    const next = fromRevision > 0 ? fromRevision : this.rev + 1;
    if (next < this.compacted) return Promise.resolve("compacted");
    return new Promise<WatchEnd>((resolve, reject) => {
      const watch: LiveWatch = {
        ...target,
        next,
        queued: false,
        onEvents,
        end: (outcome) => {
          if (!this.watches.delete(watch)) return;
          signal.removeEventListener("abort", onAbort);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome);
        },
      };
      const onAbort = () => watch.end("aborted");
      signal.addEventListener("abort", onAbort, { once: true });
      this.watches.add(watch);
      // History first, then live: the log holds both, so none is missed.
      this.queueDelivery(watch);
    });
  }

  /** Index of the first logged event at or after `revision` (the log is in revision order). */
  private firstEventAt(revision: number): number {
    let lo = 0;
    for (let hi = this.events.length; lo < hi; ) {
      const mid = (lo + hi) >> 1;
      if ((this.events[mid] as LoggedEvent).revision < revision) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private record(e: LoggedEvent): void {
    this.events.push(e);
    for (const w of this.watches) if (inRange(e.key, w.key, w.rangeEnd)) this.queueDelivery(w);
  }

  /**
   * Reports what the log holds for `watch` from its `next` on, asynchronously as a stream
   * delivers it: a txn's writes all happen before the delivery runs, so each revision's
   * events go together. Nothing once the watch ended.
   */
  private queueDelivery(watch: LiveWatch): void {
    if (watch.queued) return;
    watch.queued = true;
    queueMicrotask(() => {
      watch.queued = false;
      const due = new Map<number, WatchEvent[]>();
      for (const e of this.events.slice(this.firstEventAt(watch.next))) {
        if (!inRange(e.key, watch.key, watch.rangeEnd) || (watch.deletesOnly && e.event.type !== "delete")) continue;
        const event = watch.prevKv && e.prev ? { ...e.event, prev: e.prev } : e.event;
        const events = due.get(e.revision);
        if (events) events.push(event);
        else due.set(e.revision, [event]);
      }
      for (const [revision, events] of due) {
        if (!this.watches.has(watch)) return;
        watch.next = revision + 1;
        watch.onEvents(revision, events);
      }
    });
  }
}
