import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop } from "cockatiel";
import { Etcd3 } from "etcd3";
import { Deadline } from "../timers.js";
import {
  allOrNothing,
  decodeJoin,
  guardedTxn,
  isConnectionFailure,
  joinTxn,
  scanRequest,
  toKv,
  toScan,
  translate,
} from "./grpc/codec.js";
import { grpcWatchStream, WatchStreamRenewal } from "./grpc/watch.js";
import { comparedKeys, splitReads } from "./guarded.js";
import { keepAliveLanes, streamEnded } from "./keepalive-lanes.js";
import {
  type AllOrNothing,
  type EtcdClient,
  type EtcdConnectionOptions,
  EtcdUnavailableError,
  type GetResult,
  LeaseExistsError,
  LeaseNotFoundError,
  type LeaseTtl,
  type RangeResult,
} from "./types.js";
import { onDeletes, WatchLoops, type WatchTarget } from "./watch-loop.js";

/** etcd over gRPC with the `etcd3` client (Node). */
export function createGrpcEtcd(opts: EtcdConnectionOptions): EtcdClient {
  const client = new Etcd3({
    hosts: opts.endpoints,
    dialTimeout: opts.timeoutMs,
    // Each call gets our deadline; the client's own retries are off so that "etcd down"
    // surfaces within one deadline instead of after hidden retries. With several members,
    // one that cannot be reached is skipped for a second (its circuit opens), so calls go
    // to the live members instead of failing on a dead one time and again. Errors from a
    // live member (e.g. "request timed out" during an election) leave its circuit closed.
    faultHandling: {
      host: () =>
        opts.endpoints.length > 1
          ? circuitBreaker(handleWhen(isConnectionFailure), {
              halfOpenAfter: 1_000,
              breaker: new ConsecutiveBreaker(1),
            })
          : noop,
      global: noop,
    },
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + opts.timeoutMs }),
    ...(opts.username !== undefined
      ? {
          auth: {
            username: opts.username,
            password: opts.password ?? "",
            callOptions: () => ({ deadline: Date.now() + opts.timeoutMs }),
          },
        }
      : {}),
    ...(opts.tls?.ca || opts.tls?.cert
      ? {
          credentials: {
            rootCertificate: Buffer.from(opts.tls.ca ?? ""),
            ...(opts.tls.cert ? { certChain: Buffer.from(opts.tls.cert) } : {}),
            ...(opts.tls.key ? { privateKey: Buffer.from(opts.tls.key) } : {}),
          },
        }
      : {}),
  });

  /** Belt and braces over gRPC deadlines: streams and dialing are not covered by them. */
  const call = async <T>(op: string, fn: () => Promise<T>): Promise<T> => {
    const deadline = new Deadline(Date.now() + opts.timeoutMs);
    try {
      return await deadline.race(
        fn(),
        () => new EtcdUnavailableError(`etcd ${op} timed out after ${opts.timeoutMs} ms`),
      );
    } catch (err) {
      throw translate(err, op);
    } finally {
      deadline.done();
    }
  };

  const get = async (key: string): Promise<GetResult> => {
    const res = await call("range", () => client.kv.range({ key: Buffer.from(key) }));
    const kv = res.kvs[0];
    return { revision: Number(res.header.revision), ...(kv ? { kv: toKv(kv) } : {}) };
  };

  const watches = new WatchLoops(opts.timeoutMs);
  const renewal = new WatchStreamRenewal(client, get);
  const watch = (target: WatchTarget) => grpcWatchStream(client, renewal, target, opts.timeoutMs);

  const keepAlives = keepAliveLanes(async (events) => {
    // etcd3 types the stream narrowly; at runtime it is a Node duplex stream.
    const stream = (await client.leaseClient.leaseKeepAlive()) as unknown as import("node:stream").Duplex;
    stream.on("data", (res: { ID: string; TTL: string }) => events.reply(res.ID, Number(res.TTL)));
    stream.on("error", (err: Error) => events.broken(err));
    stream.on("end", () => events.broken(streamEnded()));
    return { write: (id) => stream.write({ ID: id }), end: () => stream.end() };
  });

  return {
    get,

    async range(start, end, limit): Promise<RangeResult> {
      const res = await call("range", () =>
        client.kv.range({ key: Buffer.from(start), range_end: Buffer.from(end), limit }),
      );
      return { revision: Number(res.header.revision), kvs: res.kvs.map(toKv), more: res.more };
    },

    async leaseGrant(id, ttlSeconds) {
      const res = await call("leaseGrant", () => client.leaseClient.leaseGrant({ ID: id.toString(), TTL: ttlSeconds }));
      if (res.error) {
        if (/lease already exists/.test(res.error)) throw new LeaseExistsError(res.error);
        throw new Error(`etcd lease grant failed: ${res.error}`);
      }
      return Number(res.TTL);
    },

    async leaseKeepAliveOnce(id) {
      const sent = keepAlives.send(id);
      try {
        return await call("leaseKeepAlive", () => sent.reply);
      } finally {
        sent.forget();
      }
    },

    async leaseRevoke(id) {
      try {
        await call("leaseRevoke", () => client.leaseClient.leaseRevoke({ ID: id.toString() }));
        return true;
      } catch (err) {
        if (err instanceof LeaseNotFoundError) return false;
        throw err;
      }
    },

    async leaseTimeToLive(id): Promise<LeaseTtl> {
      const res = await call("leaseTimeToLive", () => client.leaseClient.leaseTimeToLive({ ID: id.toString() }));
      // etcd answers TTL -1 (not an error) for a lease that does not exist.
      const ttl = Number(res.TTL);
      return ttl < 0 ? { ttl: -1, grantedTtl: 0 } : { ttl, grantedTtl: Number(res.grantedTTL) };
    },

    async createAllIfAbsent(items): Promise<AllOrNothing> {
      const keys = items.map((i) => Buffer.from(i.key));
      const res = await call("txn", () =>
        client.kv.txn({
          compare: keys.map((key) => ({ key, target: "Create", result: "Equal", create_revision: 0 })),
          success: items.map((i, n) => ({
            request_put: { key: keys[n], value: Buffer.from(i.value), lease: i.lease.toString() },
          })),
          failure: keys.map((key) => ({ request_range: { key } })),
        }),
      );
      return allOrNothing(res);
    },

    async deleteAllIfUnchanged(items): Promise<AllOrNothing> {
      const keys = items.map((i) => Buffer.from(i.key));
      const res = await call("txn", () =>
        client.kv.txn({
          compare: items.map((i, n) => ({ key: keys[n], target: "Mod", result: "Equal", mod_revision: i.modRevision })),
          success: keys.map((key) => ({ request_delete_range: { key } })),
          failure: keys.map((key) => ({ request_range: { key } })),
        }),
      );
      return allOrNothing(res);
    },

    async putIfUnchanged(item): Promise<number> {
      const key = Buffer.from(item.key);
      const res = await call("txn", () =>
        client.kv.txn({
          compare: [{ key, target: "Mod", result: "Equal", mod_revision: item.modRevision }],
          success: [{ request_put: { key, value: Buffer.from(item.value), lease: item.lease.toString() } }],
          failure: [],
        }),
      );
      return res.succeeded ? Number(res.header.revision) : 0;
    },

    async guardedWrite(w): Promise<number> {
      const res = await call("txn", () => client.kv.txn(guardedTxn(w)));
      return res.succeeded ? Number(res.header.revision) : 0;
    },

    async guardedWriteAll(writes) {
      const txns = writes.map(guardedTxn);
      const res = await call("txn", () =>
        client.kv.txn({
          compare: txns.flatMap((t) => t.compare ?? []),
          success: txns.flatMap((t) => t.success ?? []),
          failure: writes.flatMap(comparedKeys).map((key) => ({ request_range: { key: Buffer.from(key) } })),
        }),
      );
      return splitReads(writes, allOrNothing(res));
    },

    watchDeletes(key, fromRevision, onDelete, signal) {
      return watches.run(fromRevision, onDeletes(onDelete), signal, watch({ key, deletesOnly: true }));
    },

    async scan(start, end, q) {
      return toScan(await call("range", () => client.kv.range(scanRequest(start, end, q))));
    },

    async joinAll(items) {
      return decodeJoin(items, await call("txn", () => client.kv.txn(joinTxn(items)))).result;
    },

    watchRange(start, end, fromRevision, onEvents, signal, options) {
      return watches.run(fromRevision, onEvents, signal, watch({ key: start, end, ...options }));
    },

    async ping() {
      // Status needs no key permissions, so a user confined to the lock prefix can ping.
      const status = await call("status", () => client.maintenance.status({}));
      if (!status.leader || status.leader === "0") throw new EtcdUnavailableError("etcd member has no leader");
    },

    async close() {
      watches.close();
      keepAlives.close();
      client.close();
    },
  };
}
