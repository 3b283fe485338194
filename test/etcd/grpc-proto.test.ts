import type { IKeyValue, IRangeRequest, ITxnRequest } from "etcd3";
import { describe, expect, it } from "vitest";
import { guardedTxn, joinTxn, scanRequest } from "../../src/etcd/grpc/codec.js";
import { genericMethods } from "../../src/etcd/grpc/methods.js";
import {
  decodeLeaseKeepAliveResponse,
  decodeRangeResponse,
  decodeTxnResponse,
  encodeLeaseKeepAliveRequest,
  encodeRangeRequest,
  encodeTxnRequest,
} from "../../src/etcd/grpc/proto.js";
import type { JoinItem } from "../../src/etcd/types.js";

/**
 * The hand codec of the messages on every grant (src/etcd/grpc/proto.ts) against etcd3's
 * own (its rpc.proto through @grpc/proto-loader): every request it encodes decodes, with
 * etcd3's codec, to what etcd3's own encoding decodes to; every answer etcd3's codec
 * encodes decodes, with the hand codec, to what etcd3's codec decodes it to.
 */
const generic = genericMethods();

/** A deterministic pseudo-random source, so a failure can be replayed. */
function random(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)] as T;
  // Lengths around the one- and two-byte varint limits (a long one in a test of its own).
  const bytes = () => Buffer.from(Array.from({ length: pick([0, 1, 5, 127, 128, 300]) }, () => int(256)));
  const text = () => "k/".concat(Array.from({ length: int(40) }, () => String.fromCharCode(32 + int(95))).join(""));
  /** int64s at the edges: 0, small, around 2^31, 2^32, 2^53 and 2^63 - 1. */
  const int64 = () =>
    pick([
      "0",
      "1",
      String(int(1000)),
      "2147483647",
      "2147483648",
      "4294967295",
      "4294967296",
      "9007199254740991",
      "9007199254740993",
      "1234567890123456789",
      "9223372036854775807",
    ]);
  return { next, int, pick, bytes, text, int64 };
}

const roundTrip = (req: unknown) => generic.txn.decodeRequest(generic.txn.encode(req));

describe("requests", () => {
  const lease = (2n ** 62n + 12345n).toString();
  const items: JoinItem[] = [
    { start: "a/", end: "a0", maxCreateRevision: 0, key: "a/1", value: "v", lease: 0n, readLimit: 2 },
    {
      start: "b/",
      end: "b0",
      maxCreateRevision: 2 ** 40,
      key: "b/1",
      value: "x".repeat(300),
      lease: BigInt(lease),
      readLimit: 0,
      absent: "delay/b",
      with: { key: "marker/b", value: "", lease: 7n },
    },
  ];

  it("the service's own txns encode as etcd3 encodes them", () => {
    const txns: ITxnRequest[] = [
      joinTxn(items),
      joinTxn([items[1] as JoinItem]),
      guardedTxn({
        unchanged: [{ key: "a", modRevision: 5 }],
        created: [{ key: "b", createRevision: 2 ** 33 }],
        delete: ["a", "c"],
        put: [{ key: "d", value: "w", lease: 9n }],
      }),
      {
        compare: [{ key: Buffer.from("k"), target: "Create", result: "Equal", create_revision: 0 }],
        success: [{ request_put: { key: Buffer.from("k"), value: Buffer.from("v"), lease } }],
        failure: [{ request_range: { key: Buffer.from("k") } }],
      },
      {
        compare: [{ key: Buffer.from("k"), target: "Mod", result: "Equal", mod_revision: 17 }],
        success: [{ request_delete_range: { key: Buffer.from("k") } }],
        failure: [{ request_range: { key: Buffer.from("k") } }],
      },
      {},
    ];
    for (const t of txns) expect(generic.txn.decodeRequest(encodeTxnRequest(t))).toEqual(roundTrip(t));
  });

  it("random txns, with every compare, op and field, encode as etcd3 encodes them", () => {
    const r = random(20);
    const compare = () => {
      const base = {
        key: r.bytes(),
        result: r.pick(["Equal", "Greater", "Less", "NotEqual", 0, 2] as const),
        target: r.pick(["Version", "Create", "Mod", "Value", "Lease"] as const),
        ...(r.next() < 0.5 ? { range_end: r.bytes() } : {}),
      };
      return r.pick([
        { ...base, version: r.int64() },
        { ...base, create_revision: r.int64() },
        { ...base, mod_revision: r.int64() },
        { ...base, value: r.bytes() },
        { ...base, lease: r.int64() },
        base,
      ]);
    };
    const range = (): IRangeRequest => ({
      key: r.bytes(),
      ...(r.next() < 0.5 ? { range_end: r.bytes() } : {}),
      ...(r.next() < 0.5 ? { limit: r.int64() } : {}),
      ...(r.next() < 0.5 ? { revision: r.int64() } : {}),
      ...(r.next() < 0.5 ? { sort_order: r.pick(["None", "Ascend", "Descend"] as const) } : {}),
      ...(r.next() < 0.5 ? { sort_target: r.pick(["Key", "Version", "Create", "Mod", "Value"] as const) } : {}),
      ...(r.next() < 0.3 ? { serializable: true, keys_only: r.next() < 0.5, count_only: r.next() < 0.5 } : {}),
      ...(r.next() < 0.3 ? { min_mod_revision: r.int64(), max_mod_revision: r.int64() } : {}),
      ...(r.next() < 0.3 ? { min_create_revision: r.int64(), max_create_revision: r.int64() } : {}),
    });
    const op = (depth: number): NonNullable<ITxnRequest["success"]>[number] =>
      r.pick([
        { request_range: range() },
        {
          request_put: {
            key: r.bytes(),
            value: r.bytes(),
            lease: r.int64(),
            prev_kv: r.next() < 0.5,
            ignore_value: r.next() < 0.2,
            ignore_lease: r.next() < 0.2,
          },
        },
        { request_delete_range: { key: r.bytes(), range_end: r.bytes(), prev_kv: r.next() < 0.5 } },
        ...(depth < 1 ? [{ request_txn: txn(depth + 1) }] : []),
      ]);
    const many = <T>(f: () => T) => Array.from({ length: r.int(5) }, f);
    const txn = (depth = 0): ITxnRequest => ({
      compare: many(compare),
      success: many(() => op(depth)),
      failure: many(() => op(depth)),
    });
    for (let i = 0; i < 100; i++) {
      const t = txn();
      expect(generic.txn.decodeRequest(encodeTxnRequest(t))).toEqual(roundTrip(t));
    }
    for (let i = 0; i < 50; i++) {
      const q = range();
      expect(generic.range.decodeRequest(encodeRangeRequest(q))).toEqual(
        generic.range.decodeRequest(generic.range.encode(q)),
      );
    }
  });

  it("values of 20,000 and 300,000 bytes (lengths of three varint bytes) encode as etcd3 encodes them", () => {
    for (const size of [20_000, 300_000]) {
      const t: ITxnRequest = {
        success: [{ request_put: { key: Buffer.from("k"), value: Buffer.alloc(size, 7), lease: "5" } }],
      };
      expect(encodeTxnRequest(t).equals(generic.txn.encode(t))).toBe(true);
    }
  });

  it("scans and keep-alives encode as etcd3 encodes them", () => {
    for (const q of [
      scanRequest("a/", "a0", { limit: 3, byCreate: true, maxCreateRevision: 2 ** 35, revision: 9 }),
      scanRequest("a/", "a0", { countOnly: true }),
      { key: Buffer.from("k") },
    ]) {
      expect(generic.range.decodeRequest(encodeRangeRequest(q))).toEqual(
        generic.range.decodeRequest(generic.range.encode(q)),
      );
    }
    for (const ID of ["1", "9223372036854775807", String(2 ** 60)]) {
      expect(generic.leaseKeepAlive.decodeRequest(encodeLeaseKeepAliveRequest({ ID }))).toEqual(
        generic.leaseKeepAlive.decodeRequest(generic.leaseKeepAlive.encode({ ID })),
      );
    }
  });
});

