/**
 * The small etcd surface the lock protocol needs. Two transports implement it:
 * gRPC through `etcd3` (Node) and etcd's HTTP/JSON gateway through `fetch`
 * (Workers and any runtime with fetch).
 *
 * Conventions shared by every implementation:
 * - keys and values are UTF-8 strings (lock keys are ASCII);
 * - revisions are plain numbers (they stay far below 2^53 in practice);
 * - lease IDs are `bigint` because etcd's int64 IDs exceed 2^53; `0n` = no lease;
 * - every call carries its own deadline; a call that cannot reach etcd in time
 *   rejects with `EtcdUnavailableError`, never hangs.
 */

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** Lease attached to the key; `0n` when none. */
  lease: bigint;
}

export interface GetResult {
  /** Store revision at which the read was served (response header revision). */
  revision: number;
  kv?: KeyValue;
}

export interface RangeResult {
  revision: number;
  kvs: KeyValue[];
  /** More keys exist in the range beyond `limit`. */
  more: boolean;
}

export type CreateResult =
  /** The key was created; `revision` is the txn's header revision = the key's create_revision. */
  | { created: true; revision: number }
  /** The key already existed; `kv` is its current value (absent if it vanished in between). */
  | { created: false; revision: number; kv?: KeyValue };

export interface CreateItem {
  key: string;
  value: string;
  /** `0n` = no lease. */
  lease: bigint;
}

export interface DeleteItem {
  key: string;
  modRevision: number;
}

export interface UpdateItem {
  key: string;
  modRevision: number;
  value: string;
  /** The lease the key keeps (a Put without it would detach the key from its lease). */
  lease: bigint;
}

/**
 * Outcome of an all-or-nothing multi-key txn. On failure `kvs[i]` is the current value
 * of item i's key, read in the same txn (absent when the key does not exist).
 */
export type AllOrNothing =
  | { applied: true; revision: number }
  | { applied: false; revision: number; kvs: (KeyValue | undefined)[] };

/** A read of the participants of one line (see `EtcdClient.scan`). */
export interface ScanQuery {
  /** At most this many keys (0 = no limit). */
  limit?: number;
  /** Order by create revision, oldest first (default: by key). */
  byCreate?: boolean;
  /**
   * Only keys whose create revision is at most this, in `kvs` and `more`. Not in `count`:
   * etcd 3.4 counts before it filters, so with `countOnly` this has no effect at all.
   */
  maxCreateRevision?: number;
  /** Only count the keys (then `kvs` is empty and `more` false). */
  countOnly?: boolean;
  /**
   * Read the range as it was at this store revision (a page of a listing read at one
   * revision); absent: now. A revision etcd compacted away is refused.
   */
  revision?: number;
}

export interface ScanResult {
  revision: number;
  kvs: KeyValue[];
  /** How many keys [start, end) holds, whatever `limit` and `maxCreateRevision` left out. */
  count: number;
  /** Keys matching `maxCreateRevision` were left out by `limit`. */
  more: boolean;
}

/**
 * Joins a line: puts `key` only when no key in [start, end) was created after
 * `maxCreateRevision` (0 = only when the range is empty). A txn compare over a range:
 * `create_revision(every key in [start, end)) < maxCreateRevision + 1`.
 */
export interface JoinItem {
  start: string;
  end: string;
  maxCreateRevision: number;
  key: string;
  value: string;
  /** `0n` = no lease. */
  lease: bigint;
  /**
   * On failure, how many of the range's keys to read back, oldest (by create revision)
   * first; 0 = none (only the count).
   */
  readLimit: number;
  /**
   * A key that must not exist either (compare create_revision == 0); on failure it is
   * read back too (`JoinRead.blocker`). A lock's lock-delay marker.
   */
  absent?: string;
  /** Put in the same txn when it applies (a lock-delay marker made with its grant). */
  with?: CreateItem;
}

/**
 * etcd refuses a txn with more operations per branch (compares, success, failure) than
 * its --max-txn-ops, 128 by default.
 */
export const MAX_TXN_OPS = 128;

/**
 * Items one `joinAll` takes at most: each has up to two compares and two puts, and etcd
 * counts each branch against MAX_TXN_OPS (the reads of a failed join go apart).
 */
export const JOIN_ITEMS_PER_TXN = MAX_TXN_OPS / 2;

