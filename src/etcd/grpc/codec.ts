/** etcd3's (gRPC) messages and errors to our types. */

import { isBrokenCircuitError } from "cockatiel";
import {
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type IEvent,
  type IKeyValue,
  type IRangeRequest,
  type IRangeResponse,
  type ITxnRequest,
  isRecoverableError,
} from "etcd3";
import { type RangeRead, readsNewest } from "../join.js";
import {
  type CreateItem,
  EtcdAuthError,
  EtcdUnavailableError,
  type GuardedWrite,
  type JoinItem,
  type KeyValue,
  LeaseExistsError,
  LeaseNotFoundError,
  type ScanQuery,
  type ScanResult,
  type WatchEvent,
} from "../types.js";

export function toKv(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: BigInt(kv.lease || "0"),
  };
}

export function toEvent(e: IEvent): WatchEvent {
  const prev = e.prev_kv ? { prev: toKv(e.prev_kv) } : {};
  if (e.type === "Put") return { type: "put", kv: toKv(e.kv), ...prev };
  return { type: "delete", key: e.kv.key.toString(), revision: Number(e.kv.mod_revision), ...prev };
}

/** A Range as `EtcdClient.scan` describes it. */
export function scanRequest(start: string, end: string, q: ScanQuery): IRangeRequest {
  return {
    key: Buffer.from(start),
    range_end: Buffer.from(end),
    ...(q.limit ? { limit: q.limit } : {}),
    ...(q.byCreate ? { sort_target: "Create", sort_order: "Ascend" } : {}),
    ...(q.maxCreateRevision ? { max_create_revision: q.maxCreateRevision } : {}),
    ...(q.countOnly ? { count_only: true } : {}),
    ...(q.revision ? { revision: q.revision } : {}),
  };
}

export function toScan(res: IRangeResponse): ScanResult {
  return { revision: Number(res.header.revision), kvs: res.kvs.map(toKv), count: Number(res.count), more: res.more };
}

/** `joinAll`'s txn (its shape: src/etcd/join.ts). */
export function joinTxn(items: JoinItem[]): ITxnRequest {
  return {
    compare: items.flatMap((i) => [
      {
        key: Buffer.from(i.start),
        range_end: Buffer.from(i.end),
        target: "Create" as const,
        result: "Less" as const,
        create_revision: i.maxCreateRevision + 1,
      },
      ...(i.absent === undefined ? [] : [absent(i.absent)]),
    ]),
    success: items.flatMap((i) => [
      { request_put: putRequest(i) },
      ...(i.with ? [{ request_put: putRequest(i.with) }] : []),
    ]),
  };
}

/** The reads of a failed join (src/etcd/join.ts), at `revision` (none: the current one). */
export function joinReadsTxn(items: JoinItem[], revision: number | undefined): ITxnRequest {
  const at = revision === undefined ? {} : { revision };
  return {
    success: items.flatMap(
      (i): NonNullable<ITxnRequest["success"]> => [
        {
          request_range: {
            ...scanRequest(i.start, i.end, { byCreate: true, limit: i.readLimit, countOnly: i.readLimit <= 0 }),
            ...at,
          },
        },
        ...(readsNewest(i)
          ? [
              {
                request_range: {
                  ...scanRequest(i.start, i.end, { limit: 1 }),
                  sort_target: "Create" as const,
                  sort_order: "Descend" as const,
                  ...at,
                },
              },
            ]
          : []),
        ...(i.absent === undefined ? [] : [{ request_range: { key: Buffer.from(i.absent), ...at } }]),
      ],
    ),
  };
}

/**
 * Whether etcd refused a read for its revision: compacted away, or not reached yet
 * (etcd's "mvcc: required revision has been compacted" / "... is a future revision";
 * etcd3's error classes keep the message, not the status code).
 */
export function isOutOfRange(err: unknown): boolean {
  return err instanceof Error && /required revision (has been compacted|is a future revision)/.test(err.message);
}

/** A Put of `key` on `lease` (none when `0n`). */
function putRequest(p: CreateItem) {
  return { key: Buffer.from(p.key), value: Buffer.from(p.value), lease: p.lease.toString() };
}

