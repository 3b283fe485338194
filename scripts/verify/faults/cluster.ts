import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalEtcd, PortTakenError, startLocalEtcd } from "../../../src/node/local-etcd.js";
import { clusterReads, type EtcdCluster, etcdPost } from "../etcd-cluster.js";
import { type InstanceOptions, type ServiceInstance, startInstance } from "../instance.js";
import { sleep } from "../run.js";
import { type FaultNetwork, startNetwork } from "./network.js";

/**
 * An etcd cluster on a network that partitions can cut (see network.ts), with spare
 * member slots for membership changes: `members` slots start as the cluster, the rest
 * are empty until a member is added there. Every instance knows every slot's endpoint,
 * so a member added later is one it can use and a removed one is just unreachable.
 */
export interface FaultCluster extends EtcdCluster {
  readonly network: FaultNetwork;
  /** Slots whose member is in the cluster now. */
  members(): number[];
  /** Slots with no member now. */
  empty(): number[];
  /** Removes slot `slot`'s member from the cluster (etcd's member remove), then stops it and deletes its data. */
  remove(slot: number): Promise<void>;
  /** Adds a new member in empty slot `slot` (etcd's member add) and starts it; resolves once it is healthy. */
  add(slot: number): Promise<void>;
  /** Starts service instance `k` on this network. */
  startInstance(k: number, opts: Omit<InstanceOptions, "endpoints">): Promise<ServiceInstance>;
}

interface Member {
  ID: string;
  name?: string;
  peerURLs?: string[];
}

interface Slot {
  /** The member's name in the cluster (a new one for each member started in the slot). */
  name?: string;
  id?: string;
  process?: LocalEtcd;
  up: boolean;
  generation: number;
}

