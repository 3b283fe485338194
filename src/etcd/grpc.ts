import { ConsecutiveBreaker, circuitBreaker, handleWhen, isBrokenCircuitError, noop } from "cockatiel";
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type IKeyValue,
  isRecoverableError,
  type Watcher,
} from "etcd3";
import { delay } from "./delay.js";
import { keepAliveLanes, streamEnded } from "./keepalive-lanes.js";
import {
  type AllOrNothing,
  EtcdAuthError,
  type EtcdClient,
  type EtcdConnectionOptions,
  EtcdUnavailableError,
  type GetResult,
  type KeyValue,
  LeaseExistsError,
  LeaseNotFoundError,
  type LeaseTtl,
  type RangeResult,
  type WatchEnd,
} from "./types.js";

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

  const call = async <T>(op: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await withTimeout(fn(), opts.timeoutMs, op);
    } catch (err) {
      throw translate(err, op);
    }
  };

  const get = async (key: string): Promise<GetResult> => {
    const res = await call("range", () => client.kv.range({ key: Buffer.from(key) }));
    const kv = res.kvs[0];
    return { revision: Number(res.header.revision), ...(kv ? { kv: toKv(kv) } : {}) };
  };

  const watchers = new Set<() => void>();

  const keepAlives = keepAliveLanes(async (events) => {
    // etcd3 types the stream narrowly; at runtime it is a Node duplex stream.
    const stream = (await client.leaseClient.leaseKeepAlive()) as unknown as import("node:stream").Duplex;
    stream.on("data", (res: { ID: string; TTL: string }) => events.reply(res.ID, Number(res.TTL)));
    stream.on("error", (err: Error) => events.broken(err));
    stream.on("end", () => events.broken(streamEnded()));
    return { write: (id) => stream.write({ ID: id }), end: () => stream.end() };
  });

  /**
   * Reports DELETEs like a watch would, by reading the key every 250 ms: a DELETE is
   * reported (at the read's revision) when the key seen last is gone or was re-created.
   */
  const pollDeletes = async (
    key: string,
    fromRevision: number,
    onDelete: (revision: number) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd> => {
    // Create revision of the key at the last read, undefined when it was absent. The
    // caller watches from right after a read that saw the key, so at first the key seen is
    // one created before `fromRevision`.
    let seen: number | undefined = fromRevision - 1;
    for (;;) {
      if (signal.aborted) return "aborted";
      const { kv, revision } = await get(key);
      if (signal.aborted) return "aborted";
      const created = kv?.createRevision;
      if (seen !== undefined && (created === undefined || created > seen)) onDelete(revision);
      seen = created;
      await delay(250, signal);
    }
  };

  /**
   * One etcd3 watcher. Settles "broken" when the shared watch stream drops after the
   * watcher was established: etcd3 would re-attach it by itself, but from the revision of
   * its "created" response, which skips history not delivered yet; the caller reopens it
   * from its own resume point instead.
   */
  const watchConnection = async (
    key: string,
    fromRevision: number,
    onDelete: (revision: number) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd | "broken" | { error: Error }> => {
    if (signal.aborted) return "aborted";
    let settle: (o: WatchEnd | "broken" | { error: Error }) => void = () => {};
    const outcome = new Promise<WatchEnd | "broken" | { error: Error }>((resolve) => {
      settle = resolve;
    });
    const onAbort = () => settle("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
    let watcher: Watcher | undefined;
    let live = true;
    let connected = false;
    let canceled = false;
    try {
      watcher = client.watch().key(key).startRevision(String(fromRevision)).only("delete").watcher();
      // A cancelled watcher stays attached until etcd confirms; it must not report then.
      watcher.on("delete", (kv: IKeyValue) => live && onDelete(Number(kv.mod_revision)));
      // etcd cancels a single-key watch when its start revision was compacted (etcd 3.4
      // gives no reason then) or, with auth on, when its token is no longer valid.
      watcher.on("error", (err: Error) => {
        canceled = true;
        settle(/auth|permission/i.test(err.message) ? { error: err } : "compacted");
      });
      // Before the watcher is established etcd3 retries the stream itself; the deadline decides.
      watcher.on("disconnected", () => connected && settle("broken"));
      const established = new Promise<"connected">((resolve) =>
        watcher?.once("connected", () => {
          connected = true;
          resolve("connected");
        }),
      );
      const first = await Promise.race([established, outcome, sleep(opts.timeoutMs).then(() => "timeout" as const)]);
      if (first === "timeout") {
        throw new EtcdUnavailableError(`etcd watch was not established within ${opts.timeoutMs} ms`);
      }
      return await outcome;
    } finally {
      live = false;
      signal.removeEventListener("abort", onAbort);
      // Cancelling talks to etcd; never make the caller wait for it. A watch etcd has
      // canceled itself must not be canceled again: etcd would confirm that, and etcd3
      // throws on a reply for a watcher it has already dropped.
      if (!canceled) watcher?.cancel().catch(() => {});
    }
  };

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

    async watchDeletes(key, fromRevision, onDelete, signal): Promise<WatchEnd> {
      if (signal.aborted) return "aborted";
      const stop = new AbortController();
      const end = () => stop.abort();
      signal.addEventListener("abort", end, { once: true });
      watchers.add(end);
      // Every DELETE before `next` has been reported.
      let next = fromRevision;
      const report = (revision: number) => {
        next = revision + 1;
        onDelete(revision);
      };
      try {
        for (;;) {
          const r = await watchConnection(key, next, report, stop.signal);
          if (r === "broken") continue;
          if (typeof r === "string") return r;
          // etcd cancels a watch whose auth token expired. etcd3 re-authenticates unary
          // calls but not its shared watch stream, so the watch cannot be renewed here:
          // fall back to polling the key, which unary calls keep authenticated.
          if (/auth token|Unauthenticated/i.test(r.error.message))
            return await pollDeletes(key, next, report, stop.signal);
          throw translate(r.error, "watch");
        }
      } finally {
        signal.removeEventListener("abort", end);
        watchers.delete(end);
      }
    },

    async ping() {
      // Status needs no key permissions, so a user confined to the lock prefix can ping.
      const status = await call("status", () => client.maintenance.status({}));
      if (!status.leader || status.leader === "0") throw new EtcdUnavailableError("etcd member has no leader");
    },

    async close() {
      for (const end of watchers) end();
      keepAlives.close();
      client.close();
    },
  };
}

function allOrNothing(res: {
  header: { revision: string };
  succeeded: boolean;
  responses: { response_range?: { kvs: IKeyValue[] } }[];
}): AllOrNothing {
  const revision = Number(res.header.revision);
  if (res.succeeded) return { applied: true, revision };
  return {
    applied: false,
    revision,
    kvs: res.responses.map((r) => r.response_range?.kvs[0] && toKv(r.response_range.kvs[0])),
  };
}

/** The member could not be reached at all (as opposed to an answer that is an error). */
function isConnectionFailure(err: Error): boolean {
  return (
    isRecoverableError(err) && /No connection established|Connection dropped|ECONNREFUSED|ECONNRESET/.test(err.message)
  );
}

function toKv(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: BigInt(kv.lease || "0"),
  };
}

function translate(err: unknown, op: string): Error {
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
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    (err instanceof Error && isRecoverableError(err))
  ) {
    return new EtcdUnavailableError(`etcd ${op} failed: ${(err as Error).message}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref?.());
}

/** Belt and braces over gRPC deadlines: streams and dialing are not covered by them. */
async function withTimeout<T>(p: Promise<T>, ms: number, op: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new EtcdUnavailableError(`etcd ${op} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
