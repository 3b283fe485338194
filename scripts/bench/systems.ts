import { noop } from "cockatiel";
import { Etcd3 } from "etcd3";
import { Pool } from "undici";
import type { ServiceProcess } from "./procs.js";

/**
 * The systems under test, each behind one small interface so every case drives them the
 * same way:
 * - `etcd3`: the `etcd3` client doing the lock cycle itself (the baseline): LeaseGrant,
 *   Txn(create-if-absent, with the lease), LeaseRevoke — exactly 3 raw RPCs, as
 *   src/etcd/grpc.ts issues them. Waiting (only in the wait cases) watches the key for a
 *   delete from the txn's revision + 1, then tries the txn again with the same lease.
 * - `leasehold-grpc` / `leasehold-http`: POST /locks/{name} (201) then DELETE
 *   /locks/{name} with the lease in a JSON body (204), against the service running with
 *   ETCD_TRANSPORT=grpc or http.
 * - `etcd-lock`: etcd's own lock API through its JSON gateway: /v3/lock/lock {name,
 *   lease} then /v3/lock/unlock {key}. It needs a lease; each client (session) grants one
 *   when it starts and revokes it when it ends, so a cycle is 2 gateway calls — the
 *   cheapest way to use that API (a lease per cycle would add a grant and a revoke).
 */

export type SystemId = "etcd3" | "leasehold-grpc" | "leasehold-http" | "etcd-lock";

export const SYSTEM_IDS: readonly SystemId[] = ["etcd3", "leasehold-grpc", "leasehold-http", "etcd-lock"];

/** A granted lock. `token` orders successive grants of one name (strictly increasing). */
export interface Held {
  token: number;
  release(): Promise<void>;
}

/** One caller: a lock cycle at a time. */
export interface Session {
  /** Acquire `name`, waiting up to `waitSeconds` (0: fail at once when held). */
  acquire(name: string, waitSeconds: number): Promise<Held>;
  close(): Promise<void>;
}

/** Connections for `slots` concurrent callers. */
export interface Client {
  session(): Promise<Session>;
  /** How many acquires are waiting now, of those this client started on names under `prefix`. */
  waiting(prefix: string, names: number): Promise<number>;
  close(): Promise<void>;
}

export interface System {
  id: SystemId;
  /** The service process whose RSS and CPU are reported, if the system has one. */
  service?: ServiceProcess;
  client(slots: number): Promise<Client>;
}

/** An acquire that waited and still found the lock held (409 after `wait`). */
export class TimedOut extends Error {
  override name = "TimedOut";
}

// ---------------------------------------------------------------------------------------

