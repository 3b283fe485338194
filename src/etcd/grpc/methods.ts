/**
 * The gRPC methods of etcd's services the service calls: each its path and its messages'
 * codec. The messages of every grant and release are encoded and decoded by hand
 * (proto.ts); the rest with etcd3's own rpc.proto through @grpc/proto-loader with its
 * options, so every message has the shape etcd3 gives it.
 */

import { createRequire } from "node:module";
import { loadSync } from "@grpc/proto-loader";
import {
  decodeLeaseKeepAliveResponse,
  decodeRangeResponse,
  decodeTxnResponse,
  encodeLeaseKeepAliveRequest,
  encodeRangeRequest,
  encodeTxnRequest,
} from "./proto.js";

/** A gRPC method: its path and its messages' codec. */
export interface Method<Req, Res> {
  path: string;
  encode(req: Req): Buffer;
  decode(buf: Buffer): Res;
}

/** A method with etcd3's codec, both ways (the tests check the hand codec against it). */
// biome-ignore lint/suspicious/noExplicitAny: the request and answer types are etcd3's, given at each use
type GenericMethod = Method<any, any> & { decodeRequest(b: Buffer): unknown; encodeResponse(r: unknown): Buffer };

/**
 * The methods of etcd's services the service calls, each with etcd3's codec: its own
 * rpc.proto through @grpc/proto-loader with its options (so the messages have etcd3's
 * shapes).
 */
export function genericMethods() {
  const proto = createRequire(import.meta.url).resolve("etcd3/proto/rpc.proto");
  const def = loadSync(proto, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const method = (service: string, name: string): GenericMethod => {
    const m = (def[`etcdserverpb.${service}`] as Record<string, unknown>)[name] as {
      path: string;
      requestSerialize(req: unknown): Buffer;
      requestDeserialize(buf: Buffer): unknown;
      responseSerialize(res: unknown): Buffer;
      responseDeserialize(buf: Buffer): unknown;
    };
    return {
      path: m.path,
      encode: (r) => m.requestSerialize(r),
      decode: (b) => m.responseDeserialize(b),
      decodeRequest: (b) => m.requestDeserialize(b),
      encodeResponse: (r) => m.responseSerialize(r),
    };
  };
  return {
    range: method("KV", "Range"),
    txn: method("KV", "Txn"),
    leaseGrant: method("Lease", "LeaseGrant"),
    leaseRevoke: method("Lease", "LeaseRevoke"),
    leaseTimeToLive: method("Lease", "LeaseTimeToLive"),
    leaseKeepAlive: method("Lease", "LeaseKeepAlive"),
    status: method("Maintenance", "Status"),
    authenticate: method("Auth", "Authenticate"),
  };
}

/** `genericMethods`, with the messages of every grant and release (proto.ts) encoded and decoded by hand. */
export function etcdMethods() {
  const generic = genericMethods();
  return {
    ...generic,
    range: { path: generic.range.path, encode: encodeRangeRequest, decode: decodeRangeResponse },
    txn: { path: generic.txn.path, encode: encodeTxnRequest, decode: decodeTxnResponse },
    leaseKeepAlive: {
      path: generic.leaseKeepAlive.path,
      encode: encodeLeaseKeepAliveRequest,
      decode: decodeLeaseKeepAliveResponse,
    },
  };
}
