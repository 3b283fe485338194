import { describe, expect, it } from "vitest";
import {
  decodeBase64,
  decodeGatewayError,
  decodeGet,
  decodeGrant,
  decodeInt64,
  decodeKeepAlive,
  decodeKeyReads,
  decodeKv,
  decodeNumber,
  decodeRange,
  decodeTimeToLive,
  decodeWatchResult,
  encodeBase64,
  encodeLeaseId,
  portableDecodeBase64,
  portableEncodeBase64,
} from "../../src/etcd/gateway/codec.js";

// Responses captured with curl from a real etcd 3.4.23 gateway (cluster/member IDs kept
// as etcd sent them: they are uint64 strings too).
const HEADER = `"cluster_id":"2961762449054095690","member_id":"11201878611396189134"`;
const BIG_LEASE = "7587869411418562851"; // > 2^53
const fixtures = {
  rangeEmpty: `{"header":{${HEADER},"revision":"1","raft_term":"2"}}`,
  rangeNoLease: `{"header":{${HEADER},"revision":"2","raft_term":"2"},"kvs":[{"key":"azE=","create_revision":"2","mod_revision":"2","version":"1","value":"djE="}],"count":"1"}`,
  rangeLeased: `{"header":{${HEADER},"revision":"13","raft_term":"2"},"kvs":[{"key":"bGVhc2Vob2xkL2Nyb246am9iOQ==","create_revision":"13","mod_revision":"13","version":"1","value":"eyJvd25lciI6Imhvc3QtYSJ9","lease":"7587869411418562851"}],"count":"1"}`,
  /** Key "ключ" with an empty value: `value` is omitted. */
  rangeEmptyValue: `{"header":{${HEADER},"revision":"14","raft_term":"2"},"kvs":[{"key":"0LrQu9GO0Yc=","create_revision":"14","mod_revision":"14","version":"1"}],"count":"1"}`,
  rangeLimited: `{"header":{${HEADER},"revision":"8","raft_term":"2"},"kvs":[{"key":"ci9h","create_revision":"5","mod_revision":"5","version":"1","value":"eA=="},{"key":"ci9i","create_revision":"6","mod_revision":"6","version":"1","value":"eA=="}],"more":true,"count":"3"}`,
  rangeAll: `{"header":{${HEADER},"revision":"8","raft_term":"2"},"kvs":[{"key":"ci9h","create_revision":"5","mod_revision":"5","version":"1","value":"eA=="},{"key":"ci9i","create_revision":"6","mod_revision":"6","version":"1","value":"eA=="},{"key":"ci9j","create_revision":"7","mod_revision":"7","version":"1","value":"eA=="}],"count":"3"}`,
  txnCreated: `{"header":{${HEADER},"revision":"13","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"13"}}}]}`,
  /** Failed compare: no `succeeded` at all. */
  txnExists: `{"header":{${HEADER},"revision":"13","raft_term":"2"},"responses":[{"response_range":{"header":{"revision":"13"},"kvs":[{"key":"bGVhc2Vob2xkL2Nyb246am9iOQ==","create_revision":"13","mod_revision":"13","version":"1","value":"eyJvd25lciI6Imhvc3QtYSJ9","lease":"7587869411418562851"}],"count":"1"}}]}`,
  leaseGrant: `{"header":{${HEADER},"revision":"12","raft_term":"2"},"ID":"7587869411418562851","TTL":"600"}`,
  /** Asked for TTL 1: etcd 3.4 raises it to its minimum (2 s with default timing). */
  leaseGrantRaised: `{"header":{${HEADER},"revision":"2","raft_term":"2"},"ID":"7587869411418562851","TTL":"2"}`,
  leaseExists: `{"error":"etcdserver: lease already exists","message":"etcdserver: lease already exists","code":9}`,
  keepAliveAlive: `{"result":{"header":{${HEADER},"revision":"13","raft_term":"2"},"ID":"7587869411418562851","TTL":"600"}}\n`,
  /** Dead lease: HTTP 200 without `TTL`. */
  keepAliveDead: `{"result":{"header":{${HEADER},"revision":"15","raft_term":"2"},"ID":"7587869411418562851"}}\n`,
  ttlAlive: `{"header":{${HEADER},"revision":"13","raft_term":"2"},"ID":"7587869411418562851","TTL":"599","grantedTTL":"600"}`,
  /** Unknown lease: HTTP 200 with TTL "-1" and no grantedTTL (not an error). */
  ttlGone: `{"header":{${HEADER},"revision":"15","raft_term":"2"},"ID":"7587869411418562851","TTL":"-1"}`,
  revokeNotFound: `{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}`,
  invalidToken: `{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}`,
  watchCreated: `{"result":{"header":{${HEADER},"revision":"8","raft_term":"2"},"created":true}}`,
  watchDelete: `{"result":{"header":{${HEADER},"revision":"9","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":"ci9h","mod_revision":"9"}}]}}`,
  /** PUT is the enum default, so a PUT event has no `type`. */
  watchPut: `{"result":{"header":{${HEADER},"revision":"9","raft_term":"2"},"events":[{"kv":{"key":"ci9i","create_revision":"6","mod_revision":"6","version":"1","value":"eA=="}}]}}`,
  watchHistory: `{"result":{"header":{${HEADER},"revision":"9","raft_term":"2"},"events":[{"kv":{"key":"ci9h","create_revision":"5","mod_revision":"5","version":"1","value":"eA=="}},{"type":"DELETE","kv":{"key":"ci9h","mod_revision":"9"}}]}}`,
  /** History with NOPUT: two DELETEs in one message, after a `created` whose header says 5. */
  watchTwoDeletes: `{"result":{"header":{${HEADER},"revision":"5","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":"ci9o","mod_revision":"3"}},{"type":"DELETE","kv":{"key":"ci9o","mod_revision":"5"}}]}}`,
  /** Sent after `created` when the start revision is compacted; the header has no revision. */
  watchCompacted: `{"result":{"header":{${HEADER},"raft_term":"2"},"canceled":true,"compact_revision":"8"}}`,
  watchBadToken: `{"result":{"header":{${HEADER},"revision":"1","raft_term":"2"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}}`,
};
const json = (s: string) => JSON.parse(s) as Record<string, unknown>;

