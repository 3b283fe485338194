import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prefixEnd } from "../../src/etcd/types.js";
import { freePort, type LocalEtcd, PortTakenError, startLocalEtcd } from "../../src/node/local-etcd.js";

/**
 * An etcd cluster of `size` members on loopback (distinct client and peer ports, one
 * temporary data dir each), built from src/node/local-etcd.ts: each member is a
 * `startLocalEtcd` whose name and `--initial-cluster` are overridden (etcd takes the
 * last value of a repeated flag). Members are started together, since a member of a
 * multi-member cluster only reports healthy once a quorum has elected a leader.
 */
export interface EtcdCluster {
  readonly endpoints: string[];
  readonly size: number;
  /** Index of the current leader, as the live members report it; undefined when none answers. */
  leader(): Promise<number | undefined>;
  /** SIGKILLs member `i` (no graceful shutdown) and waits until it is gone. */
  kill(i: number): Promise<void>;
  /** Starts member `i` again on its ports and data dir; resolves once it is healthy. */
  start(i: number): Promise<void>;
  isUp(i: number): boolean;
  /** PID of member `i`'s process while it runs (to pause it with SIGSTOP). */
  pid(i: number): number | undefined;
  /** Every lease etcd holds (via any live member), for leak checks. */
  leases(): Promise<string[]>;
  /** Keys under `prefix` (via any live member). */
  keys(prefix: string): Promise<string[]>;
  /** Keys under `prefix` with their values and create revisions, and the revision read (via any live member). */
  entries(prefix: string): Promise<{ revision: number; kvs: { key: string; value: string; createRevision: number }[] }>;
  /**
   * Every change etcd recorded under `prefix` since revision 1 (nothing compacts these
   * clusters), read with a watch from revision 1 until a marker key put after the call
   * began arrives: everything before the call is in it.
   */
  history(prefix: string): Promise<HistoryEvent[]>;
  /**
   * A plain put (no lease, no condition) through any live member; resolves with its
   * revision. A side channel past the service, for workloads that write unguarded.
   */
  put(key: string, value: string): Promise<number>;
  /** Deletes every key under `prefix` (via any live member). */
  deletePrefix(prefix: string): Promise<void>;
  /** Kills every member and deletes the data dirs. */
  destroy(): Promise<void>;
}

/** One change etcd recorded (see `EtcdCluster.history`). */
export interface HistoryEvent {
  type: "put" | "delete";
  key: string;
  /** The revision of the change. */
  revision: number;
  /** Puts only. */
  createRevision?: number;
  value?: string;
  /** Puts only: the lease the key is bound to (decimal; "0" for none), to trace a lease's grants. */
  lease?: string;
}

export async function startEtcdCluster(size: number): Promise<EtcdCluster> {
  // A port found free can be taken before its member binds it: start over on new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startCluster(size);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= 5) throw err;
    }
  }
}

/** Every member started, or none left running: the first failure (a taken port first) is thrown. */
async function startAll(starts: Promise<LocalEtcd>[]): Promise<LocalEtcd[]> {
  const settled = await Promise.allSettled(starts);
  const failures = settled.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
  if (failures.length === 0) return settled.map((r) => (r as PromiseFulfilledResult<LocalEtcd>).value);
  await Promise.all(settled.map((r) => (r.status === "fulfilled" ? r.value.stop() : undefined)));
  throw failures.find((f) => f instanceof PortTakenError) ?? failures[0];
}

