import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop } from "cockatiel";
import { Etcd3, type IRangeResponse, type ITxnRequest, type ITxnResponse } from "etcd3";
import { Deadline } from "../timers.js";
import { GrpcChannel } from "./grpc/channel.js";
import {
  decodeJoinReads,
  decodeKeyReads,
  guardedTxn,
  isConnectionFailure,
  isOutOfRange,
  joinReadsTxn,
  joinTxn,
  keyReadsTxn,
  scanRequest,
  toKv,
  toScan,
  translate,
} from "./grpc/codec.js";
import { etcdMethods, type Method } from "./grpc/methods.js";
import { grpcWatchStream, WatchStreamRenewal } from "./grpc/watch.js";
import { comparedKeys, splitReads } from "./guarded.js";
import { readFailedJoin } from "./join.js";
import { keepAliveLanes, streamEnded } from "./keepalive-lanes.js";
import { readKeysAt } from "./pinned-reads.js";
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

/**
 * etcd over gRPC (Node): unary calls and keep-alives over Node's HTTP/2 client
 * (grpc/channel.ts), watches with the `etcd3` client.
 */
export function createGrpcEtcd(opts: EtcdConnectionOptions): EtcdClient {
  const methods = etcdMethods();
  const channel = new GrpcChannel(opts, methods);
  const client = new Etcd3({
    hosts: opts.endpoints,
    dialTimeout: opts.timeoutMs,
    // For watches, and the unary read that renews their token. Its own retries are off so
    // that "etcd down" surfaces within one deadline; members that cannot be reached are
    // skipped for a second, as the channel does.
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

  /** One unary call (within the call deadline), its errors as ours. */
  // biome-ignore lint/suspicious/noExplicitAny: etcd3's message types, as each caller uses them
  const unary = async <T = any>(method: Method<unknown, unknown>, req: unknown, op: string): Promise<T> => {
    try {
      return (await channel.unary(method, req, op)) as T;
    } catch (err) {
      throw translate(err, op);
    }
  };

  const txn = (req: ITxnRequest) => unary<ITxnResponse>(methods.txn, req, "txn");

  /** A read-only txn at `at` (none: now); "compacted" when etcd has no longer got that revision. */
  const readAt = async <R>(req: ITxnRequest, at: number | undefined, decode: (res: ITxnResponse) => R) => {
    try {
      return decode(await txn(req));
    } catch (err) {
      if (at !== undefined && isOutOfRange(err)) return "compacted" as const;
      throw err;
    }
  };

  /** An all-or-nothing txn's answer; when it failed, what it compared at its revision. */
  const settled = async (res: ITxnResponse, keys: string[]): Promise<AllOrNothing> => {
    const revision = Number(res.header.revision);
    if (res.succeeded) return { applied: true, revision };
    return readKeysAt(keys, revision, (chunk, at) => readAt(keyReadsTxn(chunk, at), at, decodeKeyReads));
  };

  /** Belt and braces over a keep-alive's reply, which no gRPC deadline covers. */
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
    const res = await unary<IRangeResponse>(methods.range, { key: Buffer.from(key) }, "range");
    const kv = res.kvs[0];
    return { revision: Number(res.header.revision), ...(kv ? { kv: toKv(kv) } : {}) };
  };

  const watches = new WatchLoops(opts.timeoutMs);
  // Watch streams carry etcd3's token, which etcd3 renews on its own unary calls.
  const renewal = new WatchStreamRenewal(client, (key) =>
    call("range", () => client.kv.range({ key: Buffer.from(key) })),
  );
  const watch = (target: WatchTarget) => grpcWatchStream(client, renewal, target, opts.timeoutMs);

  const keepAlives = keepAliveLanes(async (events) => {
    const { leaseKeepAlive } = methods;
    const stream = await channel.bidi(leaseKeepAlive.path, {
      message: (buf) => {
        const res = leaseKeepAlive.decode(buf) as { ID: string; TTL: string };
        events.reply(res.ID, Number(res.TTL));
      },
      ended: (err) => events.broken(err ?? streamEnded()),
    });
    return { write: (id) => stream.write(leaseKeepAlive.encode({ ID: id })), end: () => stream.end() };
  });

  return {
    get,

    async range(start, end, limit): Promise<RangeResult> {
      const res = await unary<IRangeResponse>(
        methods.range,
        { key: Buffer.from(start), range_end: Buffer.from(end), limit },
        "range",
      );
      return { revision: Number(res.header.revision), kvs: res.kvs.map(toKv), more: res.more };
    },

    async leaseGrant(id, ttlSeconds) {
      const res = await unary(methods.leaseGrant, { ID: id.toString(), TTL: ttlSeconds }, "leaseGrant");
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
        await unary(methods.leaseRevoke, { ID: id.toString() }, "leaseRevoke");
        return true;
      } catch (err) {
        if (err instanceof LeaseNotFoundError) return false;
        throw err;
      }
    },

    async leaseTimeToLive(id): Promise<LeaseTtl> {
      const res = await unary(methods.leaseTimeToLive, { ID: id.toString() }, "leaseTimeToLive");
      // etcd answers TTL -1 (not an error) for a lease that does not exist.
      const ttl = Number(res.TTL);
      return ttl < 0 ? { ttl: -1, grantedTtl: 0 } : { ttl, grantedTtl: Number(res.grantedTTL) };
    },

    async createAllIfAbsent(items): Promise<AllOrNothing> {
      const keys = items.map((i) => Buffer.from(i.key));
      const res = await txn({
        compare: keys.map((key) => ({ key, target: "Create", result: "Equal", create_revision: 0 })),
        success: items.map((i, n) => ({
          request_put: { key: keys[n], value: Buffer.from(i.value), lease: i.lease.toString() },
        })),
      });
      return settled(
        res,
        items.map((i) => i.key),
      );
    },

    async deleteAllIfUnchanged(items): Promise<AllOrNothing> {
      const keys = items.map((i) => Buffer.from(i.key));
      const res = await txn({
        compare: items.map((i, n) => ({ key: keys[n], target: "Mod", result: "Equal", mod_revision: i.modRevision })),
        success: keys.map((key) => ({ request_delete_range: { key } })),
      });
      return settled(
        res,
        items.map((i) => i.key),
      );
    },

    async putIfUnchanged(item): Promise<number> {
      const key = Buffer.from(item.key);
      const res = await txn({
        compare: [{ key, target: "Mod", result: "Equal", mod_revision: item.modRevision }],
        success: [{ request_put: { key, value: Buffer.from(item.value), lease: item.lease.toString() } }],
        failure: [],
      });
      return res.succeeded ? Number(res.header.revision) : 0;
    },

    async guardedWrite(w): Promise<number> {
      const res = await txn(guardedTxn(w));
      return res.succeeded ? Number(res.header.revision) : 0;
    },

    async guardedWriteAll(writes) {
      const txns = writes.map(guardedTxn);
      const res = await txn({
        compare: txns.flatMap((t) => t.compare ?? []),
        success: txns.flatMap((t) => t.success ?? []),
      });
      return splitReads(writes, await settled(res, writes.flatMap(comparedKeys)));
    },

    watchDeletes(key, fromRevision, onDelete, signal) {
      return watches.run(fromRevision, onDeletes(onDelete), signal, watch({ key, deletesOnly: true }));
    },

    async scan(start, end, q) {
      return toScan(await unary<IRangeResponse>(methods.range, scanRequest(start, end, q), "range"));
    },

    async joinAll(items) {
      // A request that may have reached etcd is never sent again (channel.ts), so a join
      // never needs to tell an earlier attempt's keys from another participant's.
      const res = await txn(joinTxn(items));
      const revision = Number(res.header.revision);
      if (res.succeeded) return { applied: true, revision };
      return readFailedJoin(items, revision, (chunk, at) => readAt(joinReadsTxn(chunk, at), at, decodeJoinReads));
    },

    watchRange(start, end, fromRevision, onEvents, signal, options) {
      return watches.run(fromRevision, onEvents, signal, watch({ key: start, end, ...options }));
    },

    async ping() {
      // Status needs no key permissions, so a user confined to the lock prefix can ping.
      const status = await unary<{ leader: string }>(methods.status, {}, "status");
      if (!status.leader || status.leader === "0") throw new EtcdUnavailableError("etcd member has no leader");
    },

    async close() {
      watches.close();
      keepAlives.close();
      channel.close();
      client.close();
    },
  };
}