/** Compare: the key does not exist. */
function absent(key: string) {
  return { key: Buffer.from(key), target: "Create" as const, result: "Equal" as const, create_revision: 0 };
}

/** `EtcdClient.guardedWrite`'s txn. */
export function guardedTxn(w: GuardedWrite): ITxnRequest {
  return {
    compare: [
      ...(w.unchanged ?? []).map((i) => ({
        key: Buffer.from(i.key),
        target: "Mod" as const,
        result: "Equal" as const,
        mod_revision: i.modRevision,
      })),
      ...(w.created ?? []).map((i) => ({
        key: Buffer.from(i.key),
        target: "Create" as const,
        result: "Equal" as const,
        create_revision: i.createRevision,
      })),
    ],
    success: [
      ...(w.delete ?? []).map((key) => ({ request_delete_range: { key: Buffer.from(key) } })),
      ...(w.put ?? []).map((p) => ({ request_put: putRequest(p) })),
    ],
    failure: [],
  };
}

/** Response of `joinReadsTxn`: its revision and its ranges. */
export function decodeJoinReads(res: ReadsResponse): { revision: number; reads: RangeRead[] } {
  const reads = res.responses.map((r) => ({
    kvs: (r.response_range?.kvs ?? []).map(toKv),
    count: Number(r.response_range?.count ?? 0),
  }));
  return { revision: Number(res.header.revision), reads };
}

/** Each key's read, at `revision` (none: the current one): see src/etcd/pinned-reads.ts. */
export function keyReadsTxn(keys: string[], revision: number | undefined): ITxnRequest {
  const at = revision === undefined ? {} : { revision };
  return { success: keys.map((key) => ({ request_range: { key: Buffer.from(key), ...at } })) };
}

/** Response of `keyReadsTxn`: its revision and each key's kv. */
export function decodeKeyReads(res: ReadsResponse): { revision: number; reads: (KeyValue | undefined)[] } {
  const reads = res.responses.map((r) => {
    const kv = r.response_range?.kvs[0];
    return kv ? toKv(kv) : undefined;
  });
  return { revision: Number(res.header.revision), reads };
}

type ReadsResponse = { header: { revision: string }; responses: { response_range?: IRangeResponse }[] };

/** The member could not be reached at all (as opposed to an answer that is an error). */
export function isConnectionFailure(err: Error): boolean {
  return (
    isRecoverableError(err) && /No connection established|Connection dropped|ECONNREFUSED|ECONNRESET/.test(err.message)
  );
}

/** An error of etcd3 as one of ours (EtcdUnavailableError, EtcdAuthError, the lease errors), else as it is. */
export function translate(err: unknown, op: string): Error {
  if (
    err instanceof EtcdUnavailableError ||
    err instanceof LeaseExistsError ||
    err instanceof EtcdAuthError ||
    err instanceof LeaseNotFoundError
  )
    return err;
  if (err instanceof EtcdAuthenticationFailedError || err instanceof EtcdPermissionDeniedError) {
    return new EtcdAuthError(`etcd ${op} refused: ${err.message}`);
  }
  if (err instanceof EtcdLeaseInvalidError) return new LeaseNotFoundError(err.message);
  // Every member's circuit is open: none answered lately.
  if (isBrokenCircuitError(err)) return new EtcdUnavailableError(`etcd ${op} failed: no member is answering`);
  if (err instanceof Error && /lease already exists/.test(err.message)) return new LeaseExistsError(err.message);
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  if (
    code === 14 || // UNAVAILABLE, as raw stream errors carry it
    code === 4 || // DEADLINE_EXCEEDED
    // INTERNAL (e.g. "Received RST_STREAM"), UNKNOWN, CANCELLED: the connection failed
    // under the call, which etcd may or may not have applied. Retryable, outcome unknown.
    code === 13 ||
    code === 2 ||
    code === 1 ||
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    (err instanceof Error && isRecoverableError(err))
  ) {
    return new EtcdUnavailableError(`etcd ${op} failed: ${(err as Error).message}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}
