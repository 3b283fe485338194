/** Requests to etcd's HTTP/JSON gateway from our types (its encoding: see codec.ts). */

import { readsNewest } from "../join.js";
import type { CreateItem, DeleteItem, GuardedWrite, JoinItem, ScanQuery, UpdateItem } from "../types.js";
import type { WatchTarget } from "../watch-loop.js";
import { encodeBase64, encodeLeaseId, type Json } from "./codec.js";

export function encodeGet(key: string): Json {
  // No `serializable`: the default range is linearizable.
  return { key: encodeBase64(key) };
}

export function encodeRange(start: string, end: string, limit: number): Json {
  return {
    key: encodeBase64(start),
    range_end: encodeBase64(end),
    ...(limit > 0 ? { limit: String(limit) } : {}),
  };
}

/** A Put of `key` on `lease` (none when `0n`). */
function encodePut(p: { key: string; value: string; lease: bigint }): Json {
  return {
    key: encodeBase64(p.key),
    value: encodeBase64(p.value),
    ...(p.lease ? { lease: encodeLeaseId(p.lease) } : {}),
  };
}

/** If no key exists, put each (with its lease). */
export function encodeCreateAll(items: CreateItem[]): Json {
  const keys = items.map((i) => encodeBase64(i.key));
  return {
    // create_revision == 0 means the key does not exist. Spelled out in full although
    // EQUAL and "0" are defaults: etcd reads an omitted target value as 0 as well.
    compare: keys.map((key) => ({ key, target: "CREATE", result: "EQUAL", create_revision: "0" })),
    success: items.map((i) => ({ request_put: encodePut(i) })),
  };
}

/** If every key's mod_revision still matches, delete each. */
export function encodeDeleteAll(items: DeleteItem[]): Json {
  const keys = items.map((i) => encodeBase64(i.key));
  return {
    compare: items.map((i, n) => ({
      key: keys[n],
      target: "MOD",
      result: "EQUAL",
      mod_revision: String(i.modRevision),
    })),
    success: keys.map((key) => ({ request_delete_range: { key } })),
  };
}

/** If the key's mod_revision still matches, put the new value on the same lease. */
export function encodePutIfUnchanged(item: UpdateItem): Json {
  const key = encodeBase64(item.key);
  return {
    compare: [{ key, target: "MOD", result: "EQUAL", mod_revision: String(item.modRevision) }],
    success: [{ request_put: encodePut(item) }],
    failure: [],
  };
}

/** A Range as `EtcdClient.scan` describes it. */
export function encodeScan(start: string, end: string, q: ScanQuery): Json {
  return {
    ...encodeRange(start, end, q.limit ?? 0),
    ...(q.byCreate ? { sort_target: "CREATE", sort_order: "ASCEND" } : {}),
    ...(q.maxCreateRevision ? { max_create_revision: String(q.maxCreateRevision) } : {}),
    ...(q.countOnly ? { count_only: true } : {}),
    ...(q.revision ? { revision: String(q.revision) } : {}),
  };
}

/** `joinAll`'s txn (its shape: src/etcd/join.ts). */
export function encodeJoinAll(items: JoinItem[]): Json {
  return {
    compare: items.flatMap((i) => [
      {
        key: encodeBase64(i.start),
        range_end: encodeBase64(i.end),
        target: "CREATE",
        result: "LESS",
        create_revision: String(i.maxCreateRevision + 1),
      },
      ...(i.absent === undefined ? [] : [createdAt(i.absent, 0)]),
    ]),
    success: items.flatMap((i) => [
      { request_put: encodePut(i) },
      ...(i.with ? [{ request_put: encodePut(i.with) }] : []),
    ]),
  };
}

/** Each key's read, at `revision` (none: the current one): see src/etcd/pinned-reads.ts. */
export function encodeKeyReads(keys: string[], revision: number | undefined): Json {
  const at = revision === undefined ? {} : { revision: String(revision) };
  return { success: keys.map((key) => ({ request_range: { ...encodeGet(key), ...at } })) };
}

/** The reads of a failed join (src/etcd/join.ts), at `revision` (none: the current one). */
export function encodeJoinReads(items: JoinItem[], revision: number | undefined): Json {
  const at = revision === undefined ? {} : { revision: String(revision) };
  return {
    success: items.flatMap((i) => [
      {
        request_range: {
          ...encodeScan(i.start, i.end, { byCreate: true, limit: i.readLimit, countOnly: i.readLimit <= 0 }),
          ...at,
        },
      },
      ...(readsNewest(i)
        ? [
            {
              request_range: { ...encodeRange(i.start, i.end, 1), sort_target: "CREATE", sort_order: "DESCEND", ...at },
            },
          ]
        : []),
      ...(i.absent === undefined ? [] : [{ request_range: { ...encodeGet(i.absent), ...at } }]),
    ]),
  };
}

/** Compare: create_revision(key) == revision (0: the key does not exist). */
function createdAt(key: string, revision: number): Json {
  return { key: encodeBase64(key), target: "CREATE", result: "EQUAL", create_revision: String(revision) };
}

/** `EtcdClient.guardedWrite`'s txn. */
export function encodeGuardedWrite(w: GuardedWrite): Json {
  return {
    compare: [
      ...(w.unchanged ?? []).map((i) => ({
        key: encodeBase64(i.key),
        target: "MOD",
        result: "EQUAL",
        mod_revision: String(i.modRevision),
      })),
      ...(w.created ?? []).map((i) => createdAt(i.key, i.createRevision)),
    ],
    success: [
      ...(w.delete ?? []).map((key) => ({ request_delete_range: { key: encodeBase64(key) } })),
      ...(w.put ?? []).map((p) => ({ request_put: encodePut(p) })),
    ],
    failure: [],
  };
}

/** `EtcdClient.guardedWriteAll`'s txn (see src/etcd/guarded.ts). */
export function encodeGuardedWriteAll(writes: GuardedWrite[]): Json {
  const txns = writes.map(encodeGuardedWrite);
  return {
    compare: txns.flatMap((t) => t.compare as Json[]),
    success: txns.flatMap((t) => t.success as Json[]),
  };
}

/** A watch of `target` from `fromRevision` (DELETEs only: PUTs filtered out by etcd). */
export function encodeWatch(target: WatchTarget, fromRevision: number): Json {
  return {
    create_request: {
      key: encodeBase64(target.key),
      ...(target.end === undefined ? {} : { range_end: encodeBase64(target.end) }),
      start_revision: String(fromRevision),
      ...(target.deletesOnly ? { filters: ["NOPUT"] } : {}),
      ...(target.prevKv ? { prev_kv: true } : {}),
    },
  };
}