/** What a failed join read of its range, at the failed txn's revision. */
export interface JoinRead {
  /** The oldest keys by create revision, at most `readLimit`. */
  kvs: KeyValue[];
  /** How many keys the range holds. */
  count: number;
  /**
   * Create revision of the newest key in the range (0 when empty). `undefined` for a join
   * into an empty line (`maxCreateRevision` 0) whose read did not hold the whole range:
   * then it is not empty, and that is all the join needs.
   */
  newest?: number;
  /** The item's `absent` key, when it exists. */
  blocker?: KeyValue;
}

/**
 * A txn of compares and writes: if every compare holds then every delete, then every
 * put, in one revision. What the engine's less common steps need (a turn that must also
 * find no lock-delay marker, a release that takes its marker along, a write guarded by a
 * grant, a release that hands its place to the next waiter). Deletes go first so that a
 * watcher, which gets one revision's events in the txn's order, sees a holder's end
 * before its successor's grant: a change feed says `free` then `held`, and a reader
 * applying events one at a time never sees more holders than the line allows.
 */
export interface GuardedWrite {
  /** mod_revision(key) == modRevision for each. */
  unchanged?: DeleteItem[];
  /** create_revision(key) == createRevision for each (0: the key does not exist). */
  created?: { key: string; createRevision: number }[];
  put?: CreateItem[];
  delete?: string[];
}

/**
 * Outcome of `guardedWriteAll`. On failure `reads[i]` is what write i compared, read in
 * the same txn: one entry per compared key, `unchanged` first, then `created` (absent
 * when the key does not exist).
 */
export type GuardedAllResult =
  | { applied: true; revision: number }
  | { applied: false; revision: number; reads: (KeyValue | undefined)[][] };

/**
 * `applied`: every key was put, `revision` = their create revision (each was absent: its
 * key is unique); else `reads`, one per item.
 */
export type JoinAllResult =
  | { applied: true; revision: number }
  | { applied: false; revision: number; reads: JoinRead[] };

/**
 * One change in a watched range. With `WatchOptions.prevKv`, `prev` is the key as it was
 * just before the change (absent for a key's creation, and when etcd had compacted that
 * version away).
 */
export type WatchEvent =
  | { type: "put"; kv: KeyValue; prev?: KeyValue }
  | { type: "delete"; key: string; revision: number; prev?: KeyValue };

export interface WatchOptions {
  /** Ask etcd for each event's previous version of the key (`WatchEvent.prev`). */
  prevKv?: boolean;
}

export interface LeaseTtl {
  /** Remaining seconds; `-1` when the lease no longer exists. */
  ttl: number;
  /** TTL the lease was granted with; `0` when it no longer exists. */
  grantedTtl: number;
}

/** How a watch (`watchDeletes`, `watchRange`) ended (a failure rejects instead). */
export type WatchEnd =
  /** The revision the watch had to start or resume from was compacted away: re-read the key. */
  | "compacted"
  /** The caller's signal fired (or the client was closed). */
  | "aborted";

