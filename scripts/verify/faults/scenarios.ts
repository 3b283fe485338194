/**
 * The fault scenarios: real network partitions, process pauses, skewed clocks of the
 * service instances, and etcd membership changes, each under the standard lock
 * workload (see `faultScenario`) with three service instances on a 3-member cluster.
 */
import { QUEUE_LEASE_TTL } from "../../../src/lock/strategies/queue-leases.js";
import { type EtcdCluster, memberStatuses } from "../etcd-cluster.js";
import { type ServiceInstance, startInstance, WAITER_SESSION_IDLE_MS } from "../instance.js";
import { type RequestRecord, sleep, uniform } from "../run.js";
import { type Env, ETCD_TIMEOUT_MS, type Faults, faultScenario, type Scenario, type Shape, TTL } from "../scenarios.js";
import { observedOffsetS, type Skew, skewed } from "./clock.js";
import { type FaultCluster, startFaultCluster } from "./cluster.js";
import {
  attributeToEtcd,
  DEFECT_LABEL,
  etcdVersion,
  leaseDefectAffects,
  WAKE_REVOKE_MS,
  type Wake,
} from "./etcd-defect.js";

/** Every fault lasts longer than the TTL (2 s), so leases run out while it lasts. */
const FAULT_MS: [number, number] = [TTL * 1_000 + 500, TTL * 1_000 + 2_500];
const GAP_MS: [number, number] = [1_500, 3_000];
const INSTANCES = 3;
/** An instance cut off from etcd answers 503 within this much past a request's `wait`. */
const CUT_503_MS = 4 * ETCD_TIMEOUT_MS;

/** What one run of a scenario counted, for its notes. */
const counts = new WeakMap<Env, Map<string, number>>();
const bump = (env: Env, what: string) => {
  let m = counts.get(env);
  if (!m) {
    m = new Map();
    counts.set(env, m);
  }
  m.set(what, (m.get(what) ?? 0) + 1);
};
const counted = (env: Env) => {
  const settled = settling.get(env);
  return `${
    [...(counts.get(env) ?? [])]
      .sort()
      .map(([what, n]) => `${n}× ${what}`)
      .join(", ") || "none"
  }${settled === undefined ? "" : `; etcd's leader last changed up to ${seconds(settled)} after a fault ended`}`;
};

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Every live member's view of the leader and term, one string ("" when one does not answer). */
async function clusterView(c: EtcdCluster): Promise<string> {
  const views = (await memberStatuses(c)).map((s) =>
    s === "down" ? "-" : s === undefined ? "" : `${s.leader}@${s.raftTerm}`,
  );
  return views.join(",");
}

const SETTLED_MS = 2_000;
/** Slowest settling after a fault, per run (see `settle`). */
const settling = new WeakMap<Env, number>();

/**
 * After a fault: waits until every member has named the same leader in the same term for
 * 2 s (at most 10 s), noting when that view last changed. A member back from a partition
 * or a pause often forces another election after the fault ended (etcd 3.4 has no
 * pre-vote by default), and every election gives every lease its whole TTL again; the
 * leak check counts from then (`Env.lateRenewalAt`).
 */
async function settle(env: Env): Promise<void> {
  const started = env.run.now();
  let last = await clusterView(env.cluster);
  let changedAt = started;
  const agreed = (v: string) => {
    const named = v.split(",").filter((x) => x !== "-");
    return named.every((x) => x !== "" && x === named[0] && !x.startsWith("undefined") && !x.startsWith("0@"));
  };
  while (env.run.now() - started < 10_000) {
    await sleep(100);
    const v = await clusterView(env.cluster);
    if (v !== last) {
      last = v;
      changedAt = env.run.now();
    } else if (agreed(v) && env.run.now() - changedAt >= SETTLED_MS) {
      break;
    }
  }
  env.lateRenewalAt = Math.max(env.lateRenewalAt ?? 0, changedAt);
  settling.set(env, Math.max(settling.get(env) ?? 0, changedAt - started));
}

// ---------------------------------------------------------------- partitions

/** Three members and three instances on a network partitions can cut (namespaces, else proxies). */
const partitioned = (spare = 0): Shape => ({
  members: 3,
  instances: INSTANCES,
  cluster: () => startFaultCluster({ members: 3, spare, instances: INSTANCES }),
  instance: (cluster, i, opts) => (cluster as FaultCluster).startInstance(i, opts),
});