export function etcd3System(endpoint: string): System {
  const prefix = "bench-direct/";
  return {
    id: "etcd3",
    async client() {
      const client = new Etcd3({ hosts: [endpoint], faultHandling: { host: () => noop, global: noop } });
      let watching = 0;

      const tryCreate = async (key: Buffer, lease: string) =>
        client.kv.txn({
          compare: [{ key, target: "Create", result: "Equal", create_revision: 0 }],
          success: [{ request_put: { key, value: Buffer.from("{}"), lease } }],
          failure: [],
        });

      const waitDelete = async (key: Buffer, fromRevision: number, deadline: number) => {
        const watcher = await client.watch().key(key).startRevision(String(fromRevision)).only("delete").create();
        watching++;
        try {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
            watcher.once("delete", () => {
              clearTimeout(timer);
              resolve();
            });
          });
        } finally {
          watching--;
          watcher.cancel().catch(() => {});
        }
      };

      const session: Session = {
        async acquire(name, waitSeconds) {
          const key = Buffer.from(prefix + name);
          const deadline = Date.now() + waitSeconds * 1000;
          const granted = await client.leaseClient.leaseGrant({ TTL: 30 });
          const lease = granted.ID;
          const revoke = async () => {
            await client.leaseClient.leaseRevoke({ ID: lease });
          };
          try {
            for (;;) {
              const txn = await tryCreate(key, lease);
              const revision = Number(txn.header.revision);
              if (txn.succeeded) return { token: revision, release: revoke };
              if (Date.now() >= deadline) throw new TimedOut(`${name} is held`);
              await waitDelete(key, revision + 1, deadline);
            }
          } catch (err) {
            await revoke().catch(() => {});
            throw err;
          }
        },
        async close() {},
      };
      return {
        session: async () => session,
        waiting: async () => watching,
        close: async () => client.close(),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------

export function leaseholdSystem(id: "leasehold-grpc" | "leasehold-http", service: ServiceProcess): System {
  return {
    id,
    service,
    async client(slots) {
      const pool = new Pool(service.url, { connections: slots, pipelining: 1, keepAliveTimeout: 30_000 });
      const session: Session = {
        async acquire(name, waitSeconds) {
          const path = `/locks/${encodeURIComponent(name)}`;
          const res = await pool.request({
            method: "POST",
            path,
            ...(waitSeconds > 0
              ? { headers: { "content-type": "application/json" }, body: `{"wait":${waitSeconds}}` }
              : {}),
          });
          const text = await res.body.text();
          if (res.statusCode === 409) throw new TimedOut(`${name} is held`);
          if (res.statusCode !== 201) throw new Error(`POST ${path} → ${res.statusCode} ${text.slice(0, 200)}`);
          const grant = JSON.parse(text) as { token: number; lease: string };
          return {
            token: grant.token,
            async release() {
              const del = await pool.request({
                method: "DELETE",
                path,
                headers: { "content-type": "application/json" },
                body: `{"lease":"${grant.lease}"}`,
                // undici closes the connection after any DELETE that carries a body unless
                // told not to; curl and most HTTP clients keep it, as the server asks.
                reset: false,
              });
              const body = await del.body.text();
              if (del.statusCode !== 204) throw new Error(`DELETE ${path} → ${del.statusCode} ${body.slice(0, 200)}`);
            },
          };
        },
        async close() {},
      };
      return {
        session: async () => session,
        // The instance's own waiter gauge; each service serves only its own system's load.
        async waiting() {
          const res = await pool.request({ method: "GET", path: "/metrics" });
          const text = await res.body.text();
          return Number(/^leasehold_waiters (\d+)/m.exec(text)?.[1] ?? 0);
        },
        close: () => pool.close(),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** etcd's range_end for all keys starting with `prefix`, base64 (the prefix is ASCII). */
function prefixEndB64(prefix: string): string {
  const bytes = Buffer.from(prefix);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) + 1;
  return bytes.toString("base64");
}

export function etcdLockSystem(endpoint: string): System {
  const prefix = "bench-lock/";
  return {
    id: "etcd-lock",
    async client(slots) {
      const pool = new Pool(endpoint, { connections: slots, pipelining: 1, keepAliveTimeout: 30_000 });
      const post = async <T>(path: string, body: unknown, timeoutMs?: number): Promise<T> => {
        const res = await pool.request({
          method: "POST",
          path,
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          ...(timeoutMs !== undefined ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
        });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`etcd ${path} → ${res.statusCode} ${text.slice(0, 200)}`);
        return JSON.parse(text) as T;
      };
      return {
        async session() {
          // Long enough for any round: the lease is revoked when the session closes.
          const { ID: lease } = await post<{ ID: string }>("/v3/lease/grant", { TTL: 300 });
          return {
            async acquire(name, waitSeconds) {
              let res: { header: { revision: string }; key: string };
              try {
                // etcd's lock blocks until granted; `wait` bounds it on our side.
                res = await post("/v3/lock/lock", { name: b64(prefix + name), lease }, (waitSeconds || 30) * 1000);
              } catch (err) {
                if ((err as Error).name === "TimeoutError") throw new TimedOut(`${name} is held`);
                throw err;
              }
              return {
                token: Number(res.header.revision),
                release: async () => {
                  await post("/v3/lock/unlock", { key: res.key });
                },
              };
            },
            async close() {
              await post("/v3/lease/revoke", { ID: lease }).catch(() => {});
            },
          };
        },
        // Every lock call puts its key (name/lease) before it waits: keys beyond one per name wait.
        async waiting(namePrefix, names) {
          const start = prefix + namePrefix;
          const res = await post<{ count?: string }>("/v3/kv/range", {
            key: b64(start),
            range_end: prefixEndB64(start),
            count_only: true,
          });
          return Math.max(0, Number(res.count ?? 0) - names);
        },
        close: () => pool.close(),
      };
    },
  };
}
