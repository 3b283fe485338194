/**
 * The protobuf messages of every grant and release, encoded and decoded by hand: Txn and
 * Range requests and answers, and keep-alives. The generic codec (@grpc/proto-loader over
 * protobufjs) first converts a plain object field by field into a message (fromObject),
 * and back with every default filled in (toObject); for these small messages that was
 * about a tenth of the service's CPU per lock cycle at one request at a time.
 *
 * Same shapes as that codec with etcd3's options (keepCase, longs and enums as strings,
 * defaults, oneofs), so the callers read the answers as before: 64-bit integers as
 * decimal strings, bytes as Buffers (views into the answer), every field present.
 * test/etcd/grpc-proto.test.ts checks both directions against the generic codec.
 */

import type { ICompare, IKeyValue, IRangeRequest, IRequestOp, ITxnRequest } from "etcd3";
import { EMPTY, LEN, Reader, VARINT, Writer } from "./wire.js";

const COMPARE_RESULT: Record<string, number> = { Equal: 0, Greater: 1, Less: 2, NotEqual: 3 };
const COMPARE_TARGET: Record<string, number> = { Version: 0, Create: 1, Mod: 2, Value: 3, Lease: 4 };
const SORT_ORDER: Record<string, number> = { None: 0, Ascend: 1, Descend: 2 };
const SORT_TARGET: Record<string, number> = { Key: 0, Version: 1, Create: 2, Mod: 3, Value: 4 };

/** An enum given by name or by number. */
function enumValue(v: string | number, names: Record<string, number>, what: string): number {
  if (typeof v === "number") return v;
  const n = names[v];
  if (n === undefined) throw new Error(`protobuf: unknown ${what} ${JSON.stringify(v)}`);
  return n;
}

function rangeRequest(w: Writer, r: IRangeRequest): void {
  w.bytes(1, r.key);
  w.bytes(2, r.range_end);
  w.int64(3, r.limit);
  w.int64(4, r.revision);
  if (r.sort_order !== undefined) w.enum(5, enumValue(r.sort_order, SORT_ORDER, "sort order"));
  if (r.sort_target !== undefined) w.enum(6, enumValue(r.sort_target, SORT_TARGET, "sort target"));
  w.bool(7, r.serializable);
  w.bool(8, r.keys_only);
  w.bool(9, r.count_only);
  w.int64(10, r.min_mod_revision);
  w.int64(11, r.max_mod_revision);
  w.int64(12, r.min_create_revision);
  w.int64(13, r.max_create_revision);
}

function compare(w: Writer, c: ICompare): void {
  if (c.result !== undefined) w.enum(1, enumValue(c.result, COMPARE_RESULT, "compare result"));
  if (c.target !== undefined) w.enum(2, enumValue(c.target, COMPARE_TARGET, "compare target"));
  w.bytes(3, c.key);
  if (c.version !== undefined) w.oneofInt64(4, c.version);
  else if (c.create_revision !== undefined) w.oneofInt64(5, c.create_revision);
  else if (c.mod_revision !== undefined) w.oneofInt64(6, c.mod_revision);
  else if (c.value !== undefined) w.bytes(7, c.value, true);
  else if (c.lease !== undefined) w.oneofInt64(8, c.lease);
  w.bytes(64, c.range_end);
}

function requestOp(w: Writer, op: IRequestOp): void {
  const { request_range: range, request_put: put, request_delete_range: del, request_txn: txn } = op;
  if (range) w.message(1, (m) => rangeRequest(m, range));
  else if (put) {
    w.message(2, (m) => {
      m.bytes(1, put.key);
      m.bytes(2, put.value);
      m.int64(3, put.lease);
      m.bool(4, put.prev_kv);
      m.bool(5, put.ignore_value);
      m.bool(6, put.ignore_lease);
    });
  } else if (del) {
    w.message(3, (m) => {
      m.bytes(1, del.key);
      m.bytes(2, del.range_end);
      m.bool(3, del.prev_kv);
    });
  } else if (txn) w.message(4, (m) => txnRequest(m, txn));
}

function txnRequest(w: Writer, t: ITxnRequest): void {
  for (const c of t.compare ?? []) w.message(1, (m) => compare(m, c));
  for (const op of t.success ?? []) w.message(2, (m) => requestOp(m, op));
  for (const op of t.failure ?? []) w.message(3, (m) => requestOp(m, op));
}

export function encodeTxnRequest(t: ITxnRequest): Buffer {
  const w = new Writer();
  txnRequest(w, t);
  return w.finish();
}

export function encodeRangeRequest(r: IRangeRequest): Buffer {
  const w = new Writer();
  rangeRequest(w, r);
  return w.finish();
}

export function encodeLeaseKeepAliveRequest(r: { ID: string | number }): Buffer {
  const w = new Writer();
  w.int64(1, r.ID);
  return w.finish();
}

// ---------------------------------------------------------------------------------------

export interface ResponseHeader {
  cluster_id: string;
  member_id: string;
  revision: string;
  raft_term: string;
}