const nodes = (c: FaultCluster) => [...c.members().map((s) => `m${s}`), ...instanceNodes()];
const instanceNodes = () => Array.from({ length: INSTANCES }, (_, k) => `i${k}`);

/** Cuts `a` off from `b` for a while, then heals. */
async function partition(env: Env, what: string, a: string[], b: string[]) {
  const c = env.cluster as FaultCluster;
  const ms = uniform(...FAULT_MS);
  await env.run.fault(`${what} for ${seconds(ms)}`, async () => {
    await c.network.partition(a, b);
    try {
      await sleep(ms);
    } finally {
      await c.network.heal();
    }
  });
  // What the cut connections held back (keep-alives among it) reaches etcd when TCP
  // next resends, after a backoff that doubled while the partition lasted: measured, up
  // to 2.2 s after a 4.5 s partition healed. Each renews its lease then.
  env.lateRenewalAt = Math.max(env.lateRenewalAt ?? 0, env.run.now() + ms);
  await settle(env);
}

/** The leader, or some member while none is known. */
async function leaderOr(c: EtcdCluster, n: number): Promise<{ slot: number; leader: boolean }> {
  const leader = await c.leader();
  if (leader !== undefined) return { slot: leader, leader: true };
  const members = (c as FaultCluster).members?.() ?? [0, 1, 2];
  return { slot: members[n % members.length] as number, leader: false };
}

/** A member other than the leader. */
async function follower(c: EtcdCluster, n: number, members: number[]): Promise<number> {
  const leader = await c.leader();
  const others = members.filter((s) => s !== leader);
  return others[n % others.length] as number;
}

const networkNote = (env: Env) => {
  env.notes.push(`network: ${(env.cluster as FaultCluster).network.description}`, `faults: ${counted(env)}`);
};

const isolateLeader: Faults = {
  gapMs: GAP_MS,
  async fault(env, n) {
    const c = env.cluster as FaultCluster;
    const { slot, leader } = await leaderOr(c, n);
    const me = `m${slot}`;
    bump(env, leader ? "leader isolated" : "member isolated (no leader known)");
    await partition(
      env,
      `isolate ${leader ? "leader" : "member"} ${me}`,
      [me],
      nodes(c).filter((x) => x !== me),
    );
  },
  after: networkNote,
};

const splitMajority: Faults = {
  gapMs: GAP_MS,
  async fault(env, n) {
    // The minority: one member (every other time the leader) and one instance; the
    // majority: the other two members and the other instances.
    const c = env.cluster as FaultCluster;
    const members = c.members();
    const leader = await c.leader();
    const m = n % 2 === 0 && leader !== undefined ? leader : await follower(c, n, members);
    const k = n % INSTANCES;
    const minority = [`m${m}`, `i${k}`];
    bump(env, m === leader ? "splits with the leader in the minority" : "splits with a follower in the minority");
    await partition(
      env,
      `split {${minority.join(", ")}} from the rest`,
      minority,
      nodes(c).filter((x) => !minority.includes(x)),
    );
  },
  after: networkNote,
};

const cutInstance: Faults = {
  gapMs: GAP_MS,
  async fault(env, n) {
    const c = env.cluster as FaultCluster;
    const k = n % INSTANCES;
    bump(env, `instance i${k} cut off from etcd`);
    await partition(
      env,
      `cut instance i${k} off from every member`,
      [`i${k}`],
      c.members().map((s) => `m${s}`),
    );
  },
  after: networkNote,
};

const PARTITION_WHAT =
  "a 3-member cluster and three service instances, each in a network namespace of its own (veth pairs to a bridge, loopback-range addresses 127.77.0.x; a TCP proxy per link where namespaces cannot be made: the notes say which ran); every few seconds a partition (nft drops, both ways: connections stall, nothing is reset) lasts 2.5–4.5 s, longer than the TTL, then heals; the clients reach every instance outside the partitioned network and fail over on a dropped connection or a 503";

const partitionLeader = faultScenario({
  id: "partition-leader",
  title: "network partition: the etcd leader isolated",
  what: `${PARTITION_WHAT}. The partition isolates the current leader from the other members and from every instance`,
  shape: partitioned(),
  ...isolateLeader,
});