export interface EtcdClient {
  /** Linearizable read of one key. */
  get(key: string): Promise<GetResult>;
  /** Linearizable read of keys in [start, end), sorted by key ascending, at most `limit` (0 = no limit). */
  range(start: string, end: string, limit: number): Promise<RangeResult>;
  /**
   * Grants a lease with a caller-chosen ID. Rejects with `LeaseExistsError` when the ID
   * is taken. Resolves with the TTL etcd actually granted (etcd raises small TTLs).
   */
  leaseGrant(id: bigint, ttlSeconds: number): Promise<number>;
  /** One keep-alive; resolves with the new TTL, or `0` when the lease is gone. */
  leaseKeepAliveOnce(id: bigint): Promise<number>;
  /** Revokes the lease (deleting its keys in the same step); `false` when it did not exist. */
  leaseRevoke(id: bigint): Promise<boolean>;
  leaseTimeToLive(id: bigint): Promise<LeaseTtl>;
  /**
   * One txn: if create_revision(key) == 0 for every item then Put each (key, value, lease)
   * else Range each key. Keys must be distinct. Rejects with `LeaseNotFoundError` when a
   * lease does not exist (then nothing was written).
   */
  createAllIfAbsent(items: CreateItem[]): Promise<AllOrNothing>;
  /**
   * One txn: if mod_revision(key) == modRevision for every item then Delete each key
   * else Range each key. Keys must be distinct.
   */
  deleteAllIfUnchanged(items: DeleteItem[]): Promise<AllOrNothing>;
  /**
   * One txn: if mod_revision(key) == modRevision then Put(key, value, lease) (its create
   * revision stays; its mod revision moves). The txn's revision (the key's new mod
   * revision) when it wrote, `0` when it did not. Rejects with
   * `LeaseNotFoundError` when the lease does not exist (then nothing was written).
   */
  putIfUnchanged(item: UpdateItem): Promise<number>;
  /**
   * One txn (see GuardedWrite): its revision when every compare held and it wrote, `0`
   * when not. Rejects with `LeaseNotFoundError` when a put's lease does not exist (then
   * nothing was written).
   */
  guardedWrite(w: GuardedWrite): Promise<number>;
  /**
   * Several guarded writes in one txn: all of them when every compare of every write
   * holds, else none, and then each write's compared keys are read back (see
   * GuardedAllResult) so that each can tell whether its own compares held. The writes'
   * keys must be distinct. Rejects with `LeaseNotFoundError` when a put's lease does not
   * exist (then nothing was written).
   */
  guardedWriteAll(writes: GuardedWrite[]): Promise<GuardedAllResult>;
  /**
   * Keeps one etcd watch on `key` open from `fromRevision` and calls `onDelete` with the
   * revision of every DELETE of the key at or after it, in order, each once (history
   * first, then live). A stream that breaks after it was established is reopened from the
   * last reported DELETE + 1, so none is missed or repeated. Resolves when `signal` fires
   * or the revision to start or resume from was compacted; rejects when the watch cannot
   * be (re)established within the call deadline (EtcdUnavailableError) or etcd refuses it.
   */
  watchDeletes(
    key: string,
    fromRevision: number,
    onDelete: (revision: number) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd>;
  /** Linearizable read of keys in [start, end) as `q` says. */
  scan(start: string, end: string, q: ScanQuery): Promise<ScanResult>;
  /**
   * One txn: if every item's compare holds (see JoinItem) then Put each item's key
   * else read each item's range (JoinRead; see src/etcd/join.ts). Items' keys must be
   * distinct and their ranges must not overlap; at most JOIN_ITEMS_PER_TXN items.
   * Rejects with `LeaseNotFoundError` when a lease does not exist (then nothing was
   * written).
   */
  joinAll(items: JoinItem[]): Promise<JoinAllResult>;
  /**
   * Like `watchDeletes`, for every PUT and DELETE of the keys in [start, end): `onEvents`
   * gets each revision's events together, in revision order, each revision once (history
   * first, then live); a broken stream is reopened from the last reported revision + 1.
   * A put carries the key's value at that revision.
   */
  watchRange(
    start: string,
    end: string,
    fromRevision: number,
    onEvents: (revision: number, events: WatchEvent[]) => void,
    signal: AbortSignal,
    options?: WatchOptions,
  ): Promise<WatchEnd>;
  /** Cheap round trip to the cluster (for readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** etcd did not answer within the deadline or could not be reached. */
export class EtcdUnavailableError extends Error {
  override name = "EtcdUnavailableError";
}

/**
 * etcd refused our credentials (wrong ETCD_USERNAME/ETCD_PASSWORD, or a user without the
 * needed permissions). Not retryable by the caller; the service answers 503 and logs it.
 */
export class EtcdAuthError extends Error {
  override name = "EtcdAuthError";
}

/** A txn named a lease that does not exist (expired or revoked); nothing was written. */
export class LeaseNotFoundError extends Error {
  override name = "LeaseNotFoundError";
}

/** `leaseGrant` with an ID that is already in use. */
export class LeaseExistsError extends Error {
  override name = "LeaseExistsError";
}

/**
 * Exclusive upper bound of the keys that start with `prefix` (etcd's range_end for a
 * prefix). Our keys are printable ASCII (the configured prefix and the name alphabet
 * both are), so bumping the last character never produces an invalid UTF-8 byte.
 */
export function prefixEnd(prefix: string): string {
  if (prefix === "" || !/^[\x20-\x7e]+$/.test(prefix)) {
    throw new Error("prefixEnd: prefix must be non-empty printable ASCII");
  }
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

/** How to reach etcd; shared by both transports. */
export interface EtcdConnectionOptions {
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Deadline for every unary call, and for establishing a watch. */
  timeoutMs: number;
  username?: string;
  password?: string;
  /** PEM contents (not paths): CA bundle, client certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string };
}
