/**
 * The scale-out cases' setting: a 3-member etcd cluster of their own (started as the
 * checker starts one), and up to 4 leasehold instances per transport on it, started as
 * the cases need them and kept from one scale case to the next. etcd's lock API runs on
 * the same cluster, its callers spread over the members' gateways.
 */
import { type EtcdCluster, startEtcdCluster } from "../verify/etcd-cluster.js";
import type { Env } from "./cases.js";
import type { ServiceProcess } from "./procs.js";
import { type Client, etcdLockSystem, leaseholdSystem, type System, type SystemId } from "./systems.js";

type LeaseholdId = "leasehold-grpc" | "leasehold-http";

export const CLUSTER_SIZE = 3;

/**
 * One system whose callers are spread over several of the same kind, in turn (etcd's
 * lock API on each member's gateway, as etcd's own client balances over endpoints).
 */
export function spreadOver(id: SystemId, parts: readonly System[]): System {
  return {
    id,
    services: parts.flatMap((p) => p.services),
    async client(slots) {
      const clients: Client[] = await Promise.all(parts.map((p) => p.client(Math.ceil(slots / parts.length))));
      let opened = 0;
      return {
        session: () => (clients[opened++ % clients.length] as Client).session(),
        // Every client sees the whole cluster's keys: one answer is the count.
        waiting: (prefix, names) => (clients[0] as Client).waiting(prefix, names),
        close: async () => {
          await Promise.all(clients.map((c) => c.close()));
        },
      };
    },
  };
}

/** `list` starting at its `k`-th item: each instance prefers another member. */
const rotate = <T>(list: readonly T[], k: number): T[] => list.map((_, i) => list[(i + k) % list.length] as T);

export interface ScaleOut {
  /**
   * The systems `ids` for a scale case with `instances` leasehold instances each (started
   * and warmed up as needed; etcd's lock API needs none), and the env that measures the
   * cluster: CPU of every member, raft and WAL figures from the leader's /metrics.
   */
  prepare(instances: number, ids: readonly SystemId[]): Promise<{ systems: System[]; env: Env }>;
  /** Stops the instances and the cluster (nothing when none was started). */
  stop(): Promise<void>;
}

export function scaleOut(deps: {
  /** Starts one leasehold instance on these comma-separated etcd endpoints. */
  startService(id: LeaseholdId, etcdEndpoints: string): Promise<ServiceProcess>;
  stopService(proc: ServiceProcess): Promise<void>;
  warmUp(system: System, env: Env): Promise<void>;
  log(s: string): void;
}): ScaleOut {
  let cluster: EtcdCluster | undefined;
  const instances = new Map<LeaseholdId, ServiceProcess[]>();
  let lockWarm = false;

  return {
    async prepare(n, ids) {
      if (!cluster) {
        deps.log(`bench: starting a ${CLUSTER_SIZE}-member etcd cluster for the scale-out cases`);
        cluster = await startEtcdCluster(CLUSTER_SIZE);
      }
      const c = cluster;
      const leader = (await c.leader()) ?? 0;
      const env: Env = {
        etcdEndpoint: c.endpoints[leader] as string,
        etcdPid: c.pid(leader),
        etcdPids: c.endpoints.flatMap((_, i) => c.pid(i) ?? []),
      };
      const systems: System[] = [];
      for (const id of ids) {
        if (id === "etcd-lock") {
          const s = spreadOver(
            id,
            c.endpoints.map((e) => etcdLockSystem(e)),
          );
          if (!lockWarm) await deps.warmUp(s, env);
          lockWarm = true;
          systems.push(s);
        } else if (id === "leasehold-grpc" || id === "leasehold-http") {
          const list = instances.get(id) ?? [];
          instances.set(id, list);
          const started = list.length < n;
          if (started) deps.log(`bench: ${n} ${id} instance(s) on the cluster`);
          // Every instance knows all members (as production would), each preferring
          // another one first: the gateway transport sends everything to its first live one.
          while (list.length < n) list.push(await deps.startService(id, rotate(c.endpoints, list.length).join(",")));
          const s = leaseholdSystem(id, list.slice(0, n));
          // The callers spread evenly over the instances: that warms the new ones.
          if (started) await deps.warmUp(s, env);
          systems.push(s);
        }
      }
      return { systems, env };
    },
    async stop() {
      for (const list of instances.values()) for (const proc of list) await deps.stopService(proc);
      instances.clear();
      await cluster?.destroy();
      cluster = undefined;
      lockWarm = false;
    },
  };
}