const partitionSplit = faultScenario({
  id: "partition-split",
  title: "network partition: majority and minority",
  what: `${PARTITION_WHAT}. The partition splits the network in two: a minority of one member (every other time the leader) and one instance (each in turn), and a majority of the other two members and two instances`,
  shape: partitioned(),
  ...splitMajority,
});

const partitionInstance = faultScenario({
  id: "partition-instance",
  title: "network partition: a service instance cut off from etcd",
  what: `${PARTITION_WHAT}. The partition cuts one instance (each in turn) off from every etcd member, while its clients still reach it: its holders cannot renew, and every 503 it answers must come within 4 s past the request's \`wait\` (each etcd call has a 1 s deadline; a request makes a few in a row)`,
  shape: partitioned(),
  ...cutInstance,
  after: (env) => {
    networkNote(env);
    // The cut instance's etcd calls run into their deadline: it answers 503 in time.
    // The cut instance's etcd calls run into their deadline (1 s each; a request makes a
    // few in a row before it gives up): it must answer 503 within a few of them.
    const past = (r: RequestRecord) => Math.round(r.doneAt - r.sentAt - r.waitMs);
    const answered503 = env.run.requests.filter((r) => r.status === 503);
    env.notes.push(
      `${answered503.length} answers 503, the slowest ${Math.max(0, ...answered503.map(past))} ms past its wait`,
    );
    for (const r of answered503.filter((r) => past(r) > CUT_503_MS).slice(0, 5)) {
      env.run.fail(`a 503 took ${past(r)} ms past its wait (limit ${CUT_503_MS} ms)`);
    }
  },
});

// ---------------------------------------------------------------- pauses

/**
 * SIGSTOPs `pid` (a process group if negative) for a while, then SIGCONTs it; resolves
 * with when (run clock) it was SIGCONTed, once the cluster has settled.
 */
async function pause(env: Env, what: string, pid: number | undefined): Promise<number> {
  if (pid === undefined) throw new Error(`${what}: no process to pause`);
  const ms = uniform(...FAULT_MS);
  let wokeAt = 0;
  await env.run.fault(`SIGSTOP ${what} for ${seconds(ms)}`, async () => {
    process.kill(pid, "SIGSTOP");
    try {
      await sleep(ms);
    } finally {
      process.kill(pid, "SIGCONT");
      wokeAt = env.run.now();
    }
  });
  await settle(env);
  return wokeAt;
}

/** Per run of pause-leader: etcd's version and the paused leaders' wake-ups (see etcd-defect.ts). */
const leaderWakes = new WeakMap<Env, { version?: string; wakes: Wake[] }>();

const PAUSE_WHAT =
  "a 3-member cluster and three service instances on loopback; every few seconds a process is paused with SIGSTOP for 2.5–4.5 s, longer than the TTL, and resumed with SIGCONT; the clients fail over on a dropped connection or a 503, not on a slow answer";

