import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { noop } from "cockatiel";
import { build } from "esbuild";
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
 *   ETCD_TRANSPORT=grpc or http; with several instances, each session is bound to one
 *   of them in turn. The same for semaphores (/semaphores/{name} with `limit`) and
 *   tickets (`queue: true`, then `ticket`), which only leasehold has.
 * - `etcd-lock`: etcd's own lock API through its JSON gateway: /v3/lock/lock {name,
 *   lease} then /v3/lock/unlock {key}. It needs a lease; each client (session) grants one
 *   when it starts and revokes it when it ends, so a cycle is 2 gateway calls — the
 *   cheapest way to use that API (a lease per cycle would add a grant and a revoke).
 *
 * Those drive HTTP through undici pools tuned for the load (one connection per caller,
 * kept alive, `reset: false`). Two more systems are called as users call them, with
 * Node's own global `fetch`:
 * - `client-grpc`: the official client, `leasehold/client`, built from the same checkout
 *   as the service (`loadClient`): `acquire` then `release`, against a service of its own
 *   with ETCD_TRANSPORT=grpc.
 * - `etcd-lock-fetch`: `etcd-lock`'s calls, each a `fetch`.
 */

export type SystemId = "etcd3" | "leasehold-grpc" | "leasehold-http" | "etcd-lock" | "client-grpc" | "etcd-lock-fetch";

export const SYSTEM_IDS: readonly SystemId[] = [
  "etcd3",
  "leasehold-grpc",
  "leasehold-http",
  "etcd-lock",
  "client-grpc",
  "etcd-lock-fetch",
];

/** The systems called with Node's global `fetch`, as users call them: only the throughput cases run them. */
export const FETCH_SYSTEM_IDS: readonly SystemId[] = ["client-grpc", "etcd-lock-fetch"];

/** A granted lock. `token` orders successive grants of one name (strictly increasing). */
export interface Held {
  token: number;
  /**
   * When the grant joined its line, as an etcd revision: the order a fair line serves
   * in. leasehold's token is exactly that (the create revision of the caller's key);
   * etcd's lock API answers with a later revision, so its client finds it afterwards
   * (`Client.joinRevisions`) from the lock `key`.
   */
  joined?: number;
  key?: string;
  release(): Promise<void>;
}

/** A place in line kept across requests (a ticket), not granted yet. */
export interface InLine {
  /** Waiters ahead of it when last asked. */
  position: number;
  /** Ask again: the grant when the ticket reached the head, else the place with its new position. */
  redeem(): Promise<Held | InLine>;
  /** Give up the place. */
  leave(): Promise<void>;
}

export const isHeld = (x: Held | InLine): x is Held => "release" in x;

/** One caller: a lock cycle at a time. */
export interface Session {
  /**
   * Acquire `name`, waiting up to `waitSeconds` (0: fail at once when held); the grant
   * lives `ttlSeconds` unless released (leasehold only; otherwise the system's default).
   */
  acquire(name: string, waitSeconds: number, ttlSeconds?: number): Promise<Held>;
  /** A permit of the semaphore `name` of `limit` permits, waiting up to `waitSeconds` (leasehold only). */
  permit?(name: string, limit: number, waitSeconds: number): Promise<Held>;
  /** `name` now, or a ticket: a place in line to redeem later (leasehold only). */
  queue?(name: string): Promise<Held | InLine>;
  close(): Promise<void>;
}

/** Connections for `slots` concurrent callers. */
export interface Client {
  session(): Promise<Session>;
  /** How many acquires are waiting now, of those this client started on names under `prefix`. */
  waiting(prefix: string, names: number): Promise<number>;
  /** Fills in `joined` for grants that did not carry it (etcd's lock API). */
  joinRevisions?(grants: readonly Held[]): Promise<void>;
  close(): Promise<void>;
}

