/**
 * etcd over its HTTP/JSON gateway (`/v3/...`) with nothing but `fetch`, so it runs on
 * Cloudflare Workers (no gRPC there) as well as on Node. The parts, each in
 * `src/etcd/gateway/`: `codec` (JSON to and from our types), `session` (endpoint failover
 * and the auth token), `watch` (one watch stream, for the shared loop in watch-loop.ts)
 * and `keepalive` (keep-alives over long-lived streams).
 *
 * TLS: for `https://` endpoints the runtime's fetch does TLS with the platform's trust
 * store. The `tls` PEM options (private CA, client certificate) cannot be handed to
 * plain fetch, so this module ignores them: on Node, `src/node/gateway.ts` passes them to
 * the `fetch`, `post` and `duplex` it supplies; on Workers put etcd behind a publicly
 * trusted certificate (or use a Workers mTLS binding as the `fetch` option).
 */

import {
  decodeGet,
  decodeGrant,
  decodeInt64,
  decodeJoinReads,
  decodeKeepAlive,
  decodeKeyReads,
  decodeRange,
  decodeScan,
  decodeTimeToLive,
  EtcdGatewayError,
  encodeLeaseId,
  FAILED_PRECONDITION,
  headerRevision,
  type Json,
  NOT_FOUND,
  OUT_OF_RANGE,
} from "./gateway/codec.js";
import { type GatewayDuplex, gatewayKeepAlives } from "./gateway/keepalive.js";
import {
  encodeCreateAll,
  encodeDeleteAll,
  encodeGet,
  encodeGuardedWrite,
  encodeGuardedWriteAll,
  encodeJoinAll,
  encodeJoinReads,
  encodeKeyReads,
  encodePutIfUnchanged,
  encodeRange,
  encodeScan,
} from "./gateway/requests.js";
import { type GatewayPost, GatewaySession } from "./gateway/session.js";
import { gatewayWatchStream } from "./gateway/watch.js";
import { comparedKeys, splitReads } from "./guarded.js";
import { earlierJoin, readFailedJoin } from "./join.js";
import { readKeysAt } from "./pinned-reads.js";
import {
  type AllOrNothing,
  type EtcdClient,
  type EtcdConnectionOptions,
  EtcdUnavailableError,
  LeaseExistsError,
  LeaseNotFoundError,
  type LeaseTtl,
  type WatchEnd,
  type WatchEvent,
} from "./types.js";
import { onDeletes, WatchLoops, type WatchTarget } from "./watch-loop.js";

export { EtcdGatewayError } from "./gateway/codec.js";
export type { GatewayDuplex } from "./gateway/keepalive.js";
export type { GatewayPost } from "./gateway/session.js";

export interface GatewayOptions extends EtcdConnectionOptions {
  /** For watch streams, and for unary calls unless `post` is given; default the runtime's `fetch`. */
  fetch?: typeof fetch;
  /**
   * For unary calls; default `fetch`. Node passes a leaner client with a connection pool
   * of its own, so watch streams (which hold their connection while they run) never take
   * the unary calls' connections.
   */
  post?: GatewayPost;
  /** Keep-alives over a few long-lived streams instead of one request each (see GatewayDuplex). */
  duplex?: GatewayDuplex;
}