describe("int64 strings", () => {
  it("decodes lease IDs above 2^53 exactly and round-trips them", () => {
    const id = decodeInt64(BIG_LEASE);
    expect(id).toBe(7587869411418562851n);
    expect(id > BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
    expect(encodeLeaseId(id)).toBe(BIG_LEASE);
    // The same string through Number would have lost the last digits.
    expect(String(Number(BIG_LEASE))).not.toBe(BIG_LEASE);
  });

  it("treats an omitted int64 as 0 and accepts negative and int32 forms", () => {
    expect(decodeInt64(undefined)).toBe(0n);
    expect(decodeInt64("-1")).toBe(-1n);
    expect(decodeInt64(9)).toBe(9n);
    expect(decodeNumber("42")).toBe(42);
    expect(decodeNumber(undefined)).toBe(0);
  });

  it("rejects malformed values and numbers beyond 2^53", () => {
    expect(() => decodeInt64("12a")).toThrow(/malformed int64/);
    expect(() => decodeInt64(1.5)).toThrow(/malformed int64/);
    expect(() => decodeNumber(BIG_LEASE)).toThrow(/does not fit/);
  });

  it("encodes only int64 lease IDs", () => {
    expect(encodeLeaseId(-5n)).toBe("-5");
    expect(encodeLeaseId(2n ** 63n - 1n)).toBe("9223372036854775807");
    expect(() => encodeLeaseId(2n ** 63n)).toThrow(RangeError);
  });
});

describe("base64", () => {
  it("round-trips UTF-8", () => {
    expect(encodeBase64("ключ")).toBe("0LrQu9GO0Yc=");
    expect(decodeBase64("0LrQu9GO0Yc=")).toBe("ключ");
    expect(decodeBase64(encodeBase64("leasehold/cron:job9"))).toBe("leasehold/cron:job9");
    expect(decodeBase64(undefined)).toBe("");
  });

  it("Node's Buffer path and the Workers' portable path agree", () => {
    const texts = ["", "leasehold/l/cron:job9/\u0000k", "ключ", "🔒 emoji", '{"h":1,"owner":"é"}', "a\u0000b"];
    for (const text of texts) {
      const b64 = encodeBase64(text);
      expect(portableEncodeBase64(text)).toBe(b64);
      expect(portableDecodeBase64(b64)).toBe(text);
      expect(decodeBase64(b64)).toBe(text);
    }
    // Bytes that are not UTF-8 (a key written by another client) decode alike too.
    const raw = Buffer.from([0x66, 0xff, 0xc3, 0x28, 0x6f]).toString("base64");
    expect(decodeBase64(raw)).toBe(portableDecodeBase64(raw));
  });
});

describe("range", () => {
  it("an empty range has no kvs field", () => {
    expect(decodeGet(json(fixtures.rangeEmpty))).toEqual({ revision: 1 });
    expect(decodeRange(json(fixtures.rangeEmpty))).toEqual({ revision: 1, kvs: [], more: false });
  });

  it("a key without lease has no lease field", () => {
    expect(decodeGet(json(fixtures.rangeNoLease))).toEqual({
      revision: 2,
      kv: { key: "k1", value: "v1", createRevision: 2, modRevision: 2, lease: 0n },
    });
  });

  it("a leased key carries the int64 lease as a bigint", () => {
    expect(decodeGet(json(fixtures.rangeLeased)).kv).toEqual({
      key: "leasehold/cron:job9",
      value: '{"owner":"host-a"}',
      createRevision: 13,
      modRevision: 13,
      lease: 7587869411418562851n,
    });
  });

  it("an empty value is omitted", () => {
    expect(decodeGet(json(fixtures.rangeEmptyValue)).kv).toMatchObject({ key: "ключ", value: "" });
  });

  it("more is present only when true", () => {
    const limited = decodeRange(json(fixtures.rangeLimited));
    expect(limited.more).toBe(true);
    expect(limited.kvs.map((kv) => kv.key)).toEqual(["r/a", "r/b"]);
    const all = decodeRange(json(fixtures.rangeAll));
    expect(all.more).toBe(false);
    expect(all.kvs).toHaveLength(3);
  });

  it("decodeKv fills every omitted field with its default", () => {
    expect(decodeKv({})).toEqual({ key: "", value: "", createRevision: 0, modRevision: 0, lease: 0n });
  });
});

describe("the reads of a failed txn (a read-only txn of ranges)", () => {
  it("each key's kv, and the revision in the header", () => {
    expect(decodeKeyReads(json(fixtures.txnExists))).toEqual({
      revision: 13,
      reads: [
        {
          key: "leasehold/cron:job9",
          value: '{"owner":"host-a"}',
          createRevision: 13,
          modRevision: 13,
          lease: 7587869411418562851n,
        },
      ],
    });
  });

  it("an absent key (empty range, no kvs field) reads as undefined in its place", () => {
    const body = `{"header":{"revision":"20"},"responses":[{"response_range":{"header":{"revision":"20"}}},{"response_range":{"header":{"revision":"20"},"kvs":[{"key":"YQ==","create_revision":"5","mod_revision":"5"}],"count":"1"}}]}`;
    expect(decodeKeyReads(json(body))).toEqual({
      revision: 20,
      reads: [undefined, { key: "a", value: "", createRevision: 5, modRevision: 5, lease: 0n }],
    });
  });
});

describe("leases", () => {
  it("grant returns the granted TTL", () => {
    expect(decodeGrant(json(fixtures.leaseGrant))).toBe(600);
    expect(decodeGrant(json(fixtures.leaseGrantRaised))).toBe(2);
  });

  it("keep-alive of a dead lease omits TTL → 0", () => {
    expect(decodeKeepAlive(json(fixtures.keepAliveAlive).result as Record<string, unknown>)).toBe(600);
    expect(decodeKeepAlive(json(fixtures.keepAliveDead).result as Record<string, unknown>)).toBe(0);
  });

  it("time-to-live of a gone lease is TTL -1 without grantedTTL", () => {
    expect(decodeTimeToLive(json(fixtures.ttlAlive))).toEqual({ ttl: 599, grantedTtl: 600 });
    expect(decodeTimeToLive(json(fixtures.ttlGone))).toEqual({ ttl: -1, grantedTtl: 0 });
  });
});

describe("errors", () => {
  it("reads the gRPC code of a unary error", () => {
    expect(decodeGatewayError(412, fixtures.leaseExists)).toEqual({
      code: 9,
      message: "etcdserver: lease already exists",
    });
    expect(decodeGatewayError(404, fixtures.revokeNotFound).code).toBe(5);
    expect(decodeGatewayError(401, fixtures.invalidToken)).toEqual({
      code: 16,
      message: "etcdserver: invalid auth token",
    });
  });

  it("reads an error object inside a stream", () => {
    const line = `{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: request timed out","http_status":"Service Unavailable"}}\n`;
    expect(decodeGatewayError(200, line)).toEqual({ code: 14, message: "etcdserver: request timed out" });
  });

  it("falls back to the HTTP status for non-JSON bodies", () => {
    expect(decodeGatewayError(502, "<html>Bad Gateway</html>")).toEqual({ code: undefined, message: "HTTP 502" });
    expect(decodeGatewayError(503, "")).toEqual({ code: undefined, message: "HTTP 503" });
  });
});

describe("watch messages", () => {
  const result = (s: string) => json(s).result as Record<string, unknown>;

  it("classifies created, PUT, DELETE and history, every event of a message in order", () => {
    const put = (key: string, revision: number) => ({
      type: "put",
      kv: { key, value: "x", createRevision: revision, modRevision: revision, lease: 0n },
    });
    const del = (key: string, revision: number) => ({ type: "delete", key, revision });
    expect(decodeWatchResult(result(fixtures.watchCreated))).toEqual({ kind: "created" });
    expect(decodeWatchResult(result(fixtures.watchPut))).toEqual({ kind: "events", events: [put("r/b", 6)] });
    expect(decodeWatchResult(result(fixtures.watchDelete))).toEqual({ kind: "events", events: [del("r/a", 9)] });
    expect(decodeWatchResult(result(fixtures.watchHistory))).toEqual({
      kind: "events",
      events: [put("r/a", 5), del("r/a", 9)],
    });
    expect(decodeWatchResult(result(fixtures.watchTwoDeletes))).toEqual({
      kind: "events",
      events: [del("r/h", 3), del("r/h", 5)],
    });
  });

  it("a compacted start revision cancels with compact_revision", () => {
    expect(decodeWatchResult(result(fixtures.watchCompacted))).toEqual({ kind: "compacted" });
  });

  it("other cancellations carry etcd's reason", () => {
    expect(decodeWatchResult(result(fixtures.watchBadToken))).toEqual({
      kind: "canceled",
      reason: "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
    });
  });
});