const pauseLeader = faultScenario({
  id: "pause-leader",
  title: "pauses: the etcd leader SIGSTOPped",
  what: `${PAUSE_WHAT}. The paused process is the current etcd leader: the others elect a new one while it sleeps, and it wakes up as a deposed leader`,
  shape: { members: 3, instances: INSTANCES },
  gapMs: GAP_MS,
  async fault(env, n) {
    let seen = leaderWakes.get(env);
    if (!seen) {
      seen = { wakes: [] };
      leaderWakes.set(env, seen);
    }
    seen.version ??= await etcdVersion(env.cluster.endpoints).catch(() => undefined);
    const { slot, leader } = await leaderOr(env.cluster, n);
    bump(env, leader ? "leader paused" : "member paused (no leader known)");
    const wokeAt = await pause(env, `${leader ? "leader" : "member"} m${slot}`, env.cluster.pid(slot));
    seen.wakes.push({ at: wokeAt, member: `m${slot}`, leader });
  },
  after: (env) => {
    env.notes.push(`faults: ${counted(env)}`);
    const seen = leaderWakes.get(env);
    const version = seen?.version ?? "unknown";
    const wakes = seen?.wakes ?? [];
    env.notes.push(
      `etcd ${version}: ${
        leaseDefectAffects(version)
          ? `a version with the lease defect: a lost-while-live whose grant can have ended within ${WAKE_REVOKE_MS} ms after a paused leader's SIGCONT (${wakes.filter((w) => w.leader).length} in this run) is attributed to etcd ("${DEFECT_LABEL}"), not counted`
          : "a version without the lease defect: every violation counts"
      }`,
    );
    env.attribute = (violations) => attributeToEtcd(violations, { version, wakes, events: env.run.history.events });
  },
});

const pauseFollower = faultScenario({
  id: "pause-follower",
  title: "pauses: an etcd follower SIGSTOPped",
  what: `${PAUSE_WHAT}. The paused process is an etcd follower (each in turn): the instances' calls to it stall until their deadline`,
  shape: { members: 3, instances: INSTANCES },
  gapMs: GAP_MS,
  async fault(env, n) {
    const m = await follower(env.cluster, n, [0, 1, 2]);
    bump(env, "follower paused");
    await pause(env, `follower m${m}`, env.cluster.pid(m));
  },
  after: (env) => env.notes.push(`faults: ${counted(env)}`),
});

const pauseInstance = faultScenario({
  id: "pause-instance",
  title: "pauses: a service instance SIGSTOPped",
  what: `${PAUSE_WHAT}. The paused process is a service instance (each in turn, its whole process group): its holders' renewals and releases stall with it, their leases run out meanwhile, and when it wakes up it must not answer as if they had not`,
  shape: { members: 3, instances: INSTANCES },
  gapMs: GAP_MS,
  async fault(env, n) {
    const k = n % env.instances.length;
    const pid = (env.instances[k] as ServiceInstance).pid;
    bump(env, `instance i${k} paused`);
    await pause(env, `instance i${k}`, pid === undefined ? undefined : -pid);
  },
  after: (env) => env.notes.push(`faults: ${counted(env)}`),
});

// ---------------------------------------------------------------- clock skew

/**
 * The instances' clocks: i0's wall clock jumps to a new offset of ±1–10 minutes at every
 * fault (its timers keep real time); i1 is 3 minutes behind and all its clocks, timers
 * included, run at 0.7× real time; i2 is 4 minutes ahead and runs at 1.4×.
 */
const SKEWS: readonly Skew[] = [
  { offsetS: 0, jumps: true },
  { offsetS: -180, rate: 0.7, timers: true },
  { offsetS: 240, rate: 1.4, timers: true },
];
const clockOf = new WeakMap<ServiceInstance, ReturnType<typeof skewed>>();
/** The offsets the checker saw in each instance's `Date` header (s). */
const observed = new WeakMap<Env, Map<number, number[]>>();

const describeSkew = (s: Skew) =>
  s.jumps
    ? "wall clock jumping to ±1–10 min at each fault, timers in real time"
    : `${s.offsetS < 0 ? `${-s.offsetS / 60} min behind` : `${s.offsetS / 60} min ahead`}, wall clock and timers at ${s.rate}× real time`;

async function observeClocks(env: Env) {
  let m = observed.get(env);
  if (!m) {
    m = new Map();
    observed.set(env, m);
  }
  for (const [k, inst] of env.instances.entries()) {
    const offset = await observedOffsetS(inst.url);
    if (offset !== undefined) m.set(k, [...(m.get(k) ?? []), offset]);
  }
}

const skew = faultScenario({
  id: "skew",
  title: "clock skew: service instances with wrong and jumping clocks",
  what: `a 3-member cluster and three service instances whose clocks are wrong (libfaketime preloaded: ${SKEWS.map((s, k) => `i${k} ${describeSkew(s)}`).join("; ")}); the clients spread over all three, so one lock passes between instances that disagree by minutes about the time and about how long a second is; every few seconds i0's wall clock jumps. Leases, expiry and order are etcd's: the invariants must hold as on true clocks`,
  shape: {
    members: 3,
    instances: INSTANCES,
    async instance(_cluster, i, opts) {
      const clock = skewed(SKEWS[i] as Skew);
      const inst = await startInstance({ ...opts, env: { ...opts.env, ...clock.env } });
      clockOf.set(inst, clock);
      return inst;
    },
  },
  gapMs: GAP_MS,
  async fault(env) {
    const inst = env.instances[0] as ServiceInstance;
    const sign = Math.random() < 0.5 ? -1 : 1;
    const offsetS = Math.round(sign * uniform(60, 600));
    await env.run.fault(`i0's wall clock jumps to ${offsetS >= 0 ? "+" : ""}${offsetS} s`, async () => {
      clockOf.get(inst)?.setOffset(offsetS);
      // libfaketime reads its file again only once its cache is more than a whole second
      // old (so up to about 2 s later), and Node refreshes its Date header once a second:
      // wait until the instance's answers show the jump (or give up after 10 s: the
      // check after the load then says the clock was not skewed).
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        const seen = await observedOffsetS(inst.url);
        if (seen !== undefined && Math.abs(seen - offsetS) < 60) break;
        await sleep(250);
      }
    });
    await observeClocks(env);
  },
  after: (env) => {
    // An idle instance hands back its waiters' session lease after a while by its own
    // timers: later by real time on a slow clock. (etcd's leases are unaffected.)
    env.sessionIdleMs = WAITER_SESSION_IDLE_MS / Math.min(...SKEWS.map((s) => (s.timers ? (s.rate ?? 1) : 1)));
    const seen = observed.get(env) ?? new Map<number, number[]>();
    const range = (xs: number[]) =>
      `${Math.round(Math.min(...xs))} s … ${Math.round(Math.max(...xs))} s (${xs.length} samples)`;
    env.notes.push(
      `clocks the checker saw in the instances' Date headers, against its own: ${env.instances
        .map((_, k) => `i${k} ${seen.get(k)?.length ? range(seen.get(k) as number[]) : "none"}`)
        .join("; ")}`,
    );
    // The skew must have been in effect (libfaketime loaded), or the run shows nothing.
    for (const [k, s] of SKEWS.entries()) {
      const xs = seen.get(k) ?? [];
      const wrong = s.jumps ? xs.filter((x) => Math.abs(x) < 50) : xs.filter((x) => Math.abs(x - s.offsetS) > 60);
      if (xs.length === 0 || wrong.length === xs.length) {
        env.run.fail(`instance i${k}'s clock was not skewed as set (seen: ${xs.map(Math.round).join(", ")})`);
      }
    }
  },
});