function responseHeader(r: Reader): ResponseHeader {
  const h = { cluster_id: "0", member_id: "0", revision: "0", raft_term: "0" };
  while (r.more) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === VARINT) h.cluster_id = r.int64(true);
    else if (field === 2 && (tag & 7) === VARINT) h.member_id = r.int64(true);
    else if (field === 3 && (tag & 7) === VARINT) h.revision = r.int64();
    else if (field === 4 && (tag & 7) === VARINT) h.raft_term = r.int64(true);
    else r.skip(tag & 7);
  }
  return h;
}

const noHeader = (): ResponseHeader => ({ cluster_id: "0", member_id: "0", revision: "0", raft_term: "0" });

function keyValue(r: Reader): IKeyValue {
  const kv: IKeyValue = { key: EMPTY, create_revision: "0", mod_revision: "0", version: "0", value: EMPTY, lease: "0" };
  while (r.more) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === LEN) kv.key = r.bytes();
    else if (field === 2 && wire === VARINT) kv.create_revision = r.int64();
    else if (field === 3 && wire === VARINT) kv.mod_revision = r.int64();
    else if (field === 4 && wire === VARINT) kv.version = r.int64();
    else if (field === 5 && wire === LEN) kv.value = r.bytes();
    else if (field === 6 && wire === VARINT) kv.lease = r.int64();
    else r.skip(wire);
  }
  return kv;
}

export interface RangeResponse {
  header: ResponseHeader;
  kvs: IKeyValue[];
  more: boolean;
  count: string;
}

function rangeResponse(r: Reader): RangeResponse {
  const res: RangeResponse = { header: noHeader(), kvs: [], more: false, count: "0" };
  while (r.more) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === LEN) res.header = responseHeader(r.message());
    else if (field === 2 && wire === LEN) res.kvs.push(keyValue(r.message()));
    else if (field === 3 && wire === VARINT) res.more = r.uint32() !== 0;
    else if (field === 4 && wire === VARINT) res.count = r.int64();
    else r.skip(wire);
  }
  return res;
}

export interface ResponseOp {
  response_range?: RangeResponse;
  response_put?: { header: ResponseHeader; prev_kv: IKeyValue | null };
  response_delete_range?: { header: ResponseHeader; deleted: string; prev_kvs: IKeyValue[] };
  response_txn?: TxnResponse;
  response?: "response_range" | "response_put" | "response_delete_range" | "response_txn";
}

export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

function responseOp(r: Reader): ResponseOp {
  const op: ResponseOp = {};
  while (r.more) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire !== LEN || field < 1 || field > 4) {
      r.skip(wire);
      continue;
    }
    const m = r.message();
    if (field === 1) {
      op.response_range = rangeResponse(m);
      op.response = "response_range";
    } else if (field === 2) {
      const put = { header: noHeader(), prev_kv: null as IKeyValue | null };
      while (m.more) {
        const t = m.uint32();
        if (t >>> 3 === 1 && (t & 7) === LEN) put.header = responseHeader(m.message());
        else if (t >>> 3 === 2 && (t & 7) === LEN) put.prev_kv = keyValue(m.message());
        else m.skip(t & 7);
      }
      op.response_put = put;
      op.response = "response_put";
    } else if (field === 3) {
      const del = { header: noHeader(), deleted: "0", prev_kvs: [] as IKeyValue[] };
      while (m.more) {
        const t = m.uint32();
        if (t >>> 3 === 1 && (t & 7) === LEN) del.header = responseHeader(m.message());
        else if (t >>> 3 === 2 && (t & 7) === VARINT) del.deleted = m.int64();
        else if (t >>> 3 === 3 && (t & 7) === LEN) del.prev_kvs.push(keyValue(m.message()));
        else m.skip(t & 7);
      }
      op.response_delete_range = del;
      op.response = "response_delete_range";
    } else {
      op.response_txn = txnResponse(m);
      op.response = "response_txn";
    }
  }
  return op;
}

function txnResponse(r: Reader): TxnResponse {
  const res: TxnResponse = { header: noHeader(), succeeded: false, responses: [] };
  while (r.more) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === LEN) res.header = responseHeader(r.message());
    else if (field === 2 && wire === VARINT) res.succeeded = r.uint32() !== 0;
    else if (field === 3 && wire === LEN) res.responses.push(responseOp(r.message()));
    else r.skip(wire);
  }
  return res;
}

export function decodeTxnResponse(buf: Buffer): TxnResponse {
  return txnResponse(new Reader(buf, 0, buf.length));
}

export function decodeRangeResponse(buf: Buffer): RangeResponse {
  return rangeResponse(new Reader(buf, 0, buf.length));
}

export function decodeLeaseKeepAliveResponse(buf: Buffer): { header: ResponseHeader; ID: string; TTL: string } {
  const r = new Reader(buf, 0, buf.length);
  const res = { header: noHeader(), ID: "0", TTL: "0" };
  while (r.more) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === LEN) res.header = responseHeader(r.message());
    else if (field === 2 && wire === VARINT) res.ID = r.int64();
    else if (field === 3 && wire === VARINT) res.TTL = r.int64();
    else r.skip(wire);
  }
  return res;
}
