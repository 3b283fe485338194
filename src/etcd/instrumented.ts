import type { Metrics } from "../metrics.js";
import type { EtcdClient, WatchEnd } from "./types.js";

/** An EtcdClient that reports every call's duration and failure to `metrics`. */
export function instrumented(inner: EtcdClient, metrics: Metrics): EtcdClient {
  const timed =
    <A extends unknown[], R>(op: string, fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const started = performance.now();
      try {
        const result = await fn(...args);
        metrics.etcd(op, (performance.now() - started) / 1000, false);
        return result;
      } catch (err) {
        metrics.etcd(op, (performance.now() - started) / 1000, true);
        throw err;
      }
    };
  // A watch lasts as long as the wait; only its failures are interesting.
  const watched = async (watch: () => Promise<WatchEnd>): Promise<WatchEnd> => {
    try {
      return await watch();
    } catch (err) {
      metrics.etcd("watch", undefined, true);
      throw err;
    }
  };
  return {
    get: timed("range", (key) => inner.get(key)),
    range: timed("range", (start, end, limit) => inner.range(start, end, limit)),
    leaseGrant: timed("lease_grant", (id, ttl) => inner.leaseGrant(id, ttl)),
    leaseKeepAliveOnce: timed("lease_keepalive", (id) => inner.leaseKeepAliveOnce(id)),
    leaseRevoke: timed("lease_revoke", (id) => inner.leaseRevoke(id)),
    leaseTimeToLive: timed("lease_ttl", (id) => inner.leaseTimeToLive(id)),
    createAllIfAbsent: timed("txn", (items) => inner.createAllIfAbsent(items)),
    deleteAllIfUnchanged: timed("txn", (items) => inner.deleteAllIfUnchanged(items)),
    putIfUnchanged: timed("txn", (item) => inner.putIfUnchanged(item)),
    joinAll: timed("txn", (items) => inner.joinAll(items)),
    guardedWrite: timed("txn", (w) => inner.guardedWrite(w)),
    guardedWriteAll: timed("txn", (ws) => inner.guardedWriteAll(ws)),
    scan: timed("range", (start, end, q) => inner.scan(start, end, q)),
    watchDeletes: (key, from, onDelete, signal) => watched(() => inner.watchDeletes(key, from, onDelete, signal)),
    watchRange: (start, end, from, onEvents, signal, options) =>
      watched(() => inner.watchRange(start, end, from, onEvents, signal, options)),
    ping: timed("status", () => inner.ping()),
    close: () => inner.close(),
  };
}