export interface System {
  id: SystemId;
  /** The service processes (instances) whose RSS and CPU are reported, summed; none for etcd alone. */
  services: readonly ServiceProcess[];
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
    services: [],
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

export function leaseholdSystem(id: "leasehold-grpc" | "leasehold-http", services: readonly ServiceProcess[]): System {
  return {
    id,
    services,
    async client(slots) {
      // Connections for every caller on each instance it may be bound to.
      const pools = services.map(
        (s) =>
          new Pool(s.url, {
            connections: Math.ceil(slots / services.length),
            pipelining: 1,
            keepAliveTimeout: 30_000,
          }),
      );
      let opened = 0;
      return {
        async session() {
          const pool = pools[opened++ % pools.length] as Pool;
          return leaseholdSession(pool);
        },
        waiting: () => waitersOf(services),
        close: async () => {
          await Promise.all(pools.map((p) => p.close()));
        },
      };
    },
  };
}

/** The answer to an acquire or a redeem: a grant (201), a place in line (202), or an error. */
interface Answer {
  status: number;
  text: string;
}

/** A caller on one instance: lock and semaphore grants, tickets. */
function leaseholdSession(pool: Pool): Session {
  const send = async (method: "POST" | "DELETE", path: string, body?: string): Promise<Answer> => {
    const res = await pool.request({
      method,
      path,
      ...(body !== undefined ? { headers: { "content-type": "application/json" }, body } : {}),
      // undici closes the connection after any DELETE that carries a body unless told
      // not to; curl and most HTTP clients keep it, as the server asks.
      ...(method === "DELETE" ? { reset: false } : {}),
    });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const fail = (what: string, a: Answer) => new Error(`${what} → ${a.status} ${a.text.slice(0, 200)}`);

  const held = (path: string, a: Answer): Held => {
    const grant = JSON.parse(a.text) as { token: number; lease: string };
    return {
      token: grant.token,
      joined: grant.token,
      async release() {
        const del = await send("DELETE", path, `{"lease":"${grant.lease}"}`);
        if (del.status !== 204) throw fail(`DELETE ${path}`, del);
      },
    };
  };
  const grantOrTimeout = (what: string, path: string, a: Answer): Held => {
    if (a.status === 409) throw new TimedOut(`${what} is held`);
    if (a.status !== 201) throw fail(`POST ${path}`, a);
    return held(path, a);
  };
  const inLine = (path: string, a: Answer): Held | InLine => {
    if (a.status === 201) return held(path, a);
    if (a.status !== 202) throw fail(`POST ${path}`, a);
    const { ticket, position } = JSON.parse(a.text) as { ticket: string; position: number };
    return {
      position,
      redeem: async () => inLine(path, await send("POST", path, `{"ticket":"${ticket}"}`)),
      async leave() {
        const del = await send("DELETE", path, `{"ticket":"${ticket}"}`);
        if (del.status !== 204) throw fail(`DELETE ${path} (ticket)`, del);
      },
    };
  };

  return {
    async acquire(name, waitSeconds, ttlSeconds) {
      const path = `/locks/${encodeURIComponent(name)}`;
      const fields = [
        ...(waitSeconds > 0 ? [`"wait":${waitSeconds}`] : []),
        ...(ttlSeconds !== undefined ? [`"ttl":${ttlSeconds}`] : []),
      ];
      return grantOrTimeout(name, path, await send("POST", path, fields.length ? `{${fields.join(",")}}` : undefined));
    },
    async permit(name, limit, waitSeconds) {
      const path = `/semaphores/${encodeURIComponent(name)}`;
      const body = waitSeconds > 0 ? `{"limit":${limit},"wait":${waitSeconds}}` : `{"limit":${limit}}`;
      return grantOrTimeout(name, path, await send("POST", path, body));
    },
    async queue(name) {
      const path = `/locks/${encodeURIComponent(name)}`;
      return inLine(path, await send("POST", path, `{"queue":true}`));
    },
    async close() {},
  };
}

// ---------------------------------------------------------------------------------------

/** The official client's module (src/client/index.ts), as `loadClient` builds it. */
export type ClientModule = typeof import("../../src/client/index.js");

/**
 * The official client of the checkout at `root`, built as its packages build it (esbuild,
 * ES2022; here into one module under `dir`), so that `--ref` measures that version's
 * client against that version's service.
 */
export async function loadClient(root: string, dir: string): Promise<ClientModule> {
  const outfile = join(dir, "leasehold-client.mjs");
  await build({
    entryPoints: [join(root, "src", "client", "index.ts")],
    outfile,
    bundle: true,
    platform: "neutral",
    format: "esm",
    target: "es2022",
    logLevel: "warning",
  });
  return (await import(pathToFileURL(outfile).href)) as ClientModule;
}

/** `leasehold/client` on Node's global fetch: one client per instance, as one process holds one. */
export function clientSystem(services: readonly ServiceProcess[], module: ClientModule): System {
  return {
    id: "client-grpc",
    services,
    async client() {
      const clients = services.map((s) => module.createClient({ url: s.url }));
      let opened = 0;
      return {
        async session() {
          const client = clients[opened++ % clients.length] as ReturnType<ClientModule["createClient"]>;
          return {
            async acquire(name, waitSeconds) {
              let grant: Awaited<ReturnType<typeof client.acquire>>;
              try {
                grant = await client.acquire(name, waitSeconds > 0 ? { wait: waitSeconds } : {});
              } catch (err) {
                if ((err as { code?: unknown }).code === "lock-held") throw new TimedOut(`${name} is held`);
                throw err;
              }
              return { token: grant.token, joined: grant.token, release: () => client.release(name, grant.lease) };
            },
            async close() {},
          };
        },
        waiting: () => waitersOf(services),
        async close() {},
      };
    },
  };
}

/** The instances' own waiter gauges, summed; each service serves only its own system's load. */
async function waitersOf(services: readonly ServiceProcess[]): Promise<number> {
  let sum = 0;
  for (const s of services) {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    sum += Number(/^leasehold_waiters (\d+)/m.exec(text)?.[1] ?? 0);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** etcd's range_end for all keys starting with `prefix`, base64 (the prefix is ASCII). */
function prefixEndB64(prefix: string): string {
  const bytes = Buffer.from(prefix);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) + 1;
  return bytes.toString("base64");
}

/** One gateway call: the answer's status and text. */
type Post = (path: string, body: string, signal: AbortSignal | undefined) => Promise<{ status: number; text: string }>;

/** A pool of `slots` kept-alive connections (`etcd-lock`), or the global `fetch` (`etcd-lock-fetch`). */
function gatewayTransport(endpoint: string, slots: number, via: "pool" | "fetch") {
  const headers = { "content-type": "application/json" };
  if (via === "fetch") {
    const post: Post = async (path, body, signal) => {
      const res = await fetch(endpoint + path, { method: "POST", headers, body, ...(signal ? { signal } : {}) });
      return { status: res.status, text: await res.text() };
    };
    return { post, close: async () => {} };
  }
  const pool = new Pool(endpoint, { connections: slots, pipelining: 1, keepAliveTimeout: 30_000 });
  const post: Post = async (path, body, signal) => {
    const res = await pool.request({ method: "POST", path, headers, body, ...(signal ? { signal } : {}) });
    return { status: res.statusCode, text: await res.body.text() };
  };
  return { post, close: () => pool.close() };
}

export function etcdLockSystem(endpoint: string, via: "pool" | "fetch" = "pool"): System {
  const prefix = "bench-lock/";
  return {
    id: via === "pool" ? "etcd-lock" : "etcd-lock-fetch",
    services: [],
    async client(slots) {
      const transport = gatewayTransport(endpoint, slots, via);
      const post = async <T>(path: string, body: unknown, timeoutMs?: number): Promise<T> => {
        const signal = timeoutMs !== undefined ? AbortSignal.timeout(timeoutMs) : undefined;
        const res = await transport.post(path, JSON.stringify(body), signal);
        if (res.status !== 200) throw new Error(`etcd ${path} → ${res.status} ${res.text.slice(0, 200)}`);
        return JSON.parse(res.text) as T;
      };
      /** The lowest revision this client's locks can have joined at: its first lease's. */
      let since: number | undefined;
      return {
        async session() {
          // Long enough for any round: the lease is revoked when the session closes.
          const granted = await post<{ ID: string; header: { revision: string } }>("/v3/lease/grant", { TTL: 300 });
          const lease = granted.ID;
          since = Math.min(since ?? Number.POSITIVE_INFINITY, Number(granted.header.revision));
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
                // The revision etcd answered at (when the wait for older keys ended), not the join.
                token: Number(res.header.revision),
                key: res.key,
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
        // A lock's key (prefix/name/lease) is created when it joins the line, and the lock
        // answers at a revision at or after that: its join is the key's latest creation at
        // or before the answer. etcd's history since the first lease has every creation.
        async joinRevisions(grants) {
          if (since === undefined || !grants.some((g) => g.key !== undefined)) return;
          const created = await creationsSince(endpoint, prefix, since);
          for (const g of grants) {
            if (g.key === undefined) continue;
            const revisions = created.get(g.key) ?? [];
            const joined = revisions.filter((r) => r <= g.token).at(-1);
            if (joined !== undefined) g.joined = joined;
          }
        },
        close: () => transport.close(),
      };
    },
  };
}

/**
 * Every key created under `prefix` from revision `from` to now, by key (base64, as the
 * gateway names keys), revisions ascending: etcd's history replayed by a watch, up to a
 * marker key this puts (and deletes) once the watch is open.
 */
async function creationsSince(endpoint: string, prefix: string, from: number): Promise<Map<string, number[]>> {
  const client = new Etcd3({ hosts: [endpoint], faultHandling: { host: () => noop, global: noop } });
  const marker = `${prefix}~history-end/${randomUUID()}`;
  const created = new Map<string, number[]>();
  try {
    const watcher = await client.watch().prefix(prefix).startRevision(String(from)).create();
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no end of etcd's history under ${prefix} in 60 s`)), 60_000);
        watcher.on("put", (kv) => {
          if (kv.key.toString() === marker) {
            clearTimeout(timer);
            resolve();
          } else if (kv.create_revision === kv.mod_revision) {
            const key = kv.key.toString("base64");
            const list = created.get(key) ?? [];
            list.push(Number(kv.create_revision));
            created.set(key, list);
          }
        });
        watcher.on("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
        client.put(marker).value("").exec().catch(reject);
      });
    } finally {
      await watcher.cancel().catch(() => {});
    }
    await client.delete().key(marker).exec();
  } finally {
    client.close();
  }
  return created;
}
