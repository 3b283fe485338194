/** Requests to etcd's HTTP/JSON gateway from our types (its encoding: see codec.ts). */

import type { CreateItem, DeleteItem, UpdateItem } from "../types.js";
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

/** If no key exists, put each (with its lease), else range each: see `decodeAllOrNothing`. */
export function encodeCreateAll(items: CreateItem[]): Json {
  const keys = items.map((i) => encodeBase64(i.key));
  return {
    // create_revision == 0 means the key does not exist. Spelled out in full although
    // EQUAL and "0" are defaults: etcd reads an omitted target value as 0 as well.
    compare: keys.map((key) => ({ key, target: "CREATE", result: "EQUAL", create_revision: "0" })),
    success: items.map((i, n) => ({
      request_put: {
        key: keys[n],
        value: encodeBase64(i.value),
        ...(i.lease ? { lease: encodeLeaseId(i.lease) } : {}),
      },
    })),
    failure: keys.map((key) => ({ request_range: { key } })),
  };
}

/** If every key's mod_revision still matches, delete each, else range each. */
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
    failure: keys.map((key) => ({ request_range: { key } })),
  };
}

/** If the key's mod_revision still matches, put the new value on the same lease. */
export function encodePutIfUnchanged(item: UpdateItem): Json {
  const key = encodeBase64(item.key);
  return {
    compare: [{ key, target: "MOD", result: "EQUAL", mod_revision: String(item.modRevision) }],
    success: [
      {
        request_put: {
          key,
          value: encodeBase64(item.value),
          ...(item.lease ? { lease: encodeLeaseId(item.lease) } : {}),
        },
      },
    ],
    failure: [],
  };
}

/** A watch of one key's DELETEs (PUTs filtered out by etcd) from `fromRevision`. */
export function encodeWatchDeletes(key: string, fromRevision: number): Json {
  return { create_request: { key: encodeBase64(key), start_revision: String(fromRevision), filters: ["NOPUT"] } };
}