async function startCluster(size: number): Promise<EtcdCluster> {
  const root = mkdtempSync(join(tmpdir(), "leasehold-verify-etcd-"));
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(",");
  const token = `leasehold-verify-${process.pid}-${Date.now()}`;
  let members: LocalEtcd[];
  try {
    members = await startAll(
      ports.map((p, i) =>
        startLocalEtcd({
          dataDir: join(root, `m${i}`),
          clientPort: p.client,
          peerPort: p.peer,
          startTimeoutMs: 30_000,
          args: ["--name", `m${i}`, "--initial-cluster", initialCluster, "--initial-cluster-token", token],
        }),
      ),
    );
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  const up = members.map(() => true);
  const endpoints = members.map((m) => m.endpoint);

  const reads = clusterReads(endpoints, (i) => up[i] === true);

  const kill = async (i: number) => {
    const m = members[i] as LocalEtcd;
    if (m.pid !== undefined) process.kill(m.pid, "SIGKILL");
    await m.stop(); // waits for the exit of the process just killed
    up[i] = false;
  };

  return {
    endpoints,
    size,
    ...reads,
    kill,
    async start(i) {
      await (members[i] as LocalEtcd).restart();
      up[i] = true;
    },
    isUp: (i) => up[i] === true,
    pid: (i) => members[i]?.pid,
    async destroy() {
      // No graceful shutdown: a member stopping alone waits for its peers for seconds.
      await Promise.all(members.map((_, i) => kill(i)));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** The non-empty lines of a streamed answer of etcd's JSON gateway (a watch, a keep-alive), as they arrive. */
export async function* ndjsonLines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
      if (line) yield line;
    }
  }
  const rest = buf.trim();
  if (rest) yield rest;
}

/** One POST to an etcd member's JSON gateway (1 s deadline); throws unless it answers 2xx. */
export async function etcdPost(endpoint: string, path: string, body: unknown = {}): Promise<Record<string, unknown>> {
  const res = await fetch(`${endpoint}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(1_000),
  });
  if (!res.ok) throw new Error(`etcd ${path}: HTTP ${res.status}`);
  return (await res.json()) as Record<string, unknown>;
}

/**
 * Each member's answer to a status request (its view of the leader, its raft term, …):
 * "down" for a member known to be down, `undefined` for one that did not answer.
 */
export function memberStatuses(
  c: Pick<EtcdCluster, "endpoints" | "isUp">,
): Promise<("down" | Record<string, unknown> | undefined)[]> {
  return Promise.all(
    c.endpoints.map((endpoint, i) =>
      c.isUp(i)
        ? etcdPost(endpoint, "/v3/maintenance/status").catch(() => undefined)
        : Promise.resolve("down" as const),
    ),
  );
}

/**
 * What the checker reads from a cluster through the JSON gateway of its live members
 * (`isUp`), in order of `endpoints`: shared by every cluster the scenarios run on.
 */
export function clusterReads(
  endpoints: readonly string[],
  isUp: (i: number) => boolean,
): Pick<EtcdCluster, "leader" | "leases" | "keys" | "entries" | "history" | "put" | "deletePrefix"> {
  const size = endpoints.length;
  const post = etcdPost;
  /** The first live member's answer. */
  const anyMember = async (path: string, body: unknown = {}) => {
    let last: unknown;
    for (let i = 0; i < size; i++) {
      if (!isUp(i)) continue;
      try {
        return await post(endpoints[i] as string, path, body);
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no etcd member answered ${path}: ${String(last)}`);
  };

  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const text = (s: string | undefined) => Buffer.from(s ?? "", "base64").toString();
  const range = async (prefix: string, keysOnly: boolean) => {
    const res = await anyMember("/v3/kv/range", {
      key: b64(prefix),
      range_end: b64(prefixEnd(prefix)),
      keys_only: keysOnly,
    });
    return {
      revision: Number((res.header as { revision?: string } | undefined)?.revision ?? 0),
      kvs: (res.kvs as { key: string; value?: string; create_revision?: string }[] | undefined) ?? [],
    };
  };

  return {
    async leader() {
      for (let i = 0; i < size; i++) {
        if (!isUp(i)) continue;
        try {
          const status = await post(endpoints[i] as string, "/v3/maintenance/status");
          const header = status.header as { member_id?: string } | undefined;
          if (status.leader && status.leader === header?.member_id) return i;
        } catch {}
      }
      return undefined;
    },
    async leases() {
      const res = await anyMember("/v3/lease/leases");
      return ((res.leases as { ID: string }[] | undefined) ?? []).map((l) => l.ID);
    },
    async keys(prefix) {
      return (await range(prefix, true)).kvs.map((kv) => text(kv.key));
    },
    async entries(prefix) {
      const r = await range(prefix, false);
      return {
        revision: r.revision,
        kvs: r.kvs.map((kv) => ({
          key: text(kv.key),
          value: text(kv.value),
          createRevision: Number(kv.create_revision ?? 0),
        })),
      };
    },
    async history(prefix) {
      const i = endpoints.findIndex((_, k) => isUp(k));
      if (i < 0) throw new Error("no etcd member is up to read the history from");
      const endpoint = endpoints[i] as string;
      const marker = `${prefix}~history-end`;
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 60_000);
      const out: HistoryEvent[] = [];
      try {
        const res = await fetch(`${endpoint}/v3/watch`, {
          method: "POST",
          body: JSON.stringify({
            create_request: { key: b64(prefix), range_end: b64(prefixEnd(prefix)), start_revision: "1" },
          }),
          signal: abort.signal,
        });
        if (!res.ok || !res.body) throw new Error(`etcd watch: HTTP ${res.status}`);
        await post(endpoint, "/v3/kv/put", { key: b64(marker), value: b64("") });
        for await (const line of ndjsonLines(res.body)) {
          type Kv = { key: string; value?: string; create_revision?: string; mod_revision?: string; lease?: string };
          const msg = JSON.parse(line) as { result?: { events?: { type?: string; kv: Kv }[]; canceled?: boolean } };
          if (msg.result?.canceled) throw new Error(`etcd canceled the history watch: ${line}`);
          for (const e of msg.result?.events ?? []) {
            const key = text(e.kv.key);
            if (key === marker) return out;
            const revision = Number(e.kv.mod_revision ?? 0);
            out.push(
              e.type === "DELETE"
                ? { type: "delete", key, revision }
                : {
                    type: "put",
                    key,
                    revision,
                    createRevision: Number(e.kv.create_revision ?? revision),
                    value: text(e.kv.value),
                    lease: e.kv.lease ?? "0",
                  },
            );
          }
        }
        throw new Error("etcd ended the history watch before the marker arrived");
      } finally {
        clearTimeout(timer);
        abort.abort();
        await post(endpoint, "/v3/kv/deleterange", { key: b64(marker) }).catch(() => {});
      }
    },
    async put(key, value) {
      const res = await anyMember("/v3/kv/put", { key: b64(key), value: b64(value) });
      return Number((res.header as { revision?: string } | undefined)?.revision ?? 0);
    },
    async deletePrefix(prefix) {
      await anyMember("/v3/kv/deleterange", { key: b64(prefix), range_end: b64(prefixEnd(prefix)) });
    },
  };
}