export async function startFaultCluster(o: {
  members: number;
  spare: number;
  instances: number;
}): Promise<FaultCluster> {
  const total = o.members + o.spare;
  const network = await startNetwork(total, o.instances);
  const root = mkdtempSync(join(tmpdir(), "leasehold-verify-faults-"));
  const slots: Slot[] = Array.from({ length: total }, () => ({ up: false, generation: 0 }));
  const token = `leasehold-verify-faults-${process.pid}-${Date.now()}`;
  const admin = Array.from({ length: total }, (_, s) => network.adminEndpoint(s));
  const isUp = (s: number) => slots[s]?.up === true;
  const reads = clusterReads(admin, isUp);
  const dataDir = (s: number) => join(root, `${slots[s]?.name}`);

  /** Starts a member process in slot `s` (its name and data dir already set). */
  const launch = async (s: number, initialCluster: string, state: "new" | "existing") => {
    const slot = slots[s] as Slot;
    // A real port (proxy fallback) can be taken before etcd binds it: start over on new ones.
    for (let attempt = 1; ; attempt++) {
      const how = await network.launchMember(s);
      try {
        slot.process = await startLocalEtcd({
          ...(how.bin ? { bin: how.bin } : {}),
          dataDir: dataDir(s),
          clientPort: how.clientPort,
          peerPort: how.peerPort,
          startTimeoutMs: 30_000,
          args: [
            ...how.args,
            "--name",
            slot.name as string,
            "--initial-cluster",
            initialCluster,
            "--initial-cluster-token",
            token,
            "--initial-cluster-state",
            state,
          ],
        });
        slot.up = true;
        return;
      } catch (err) {
        if (!(err instanceof PortTakenError) || attempt >= 5) throw err;
      }
    }
  };

  /** Learns each member's ID (the proxies tell senders apart by it). */
  const learnIds = async () => {
    for (const m of await listMembers()) {
      const s = slots.findIndex((_, i) => m.peerURLs?.includes(network.peerUrl(i)));
      if (s < 0) continue;
      (slots[s] as Slot).id = m.ID;
      network.memberId(s, BigInt(m.ID).toString(16));
    }
  };

  /** etcd's answer through any member that is up (retried for `ms` while none answers). */
  const anyAdmin = async (path: string, body: unknown = {}, ms = 10_000, except?: number) => {
    const until = Date.now() + ms;
    for (;;) {
      let last: unknown;
      for (let s = 0; s < total; s++) {
        if (!isUp(s) || s === except) continue;
        try {
          return await etcdPost(admin[s] as string, path, body);
        } catch (err) {
          last = err;
        }
      }
      if (Date.now() >= until) throw new Error(`no etcd member answered ${path}: ${String(last)}`);
      await sleep(200);
    }
  };

  const listMembers = async () => ((await anyAdmin("/v3/cluster/member/list")).members as Member[] | undefined) ?? [];

  /**
   * Makes a membership change (`change`) until the member list shows it done (`done`),
   * for up to 20 s; returns the list.
   */
  const changeMembers = async (change: () => Promise<unknown>, done: (members: Member[]) => boolean) => {
    const until = Date.now() + 20_000;
    for (;;) {
      let failure: unknown;
      try {
        await change();
      } catch (err) {
        failure = err;
      }
      const members = await listMembers().catch(() => undefined);
      if (members && done(members)) return members;
      if (Date.now() >= until) throw new Error(`etcd membership change not done: ${String(failure)}`);
      await sleep(500);
    }
  };

  const stopSlot = async (s: number) => {
    const slot = slots[s] as Slot;
    const proc = slot.process;
    slot.up = false;
    if (!proc) return;
    if (proc.pid !== undefined) {
      try {
        process.kill(proc.pid, "SIGKILL");
      } catch {}
    }
    await proc.stop(); // waits for the exit of the process just killed
  };

  try {
    const initial = Array.from({ length: o.members }, (_, s) => s);
    for (const s of initial) (slots[s] as Slot).name = `s${s}g0`;
    const initialCluster = initial.map((s) => `${slots[s]?.name}=${network.peerUrl(s)}`).join(",");
    // Started together: a member of a multi-member cluster is healthy only once a quorum elected a leader.
    const started = await Promise.allSettled(initial.map((s) => launch(s, initialCluster, "new")));
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    await learnIds();
  } catch (err) {
    await Promise.all(slots.map((_, s) => stopSlot(s)));
    await network.destroy();
    rmSync(root, { recursive: true, force: true });
    throw err;
  }

  return {
    network,
    endpoints: admin,
    size: total,
    ...reads,
    members: () => slots.flatMap((slot, s) => (slot.id !== undefined ? [s] : [])),
    empty: () => slots.flatMap((slot, s) => (slot.id === undefined ? [s] : [])),
    kill: stopSlot,
    async start(s) {
      const slot = slots[s] as Slot;
      if (!slot.process) throw new Error(`slot ${s} has no member to start`);
      await slot.process.restart();
      slot.up = true;
    },
    isUp,
    pid: (s) => slots[s]?.process?.pid,
    async remove(s) {
      const slot = slots[s] as Slot;
      const id = slot.id;
      if (id === undefined) throw new Error(`slot ${s} has no member to remove`);
      // A call that timed out may have been applied: done once the member is gone.
      await changeMembers(
        () => anyAdmin("/v3/cluster/member/remove", { ID: id }, 2_000),
        (members) => !members.some((m) => m.ID === id),
      );
      slot.id = undefined;
      await stopSlot(s);
      rmSync(dataDir(s), { recursive: true, force: true });
      slot.process = undefined;
    },
    async add(s) {
      const slot = slots[s] as Slot;
      if (slot.id !== undefined) throw new Error(`slot ${s} has a member already`);
      slot.generation++;
      slot.name = `s${s}g${slot.generation}`;
      const url = network.peerUrl(s);
      // A call that timed out may have been applied: then the member is listed, unstarted.
      const members = await changeMembers(
        () => anyAdmin("/v3/cluster/member/add", { peerURLs: [url] }, 2_000),
        (members) => members.some((m) => m.peerURLs?.includes(url)),
      );
      const added = members.find((m) => m.peerURLs?.includes(url)) as Member;
      slot.id = added.ID;
      network.memberId(s, BigInt(added.ID).toString(16));
      const initialCluster = members
        .map((m) => `${m.ID === added.ID ? slot.name : m.name}=${m.peerURLs?.[0]}`)
        .join(",");
      await launch(s, initialCluster, "existing");
    },
    async startInstance(k, opts) {
      const how = await network.launchInstance(k);
      return startInstance({ ...opts, ...how, endpoints: network.instanceEndpoints(k) });
    },
    async destroy() {
      await Promise.all(slots.map((_, s) => stopSlot(s)));
      await network.destroy();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