describe("answers", () => {
  const r = random(7);
  const header = () => ({ cluster_id: r.int64(), member_id: r.int64(), revision: r.int64(), raft_term: r.int64() });
  const kv = (): IKeyValue => ({
    key: r.bytes(),
    create_revision: r.int64(),
    mod_revision: r.int64(),
    version: r.int64(),
    value: r.bytes(),
    lease: r.int64(),
  });
  const rangeResponse = () => ({
    header: header(),
    kvs: Array.from({ length: r.int(4) }, kv),
    more: r.next() < 0.5,
    count: r.int64(),
  });
  const op = (depth: number): object =>
    r.pick([
      { response_range: rangeResponse() },
      { response_put: { header: header(), ...(r.next() < 0.5 ? { prev_kv: kv() } : {}) } },
      {
        response_delete_range: {
          header: header(),
          deleted: r.int64(),
          prev_kvs: Array.from({ length: r.int(3) }, kv),
        },
      },
      ...(depth < 1 ? [{ response_txn: txn(depth + 1) }] : []),
    ]);
  const txn = (depth = 0) => ({
    header: header(),
    succeeded: r.next() < 0.5,
    responses: Array.from({ length: r.int(5) }, () => op(depth)),
  });

  it("txn answers decode as etcd3 decodes them", () => {
    for (let i = 0; i < 100; i++) {
      const bytes = generic.txn.encodeResponse(txn());
      expect(decodeTxnResponse(bytes)).toEqual(generic.txn.decode(bytes));
    }
  });

  it("range and keep-alive answers decode as etcd3 decodes them, negative TTLs too", () => {
    for (let i = 0; i < 50; i++) {
      const bytes = generic.range.encodeResponse(rangeResponse());
      expect(decodeRangeResponse(bytes)).toEqual(generic.range.decode(bytes));
    }
    for (const TTL of ["0", "30", "-1", "-9223372036854775808"]) {
      const bytes = generic.leaseKeepAlive.encodeResponse({ header: header(), ID: r.int64(), TTL });
      expect(decodeLeaseKeepAliveResponse(bytes)).toEqual(generic.leaseKeepAlive.decode(bytes));
    }
  });

  it("skips fields it does not know, and refuses a truncated answer", () => {
    // Field 15 (unknown to TxnResponse), a varint, then a length-delimited one.
    const unknown = Buffer.from([0x78, 0x96, 0x01, 0x7a, 0x02, 0x01, 0x02]);
    const bytes = generic.txn.encodeResponse(txn());
    expect(decodeTxnResponse(Buffer.concat([unknown, bytes]))).toEqual(generic.txn.decode(bytes));
    const whole = generic.txn.encodeResponse({ header: header(), succeeded: true, responses: [op(0), op(0)] });
    expect(() => decodeTxnResponse(whole.subarray(0, whole.length - 1))).toThrow(/truncated/);
  });
});