// ---------------------------------------------------------------- membership

const membership = faultScenario({
  id: "membership",
  title: "membership change: a member removed and a new one added under load",
  what: `a 3-member cluster with a fourth, empty member slot, and three service instances that know all four endpoints (on the same network as the partition scenarios); every few seconds one member (every other time the leader) is removed with etcd's member remove API and stopped, its data deleted, and a new member (a new name, ID and empty data dir) is added in the empty slot with member add and started with \`--initial-cluster-state existing\`; the next change waits until it is healthy. Over the run every member of the first cluster is replaced`,
  shape: partitioned(1),
  gapMs: GAP_MS,
  async fault(env, n) {
    const c = env.cluster as FaultCluster;
    const leader = await c.leader();
    const members = c.members();
    const out = n % 2 === 0 && leader !== undefined ? leader : await follower(c, n, members);
    const into = c.empty()[0] as number;
    bump(env, out === leader ? "leader replaced" : "follower replaced");
    await env.run.fault(
      `replace ${out === leader ? "leader" : "follower"} m${out} by a new member in m${into}`,
      async () => {
        await c.remove(out);
        await c.add(into);
      },
    );
    await settle(env);
  },
  after: (env) => {
    const c = env.cluster as FaultCluster;
    // The instances' endpoints always include an empty slot, so any etcd call may land on
    // a dead member and fail (a call is never retried). When that call is the revoke of
    // an idle instance's waiters' session lease, the lease goes with its TTL instead.
    env.sessionIdleMs = WAITER_SESSION_IDLE_MS + QUEUE_LEASE_TTL * 1_000;
    env.notes.push(
      `network: ${c.network.description}`,
      `faults: ${counted(env)}; members at the end in slots ${c.members().join(", ")}`,
    );
  },
});

export const PARTITION_SCENARIOS: readonly Scenario[] = [partitionLeader, partitionSplit, partitionInstance];
export const PAUSE_SCENARIOS: readonly Scenario[] = [pauseLeader, pauseFollower, pauseInstance];
export const FAULT_SCENARIOS: readonly Scenario[] = [...PARTITION_SCENARIOS, ...PAUSE_SCENARIOS, skew, membership];