export function createGatewayEtcd(opts: GatewayOptions): EtcdClient {
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const post: GatewayPost =
    opts.post ??
    (async (url, init) => {
      const res = await doFetch(url, { method: "POST", ...init });
      return { status: res.status, text: await res.text() };
    });
  const session = new GatewaySession(opts, post);
  const watches = new WatchLoops(opts.timeoutMs);
  const keepAliveStreams = opts.duplex ? gatewayKeepAlives(session, opts.duplex) : undefined;

  const mustOk = async (path: string, body: unknown): Promise<Json> => {
    const r = await session.call(path, body);
    if ("error" in r) throw new EtcdGatewayError(r.error.message, r.error.code, 0);
    return r.ok;
  };

  /** A read-only txn at `at` (none: now); "compacted" when etcd has no longer got that revision. */
  const readAt = async <R>(
    body: Json,
    at: number | undefined,
    decode: (ok: Json) => { revision: number; reads: R[] },
  ) => {
    const r = await session.call("/v3/kv/txn", body, [OUT_OF_RANGE]);
    if (!("error" in r)) return decode(r.ok);
    if (at !== undefined) return "compacted" as const;
    throw new EtcdGatewayError(r.error.message, r.error.code, 0);
  };

  /** An all-or-nothing txn's answer; when it failed, what it compared at its revision. */
  const settled = async (ok: Json, keys: string[]): Promise<AllOrNothing> => {
    const revision = headerRevision(ok);
    if (ok.succeeded === true) return { applied: true, revision };
    return readKeysAt(keys, revision, (chunk, at) => readAt(encodeKeyReads(chunk, at), at, decodeKeyReads));
  };

  /** A txn with no failure branch: its revision when its compares held and it wrote, else 0. */
  const writeIfHeld = async (txn: Json): Promise<number> => {
    const r = await session.call("/v3/kv/txn", txn, [NOT_FOUND]);
    if ("error" in r) throw new LeaseNotFoundError(`etcd txn: ${r.error.message}`);
    const applied = r.ok.succeeded === true;
    // A compare failing on a retry may be the earlier attempt's own doing.
    if (!applied && r.retried) throw new EtcdUnavailableError("etcd txn broke off and was retried: outcome unknown");
    return applied ? headerRevision(r.ok) : 0;
  };

  const watch = async (
    fromRevision: number,
    onEvents: (revision: number, events: WatchEvent[]) => void,
    signal: AbortSignal,
    target: WatchTarget,
  ): Promise<WatchEnd> => {
    if (signal.aborted) return "aborted";
    if (session.isClosed) throw new EtcdUnavailableError("etcd client is closed");
    return watches.run(fromRevision, onEvents, signal, gatewayWatchStream(session, doFetch, target));
  };

  const leaseTimeToLive = async (id: bigint): Promise<LeaseTtl> => {
    const r = await session.call("/v3/lease/timetolive", { ID: encodeLeaseId(id) }, [NOT_FOUND]);
    return "error" in r ? { ttl: -1, grantedTtl: 0 } : decodeTimeToLive(r.ok);
  };

  return {
    async get(key) {
      return decodeGet(await mustOk("/v3/kv/range", encodeGet(key)));
    },

    async range(start, end, limit) {
      return decodeRange(await mustOk("/v3/kv/range", encodeRange(start, end, limit)));
    },

    async leaseGrant(id, ttlSeconds) {
      if (!Number.isSafeInteger(ttlSeconds)) throw new RangeError(`lease TTL must be an integer, got ${ttlSeconds}`);
      const r = await session.call("/v3/lease/grant", { ID: encodeLeaseId(id), TTL: String(ttlSeconds) }, [
        FAILED_PRECONDITION,
      ]);
      if (!("error" in r)) return decodeGrant(r.ok);
      if (r.retried) {
        // An earlier attempt broke off after sending, so this lease is most likely the one
        // that attempt granted (IDs are random 64-bit numbers): report it as granted.
        const ttl = await leaseTimeToLive(id);
        if (ttl.ttl >= 0) return ttl.grantedTtl;
      }
      throw new LeaseExistsError("etcd lease ID already in use");
    },

    async leaseKeepAliveOnce(id) {
      if (keepAliveStreams) return keepAliveStreams.keepAliveOnce(id);
      const r = await session.call("/v3/lease/keepalive", { ID: encodeLeaseId(id) }, [NOT_FOUND], true);
      return "error" in r ? 0 : decodeKeepAlive(r.ok);
    },

    async leaseRevoke(id) {
      const r = await session.call("/v3/lease/revoke", { ID: encodeLeaseId(id) }, [NOT_FOUND]);
      return !("error" in r);
    },

    leaseTimeToLive,

    async createAllIfAbsent(items) {
      const r = await session.call("/v3/kv/txn", encodeCreateAll(items), [NOT_FOUND]);
      if ("error" in r) throw new LeaseNotFoundError(`etcd txn: ${r.error.message}`);
      const res = await settled(
        r.ok,
        items.map((i) => i.key),
      );
      // A broken-off earlier attempt applied the txn: nobody else holds these lease IDs.
      if (!res.applied && r.retried && items.every((i, n) => i.lease !== 0n && res.kvs[n]?.lease === i.lease)) {
        return { applied: true, revision: res.kvs[0]?.createRevision ?? res.revision };
      }
      return res;
    },

    async deleteAllIfUnchanged(items) {
      const r = await session.call("/v3/kv/txn", encodeDeleteAll(items));
      if ("error" in r) throw new EtcdGatewayError(r.error.message, r.error.code, 0);
      const res = await settled(
        r.ok,
        items.map((i) => i.key),
      );
      // A broken-off earlier attempt may have deleted them, or someone else may have (a
      // holder's release through another instance, an expiry): nothing tells the two
      // apart, so the outcome is unknown. Reporting "applied" here once let two instances
      // each believe they had released a lock and pool its lease, so that one lease came
      // to hold two tenants' locks.
      if (!res.applied && r.retried && res.kvs.every((kv) => kv === undefined)) {
        throw new EtcdUnavailableError("etcd txn broke off, and its retry found the keys gone: outcome unknown");
      }
      return res;
    },

    putIfUnchanged(item) {
      return writeIfHeld(encodePutIfUnchanged(item));
    },

    guardedWrite(w) {
      return writeIfHeld(encodeGuardedWrite(w));
    },

    async guardedWriteAll(writes) {
      const r = await session.call("/v3/kv/txn", encodeGuardedWriteAll(writes), [NOT_FOUND]);
      if ("error" in r) throw new LeaseNotFoundError(`etcd txn: ${r.error.message}`);
      const res = await settled(r.ok, writes.flatMap(comparedKeys));
      // A compare failing on a retry may be the earlier attempt's own doing (as in writeIfHeld).
      if (!res.applied && r.retried) {
        throw new EtcdUnavailableError("etcd txn broke off and was retried: outcome unknown");
      }
      return splitReads(writes, res);
    },

    watchDeletes(key, fromRevision, onDelete, signal) {
      return watch(fromRevision, onDeletes(onDelete), signal, { key, deletesOnly: true });
    },

    async scan(start, end, q) {
      return decodeScan(await mustOk("/v3/kv/range", encodeScan(start, end, q)));
    },

    async joinAll(items) {
      const r = await session.call("/v3/kv/txn", encodeJoinAll(items), [NOT_FOUND]);
      if ("error" in r) throw new LeaseNotFoundError(`etcd txn: ${r.error.message}`);
      const revision = headerRevision(r.ok);
      if (r.ok.succeeded === true) return { applied: true, revision };
      const result = await readFailedJoin(items, revision, (chunk, at) =>
        readAt(encodeJoinReads(chunk, at), at, decodeJoinReads),
      );
      if (!r.retried) return result;
      // An attempt that broke off may have applied, and then its own keys fail this one:
      // read them now, in one read-only txn (not at the failed txn's revision: an attempt
      // still in flight in etcd may apply after it). Every item's key there, with that
      // item's value and lease, from one txn: it did. None there: a refusal like any other
      // (had it applied, its keys went since, and the lines hold none of them either way;
      // a key nobody was told of goes only with its lease). Some there: the outcome is
      // unknown.
      const keys = items.map((i) => i.key);
      const own = decodeKeyReads(await mustOk("/v3/kv/txn", encodeKeyReads(keys, undefined))).reads;
      const earlier = earlierJoin(items, own);
      if (earlier === "none") return result;
      if (earlier === "unknown") {
        throw new EtcdUnavailableError(
          "etcd txn broke off, and its retry found some of the joined keys: outcome unknown",
        );
      }
      return { applied: true, revision: earlier.applied };
    },

    watchRange(start, end, fromRevision, onEvents, signal, options) {
      return watch(fromRevision, onEvents, signal, { key: start, end, ...options });
    },

    async ping() {
      const status = await mustOk("/v3/maintenance/status", {});
      if (decodeInt64(status.leader) === 0n) throw new EtcdUnavailableError(`etcd (${session.origins}) has no leader`);
    },

    async close() {
      session.close();
      keepAliveStreams?.close();
      watches.close();
    },
  };
}
