import { randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { LineKeys } from "../../src/lock/line-keys.js";
import { QUEUE_LEASE_TTL } from "../../src/lock/strategies/queue-leases.js";
import { MORE_ADVERSARIES, moreAdversaries } from "./adversaries.js";
import { checkHistory, lineOf, type Violation } from "./check.js";
import { checkEtcdHistory, checkParticipants, type ParticipantRecord, readValue } from "./check-lines.js";
import { type AppendRecord, checkSet, type SetStats } from "./check-set.js";
import { type EtcdCluster, type HistoryEvent, startEtcdCluster } from "./etcd-cluster.js";
import { FAULT_SECONDS, type FaultScenarioId } from "./faults/ids.js";
import { historyPath } from "./history.js";
import {
  type InstanceOptions,
  type ServiceInstance,
  startInstance,
  type Transport,
  WAITER_SESSION_IDLE_MS,
} from "./instance.js";
import { type LagProxy, startLagProxy } from "./lag-proxy.js";
import { GoneWatch, type LineLoad, type LineSpec, queueWaiter, semaphoreUser, ticketHolder } from "./lines.js";
import { guardedWrite, plainPut, type SetOptions, setAppender } from "./lock-set.js";
import { checkModel } from "./model.js";
import { campaigner, checkObservers, expectedFeed, type ObserverRecord, observer } from "./observers.js";
import { type ApiKey, type Client, type RequestRecord, Run, sleep, uniform } from "./run.js";
import { adversary, forceLoop, type HolderOptions, holder, pause } from "./workload.js";

export type ScenarioId =
  | "cluster"
  | "outage"
  | "instances"
  | "vanish"
  | "waiters"
  | "adversarial"
  | "lines-cluster"
  | "lines-outage"
  | "lines-instances"
  | "lines-vanish"
  | "leaders-cluster"
  | "leaders-instances"
  | "lock-set"
  | "lock-set-unguarded"
  | FaultScenarioId;

/** How big a run is: seconds of load per scenario, and how many concurrent clients. */
export interface Scale {
  form: "short" | "long";
  seconds: Record<ScenarioId, number>;
  clients: number;
}

export const SHORT: Scale = {
  form: "short",
  seconds: {
    cluster: 8,
    outage: 7,
    instances: 6,
    vanish: 6,
    waiters: 7,
    adversarial: 8,
    "lines-cluster": 8,
    "lines-outage": 8,
    "lines-instances": 8,
    "lines-vanish": 8,
    "leaders-cluster": 8,
    "leaders-instances": 8,
    "lock-set": 8,
    "lock-set-unguarded": 8,
    ...FAULT_SECONDS.short,
  },
  clients: 8,
};

export const LONG: Scale = {
  form: "long",
  seconds: {
    cluster: 150,
    outage: 90,
    instances: 90,
    vanish: 75,
    waiters: 120,
    adversarial: 120,
    "lines-cluster": 120,
    "lines-outage": 90,
    "lines-instances": 90,
    "lines-vanish": 90,
    "leaders-cluster": 90,
    "leaders-instances": 90,
    "lock-set": 120,
    "lock-set-unguarded": 60,
    ...FAULT_SECONDS.long,
  },
  clients: 16,
};

/** Deadline of every etcd call in the service instances under test. */
export const ETCD_TIMEOUT_MS = 1_000;
/** A request with no answer this long past its `wait` is hung (a few etcd deadlines, plus slack). */
export const HANG_MS = 4 * ETCD_TIMEOUT_MS + 2_000;
/** "503 fast": a 503 must arrive within this much past the request's `wait`. */
export const FAST_503_MS = 2 * ETCD_TIMEOUT_MS + 1_000;
export const TTL = 2;

export interface ScenarioResult {
  scenario: ScenarioId;
  transport: Transport;
  seconds: number;
  clients: number;
  requests: number;
  grants: number;
  /** Invariant violations plus failures (hangs, 5xx other than 503, leaks, crashes...). */
  violations: number;
  /**
   * Violations of the invariants the scenario is expected to break (see `Scenario.expects`):
   * the checker caught them. Not counted in `violations`.
   */
  caught: number;
  staleWrites: number;
  staleRejected: number;
  rejectedWrites: number;
  writes: number;
  http503: number;
  faults: number;
  /** Longest stretch without any successful answer, containing a failed one (ms). */
  longestUnavailableMs: number;
  /** Longest time from healing a fault to the first success of a request sent after it (ms). */
  recoveryMs: number | undefined;
  /** Longest time any answer took past its request's `wait` (ms). */
  slowestPastWaitMs: number;
  /** Longest time a 503 took past its request's `wait` (ms). */
  slowest503Ms: number | undefined;
  /** Time from the end of load until etcd held no lock keys and no leases (ms). */
  cleanMs: number | undefined;
  /** Scenario-specific measurements. */
  notes: string[];
  /** What each violation was. */
  details: string[];
  /**
   * Scenarios that tell etcd's own lease defect apart (see faults/etcd-defect.ts): the
   * violations attributed to it, each with why; not counted in `violations`.
   */
  attributed?: string[];
  /** Lock-set scenarios: what became of the appends and the state's writes. */
  set?: SetStats;
  /** The run's history (JSON lines, see history.ts). */
  history?: string;
}

export interface Scenario {
  id: ScenarioId;
  title: string;
  what: string;
  /**
   * A scenario run without a protection, to show the checker catches what goes wrong: its
   * violations of these invariants count as `caught`, and catching none is a failure.
   */
  expects?: readonly Violation["invariant"][];
  run(transport: Transport, scale: Scale): Promise<ScenarioResult>;
}

export interface Env {
  cluster: EtcdCluster;
  instances: ServiceInstance[];
  run: Run;
  prefix: string;
  transport: Transport;
  scale: Scale;
  id: ScenarioId;
  startedAt: number;
  notes: string[];
  /** Line scenarios: each line's limit (by `lineOf`), for the checks over etcd's history. */
  limits?: Map<string, number>;
  /** How long past the load a key may stay (besides etcd's election extension); a lease, an idle session's time. */
  lingerMs?: number;
  /**
   * The latest time (run clock), if after a fault's end, at which etcd may still have
   * renewed leases because of the fault: a leader elected after it (etcd 3.4 gives every
   * lease its whole TTL again), or keep-alives a partition held back, which TCP resends
   * only after its backoff, seconds after the heal.
   */
  lateRenewalAt?: number;
  /** How long an idle instance keeps its waiters' session lease, by real time (longer on a slow clock). */
  sessionIdleMs?: number;
  /** Line scenarios: etcd revisions and when (run clock) a read saw them. */
  revisionsSeen?: { revision: number; at: number }[];
  /** When the clients' load ended, if before the scenario's body returned. */
  loadEndedAt?: number;
  /** Violations a scenario's body found itself (the observers' checks). */
  violations?: Violation[];
  /** See `Scenario.expects`. */
  expects?: readonly Violation["invariant"][];
  /** With `Shape.clientProxy`: the proxy between the clients and the last instance. */
  clientProxy?: LagProxy;
  /** Lock-set scenarios: their numbers. */
  set?: SetStats;
  /**
   * Splits the run's violations into those that count and those attributed to etcd's
   * own lease defect (see faults/etcd-defect.ts), with why.
   */
  attribute?: (violations: Violation[]) => {
    counted: Violation[];
    attributed: { violation: Violation; why: string }[];
  };
}

export interface Shape {
  members: number;
  instances: number;
  /** More environment for every instance. */
  env?: Record<string, string>;
  /** When set, the last instance reaches etcd through proxies that delay each way by this much. */
  lagMs?: number;
  /** When set, clients reach the last instance through a proxy that can stall (`Env.clientProxy`). */
  clientProxy?: boolean;
  /** Starts the cluster instead of `startEtcdCluster(members)` (partitions, membership changes). */
  cluster?: () => Promise<EtcdCluster>;
  /** Starts instance `i` instead of `startInstance(opts)` (on the cluster's network, with a skewed clock). */
  instance?: (cluster: EtcdCluster, i: number, opts: InstanceOptions) => Promise<ServiceInstance>;
}

async function withEnv(
  id: ScenarioId,
  transport: Transport,
  scale: Scale,
  shape: Shape,
  body: (env: Env) => Promise<void>,
): Promise<ScenarioResult> {
  const cluster = await (shape.cluster ?? (() => startEtcdCluster(shape.members)))();
  const prefix = "verify/";
  const instances: ServiceInstance[] = [];
  const proxies: LagProxy[] = [];
  try {
    if (shape.lagMs) {
      for (const e of cluster.endpoints) proxies.push(await startLagProxy(e, shape.lagMs));
    }
    const start = (i: number, o: InstanceOptions) =>
      shape.instance ? shape.instance(cluster, i, o) : startInstance(o);
    const starting = Array.from({ length: shape.instances }, (_, i) =>
      start(i, {
        endpoints: shape.lagMs && i === shape.instances - 1 ? proxies.map((p) => p.endpoint) : cluster.endpoints,
        transport,
        etcdTimeoutMs: ETCD_TIMEOUT_MS,
        prefix,
        ...(shape.env ? { env: shape.env } : {}),
      }),
    );
    for (const started of await Promise.allSettled(starting)) {
      if (started.status === "fulfilled") instances.push(started.value);
    }
    const failed = (await Promise.allSettled(starting)).find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    const urls = instances.map((s) => s.url);
    let clientProxy: LagProxy | undefined;
    if (shape.clientProxy) {
      clientProxy = await startLagProxy(urls.at(-1) as string, 0);
      proxies.push(clientProxy);
      urls[urls.length - 1] = clientProxy.endpoint;
    }
    const run = new Run(urls, HANG_MS);
    const env: Env = {
      cluster,
      instances,
      run,
      prefix,
      transport,
      scale,
      id,
      startedAt: run.now(),
      notes: [],
      ...(clientProxy ? { clientProxy } : {}),
    };
    await body(env);
    return await finish(env);
  } finally {
    await Promise.all(instances.map((s) => s.kill()));
    await Promise.all(proxies.map((p) => p.stop()));
    await cluster.destroy();
  }
}

/**
 * The line invariants over the clients' records and etcd's whole history under the
 * prefix (read once the load is over and etcd is clean).
 */
async function checkLines(env: Env, limits: ReadonlyMap<string, number>): Promise<Violation[]> {
  const { run } = env;
  let events: HistoryEvent[];
  try {
    events = await env.cluster.history(env.prefix);
  } catch (err) {
    run.fail(`etcd's history could not be read: ${(err as Error).message}`);
    return [];
  }
  const dump = process.env.VERIFY_DUMP;
  if (dump) {
    // Everything the line checks read, to look into a violation afterwards.
    mkdirSync(dump, { recursive: true });
    const file = join(dump, `${env.id}-${env.transport}.json`);
    const { participants, grants, requests, faults } = run;
    const revisionsSeen = env.revisionsSeen ?? [];
    writeFileSync(file, JSON.stringify({ participants, grants, requests, faults, revisionsSeen, events }, null, 1));
    console.error(`verify: ${env.id} on ${env.transport}: records and etcd's history written to ${file}`);
  }
  const etcd = checkEtcdHistory(events, {
    prefix: env.prefix,
    limits,
    participants: run.participants,
    grants: run.grants,
    ...(env.revisionsSeen ? { seen: [...env.revisionsSeen].sort((a, b) => a.revision - b.revision) } : {}),
  });
  const s = etcd.stats;
  const most = Object.entries(s.maxHolders)
    .sort()
    .map(([line, k]) => `${line} ${k}/${limits.get(line) ?? 1}`)
    .join(", ");
  env.notes.push(
    `etcd's history: ${s.events} changes; ${s.etcdGrants} grants, ${s.handoffs} of them while others waited behind, all in join order; most holders at once: ${most}; ${s.unreceivedAmbiguous} grants made for requests whose answer was lost`,
  );
  return [...etcd.violations, ...checkParticipants(run.participants)];
}

/** etcd's history under the prefix, tried a few times (a member may just be back); `undefined`: none. */
async function historyOf(env: Env): Promise<HistoryEvent[] | undefined> {
  for (let tries = 0; tries < 5; tries++) {
    const history = await env.cluster.history(env.prefix).catch(() => undefined);
    if (history) return history;
    await sleep(500);
  }
  return undefined;
}

/** Waits until no lock key is left under the prefix (every grant ended), for at most `ms`. */
async function locksGone(env: Env, ms: number): Promise<void> {
  const until = env.run.now() + ms;
  while (env.run.now() < until) {
    const left = await env.cluster.keys(`${env.prefix}lock/`).catch(() => undefined);
    if (left && left.length === 0) return;
    await sleep(100);
  }
}

/** Waits until the keys under `prefix` have not changed for `quietMs` (for at most 10 s). */
async function stateSettled(env: Env, prefix: string, quietMs: number): Promise<void> {
  const until = env.run.now() + 10_000;
  let last = "";
  let since = env.run.now();
  while (env.run.now() < until) {
    const now = await env.cluster.entries(prefix).then(
      (r) => JSON.stringify(r.kvs),
      () => last,
    );
    if (now !== last) {
      last = now;
      since = env.run.now();
    } else if (env.run.now() - since >= quietMs) return;
    await sleep(200);
  }
}

/** Leak check, invariant check and the numbers of the table. */
async function finish(env: Env): Promise<ScenarioResult> {
  const { run, cluster } = env;
  const loadEnd = env.loadEndedAt ?? run.now();
  const lastHeal = Math.max(0, ...run.faults.map((f) => f.end ?? 0));
  // A lease lives at most its TTL after its last grant or keep-alive; etcd extends every
  // lease by an election timeout (1 s) when a member becomes leader, so count from then.
  // A key goes with the longest lease that may hold it; an idle instance keeps its
  // waiters' session lease a while longer, for the next waiter.
  const from = Math.max(loadEnd, lastHeal + 1_000, (env.lateRenewalAt ?? 0) + 1_000) - loadEnd;
  const keysMs = env.lingerMs ?? Math.max(TTL, QUEUE_LEASE_TTL) * 1_000;
  const allowedKeysMs = from + keysMs + 1_000;
  const allowedMs = from + Math.max(keysMs, env.sessionIdleMs ?? WAITER_SESSION_IDLE_MS) + 1_000;
  let cleanMs: number | undefined;
  let keysGoneMs: number | undefined;
  let leftover = "";
  let leftoverKeys = "";
  while (run.now() - loadEnd <= allowedMs + 2_000) {
    try {
      const [{ kvs: keys }, leases] = await Promise.all([cluster.entries(env.prefix), cluster.leases()]);
      if (keys.length === 0) keysGoneMs ??= run.now() - loadEnd;
      if (keys.length === 0 && leases.length === 0) {
        cleanMs = run.now() - loadEnd;
        break;
      }
      const described = keys.slice(0, 3).map((e) => {
        const v = readValue(e.value);
        const p = run.participants.find((x) => x.owner === v.owner);
        const saw = p ? `; its client saw ${p.calls.map((c) => `${c.op} ${c.status}`).join(", ") || "nothing"}` : "";
        return `${e.key}: ${v.holds ? "holder" : v.ticket ? "ticket" : "waiter"} ${v.owner ?? "?"} joined at revision ${e.createRevision}${saw}`;
      });
      leftover = `${keys.length} lock keys (${described.join(", ")}) and ${leases.length} leases`;
      if (keysGoneMs === undefined) leftoverKeys = leftover;
    } catch (err) {
      leftover = `etcd did not answer: ${(err as Error).message}`;
    }
    await sleep(100);
  }
  if (keysGoneMs === undefined || keysGoneMs > allowedKeysMs) {
    run.fail(`leak: ${leftoverKeys || leftover} still in etcd ${Math.round(allowedKeysMs)} ms after the load ended`);
  } else if (cleanMs === undefined || cleanMs > allowedMs) {
    run.fail(`leak: ${leftover} still in etcd ${Math.round(run.now() - loadEnd)} ms after the load ended`);
  }
  for (const [i, s] of env.instances.entries()) {
    if (s.crashes > 0) run.fail(`instance ${i} exited by itself ${s.crashes} time(s)`);
    for (const line of s.errors()) run.fail(`instance ${i} logged: ${line.slice(0, 300)}`);
  }

  const checked = checkHistory(run.grants, run.fence.writes, run.forces);
  if (env.limits) checked.violations.push(...(await checkLines(env, env.limits)));
  if (env.violations) checked.violations.push(...env.violations);
  // Every request against the model of a lock (semaphore) per line (model.ts), and the
  // history written for other tools.
  const model = checkModel(run.history.events);
  checked.violations.push(...model.violations);
  const history = run.history.write(historyPath(env.id, env.transport));
  const m = model.stats;
  env.notes.push(
    `history: \`${relative(new URL("../..", import.meta.url).pathname, history)}\`, ${m.operations} operations (${m.infoOperations} of unknown outcome) on ${m.lines} lines, checked against the model in ${Math.round(m.ms)} ms`,
  );
  const expected = new Set(env.expects ?? []);
  const caught = checked.violations.filter((v) => expected.has(v.invariant));
  const found = checked.violations.filter((v) => !expected.has(v.invariant));
  const split = env.attribute?.(found);
  const violations = split ? split.counted : found;
  if (env.expects && caught.length === 0) {
    run.fail(`the checker caught no violation of ${env.expects.join(", ")}, which this scenario exists to show`);
  }
  if (caught.length > 0) {
    const kinds = new Map<string, number>();
    for (const v of caught) kinds.set(v.invariant, (kinds.get(v.invariant) ?? 0) + 1);
    env.notes.push(
      `the checker caught (as expected): ${[...kinds].map(([k, n]) => `${n}× ${k}`).join(", ")}; one of each:`,
      ...[...kinds.keys()]
        .flatMap((k) => caught.filter((v) => v.invariant === k).slice(0, 1))
        .map((v) => `${v.invariant}: ${v.detail}`),
    );
  }
  const reqs = run.requests;
  const ok = (status: number) => status > 0 && status < 500;
  const byDone = [...reqs].sort((a, b) => a.doneAt - b.doneAt);
  let lastOk = env.startedAt;
  let failedSince = false;
  let longestUnavailableMs = 0;
  for (const r of byDone) {
    if (!ok(r.status)) failedSince = true;
    else {
      if (failedSince) longestUnavailableMs = Math.max(longestUnavailableMs, r.doneAt - lastOk);
      lastOk = r.doneAt;
      failedSince = false;
    }
  }
  let recoveryMs: number | undefined;
  for (const f of run.faults) {
    if (f.end === undefined) continue;
    const end = f.end;
    const first = byDone.find((r) => r.sentAt >= end && ok(r.status));
    if (first) recoveryMs = Math.max(recoveryMs ?? 0, first.doneAt - end);
  }
  const past = (r: (typeof reqs)[number]) => r.doneAt - r.sentAt - r.waitMs;
  const answered = reqs.filter((r) => r.status > 0);
  const slow503 = reqs.filter((r) => r.status === 503).map(past);
  return {
    scenario: env.id,
    transport: env.transport,
    seconds: env.scale.seconds[env.id],
    clients: env.scale.clients,
    requests: reqs.length,
    grants: run.grants.length,
    violations: violations.length + run.failures.filter((f) => !f.startsWith("(more")).length,
    caught: caught.length,
    // In the lock-set scenarios the guarded state is the fenced resource that counts.
    staleWrites: env.set ? env.set.stale : checked.staleWrites,
    staleRejected: env.set ? env.set.staleRefused : checked.staleRejected,
    rejectedWrites: checked.rejectedWrites,
    writes: run.fence.writes.length,
    http503: slow503.length,
    faults: run.faults.length,
    longestUnavailableMs: Math.round(longestUnavailableMs),
    recoveryMs: recoveryMs === undefined ? undefined : Math.round(recoveryMs),
    slowestPastWaitMs: Math.round(Math.max(0, ...answered.map(past))),
    slowest503Ms: slow503.length ? Math.round(Math.max(...slow503)) : undefined,
    cleanMs: cleanMs === undefined ? undefined : Math.round(cleanMs),
    notes: env.notes,
    details: [...violations.map((v) => `${v.invariant}: ${v.detail}`), ...run.failures],
    ...(split
      ? { attributed: split.attributed.map((a) => `${a.violation.invariant}: ${a.violation.detail}; ${a.why}`) }
      : {}),
    history,
    ...(env.set ? { set: env.set } : {}),
  };
}

const names = (n: number, label = "lock") => Array.from({ length: n }, (_, i) => `${label}:${i}`);
const clients = (env: Env, n: number, label = "c") =>
  Array.from({ length: n }, (_, i) => env.run.client(`${label}${i}`, i));
const loadEnd = (env: Env) => env.run.now() + env.scale.seconds[env.id] * 1_000;

/** Repeats `fault` with pauses in between until `until` (leaving time for a last recovery). */
async function faultLoop(env: Env, until: number, gapMs: [number, number], fault: (n: number) => Promise<void>) {
  for (let n = 0; ; n++) {
    await pause(uniform(...gapMs), () => env.run.now() >= until);
    if (env.run.now() >= until - 2_000) return;
    await fault(n);
  }
}

async function killMember(env: Env, i: number, role: string, downMs: number) {
  await env.run.fault(`kill ${role} m${i}`, async () => {
    await env.cluster.kill(i);
    await sleep(downMs);
    await env.cluster.start(i);
  });
}

/** What a scenario is called, what it does, and what it runs on. */
export interface ScenarioSpec {
  id: ScenarioId;
  title: string;
  what: string;
  shape: Shape;
}

/** A scenario whose load is `body`, in a fresh environment of its shape for each run. */
function scenario(spec: ScenarioSpec, body: (env: Env) => Promise<void>): Scenario {
  return {
    id: spec.id,
    title: spec.title,
    what: spec.what,
    run: (transport, scale) => withEnv(spec.id, transport, scale, spec.shape, body),
  };
}

/**
 * The faults a scenario injects, every `gapMs`, and what it checks after the load that
 * is particular to them: shared by the lock and the line scenarios.
 */
export interface Faults {
  gapMs: [number, number];
  fault: (env: Env, n: number) => Promise<void>;
  after?: (env: Env) => void;
}

/**
 * A scenario of standard holders (see `holder`) on a few names while `fault` is injected
 * every `gapMs`, then `after` checks what is particular to it.
 */
export function faultScenario(o: ScenarioSpec & Faults & { holders?: Partial<HolderOptions> }): Scenario {
  return scenario(o, async (env) => {
    const until = loadEnd(env);
    const opts = { names: names(3), ttl: TTL, stallRate: 0.15, waitRate: 0.5, maxWait: 2, until, ...o.holders };
    await Promise.all([
      ...clients(env, env.scale.clients).map((c) => holder(c, opts)),
      faultLoop(env, until, o.gapMs, (n) => o.fault(env, n)),
    ]);
    o.after?.(env);
  });
}

/** Every other time the leader, else a follower: SIGKILLed, down 1–3 s, restarted. */
const memberFault = async (env: Env, n: number) => {
  const leader = await env.cluster.leader();
  const target = n % 2 === 0 && leader !== undefined ? leader : ((leader ?? 0) + 1 + (n % 4 === 1 ? 0 : 1)) % 3;
  await killMember(env, target, target === leader ? "leader" : "follower", uniform(1_000, 3_000));
};

const outageFault = (env: Env) => killMember(env, 0, "the only member", uniform(2_000, 4_000));

/** Every request meanwhile must get a fast 503. */
export const fast503 = (env: Env) => {
  const past = (r: RequestRecord) => Math.round(r.doneAt - r.sentAt - r.waitMs);
  const slow = env.run.requests.filter((r) => r.status === 503 && past(r) > FAST_503_MS);
  for (const r of slow.slice(0, 5)) env.run.fail(`a 503 took ${past(r)} ms past its wait (limit ${FAST_503_MS})`);
};

/** One instance in turn is SIGKILLed (process group, no shutdown) and restarted 0.5–2 s later. */
const instanceFault = async (env: Env, n: number) => {
  const i = n % env.instances.length;
  const instance = env.instances[i] as ServiceInstance;
  await env.run.fault(`SIGKILL instance ${i}`, async () => {
    await instance.kill();
    await sleep(uniform(500, 2_000));
    await instance.start();
  });
};

const memberKills: Faults = { gapMs: [1_500, 3_500], fault: memberFault };
const outages: Faults = { gapMs: [2_000, 4_000], fault: outageFault, after: fast503 };
const instanceKills: Faults = { gapMs: [1_500, 3_000], fault: instanceFault };

const cluster = faultScenario({
  id: "cluster",
  title: "3-member etcd cluster, members (the leader among them) SIGKILLed and restarted",
  what: "a 3-member cluster on loopback; every few seconds one member is SIGKILLed (every other time the leader), stays down 1–3 s and is restarted, while the clients take, hold and release locks through one service instance that knows all three endpoints",
  shape: { members: 3, instances: 1 },
  ...memberKills,
});

const outage = faultScenario({
  id: "outage",
  title: "full etcd outage and return",
  what: "a single-member etcd is SIGKILLed, stays down 2–4 s and comes back, again and again; every request meanwhile must get a fast 503 and the same service process must recover on its own",
  shape: { members: 1, instances: 1 },
  ...outages,
});

const instances = faultScenario({
  id: "instances",
  title: "three service instances on one etcd, one SIGKILLed and restarted",
  what: "three stateless service processes share one etcd; every few seconds one of them is SIGKILLed (process group, no shutdown) and restarted on its port 0.5–2 s later; clients fail over to the next instance on a dropped connection or a 503",
  shape: { members: 1, instances: 3 },
  ...instanceKills,
});

const vanish: Scenario = {
  id: "vanish",
  title: "clients that vanish mid-hold or mid-wait",
  what: "holders that take a lock and vanish (no renew, no release): the next waiter must get the lock within TTL + 1 s of the vanished grant; waiters that hang up mid-wait (with a 30 s TTL, so a grant left behind would show): the lock must be free again right after; standard holders run alongside",
  run: (transport, scale) =>
    withEnv("vanish", transport, scale, { members: 1, instances: 1 }, async (env) => {
      const { run } = env;
      const until = loadEnd(env);
      const pairs = Math.max(2, Math.floor(env.scale.clients / 4));
      let worstExpiry = 0;
      let vanished = 0;
      let hungUp = 0;

      const vanishLoop = async (v: Client, p: Client, name: string) => {
        while (run.now() < until) {
          const got = await v.acquire(name, { ttl: TTL, wait: 3, retryMs: 2_000 });
          if (!("record" in got)) continue;
          vanished++;
          // v is gone now: no renew, no release. p waits for the lock.
          const next = await p.acquire(name, { ttl: TTL, wait: TTL + 3, retryMs: 2_000 });
          if (!("record" in next)) {
            run.fail(`${name}: the lock of a vanished holder was not free within ${TTL + 3} s (HTTP ${next.status})`);
            continue;
          }
          const expiry = next.record.receivedAt - got.record.receivedAt;
          worstExpiry = Math.max(worstExpiry, expiry);
          if (expiry > got.record.ttl * 1_000 + 1_000) {
            run.fail(
              `${name}: a vanished holder's lock (TTL ${got.record.ttl} s) was free only after ${Math.round(expiry)} ms`,
            );
          }
          await p.release(next, 2_000);
        }
      };

      const hangUpLoop = async (h: Client, w: Client, probe: Client, name: string) => {
        while (run.now() < until) {
          const held = await h.acquire(name, { ttl: TTL, wait: 3, retryMs: 2_000 });
          if (!("record" in held)) continue;
          const caller = new AbortController();
          const waiting = w.acquire(name, { ttl: 30, wait: 5, signal: caller.signal }).catch(() => undefined);
          // The waiter hangs up, then the holder releases shortly after: the service must
          // stop waiting, and revoke a grant that lands after the disconnect anyway.
          const hangUpAt = uniform(100, 600);
          await sleep(hangUpAt);
          caller.abort();
          await sleep(uniform(20, 300));
          await h.release(held, 2_000);
          const outcome = await waiting;
          hungUp++;
          if (outcome && "record" in outcome) {
            run.fail(`${name}: a waiter got the lock while its holder had not released it`);
            await w.release(outcome, 2_000);
          }
          // Free again (or soon: the revoke of an unwanted grant is on its way).
          const free = await probe.acquire(name, { ttl: TTL, wait: 1, retryMs: 2_000 });
          if (!("record" in free)) {
            run.fail(`${name}: still held (HTTP ${free.status}) after its waiter hung up and its holder released`);
            continue;
          }
          await probe.release(free, 2_000);
        }
      };

      const background = clients(env, Math.max(2, env.scale.clients - 2 * pairs - 3 * pairs)).map((c) =>
        holder(c, { names: names(2), ttl: TTL, stallRate: 0.15, waitRate: 0.5, maxWait: 2, until }),
      );
      await Promise.all([
        ...background,
        ...Array.from({ length: pairs }, (_, i) =>
          vanishLoop(run.client(`vanisher${i}`), run.client(`heir${i}`), `vanish:${i}`),
        ),
        ...Array.from({ length: pairs }, (_, i) =>
          hangUpLoop(run.client(`holder${i}`), run.client(`quitter${i}`), run.client(`probe${i}`), `hangup:${i}`),
        ),
      ]);
      env.notes.push(
        `${vanished} holders vanished; slowest expiry ${Math.round(worstExpiry)} ms after their grant (TTL ${TTL} s)`,
        `${hungUp} waiters hung up mid-wait, each shortly before the lock was released`,
      );
    }),
};

const waiters = faultScenario({
  id: "waiters",
  title: "waiters during leader changes",
  what: "a 3-member cluster whose leader is SIGKILLed every few seconds (down 1–2 s) while most acquires long-poll with `wait` up to 4 s through two service instances; each waiter must get the lock, its 409 at `wait`, or a 503 — never a hang past `wait`",
  shape: { members: 3, instances: 2 },
  gapMs: [1_500, 3_000],
  fault: async (env) => {
    const leader = await env.cluster.leader();
    if (leader !== undefined) await killMember(env, leader, "leader", uniform(1_000, 2_000));
  },
  holders: { names: names(2), stallRate: 0.1, waitRate: 0.9, maxWait: 4 },
  after: (env) => {
    const waits = env.run.requests.filter((r) => r.op === "acquire" && r.waitMs > 0);
    const byStatus = new Map<number, number>();
    for (const r of waits) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
    env.notes.push(
      `${waits.length} waiting acquires: ${[...byStatus]
        .sort((x, y) => x[0] - y[0])
        .map(([st, n]) => `${n}× ${st <= 0 ? (st === 0 ? "connection failed" : "hung") : st}`)
        .join(", ")}`,
    );
  },
});

/** API keys of the adversarial scenario: two tenants (a with two keys) and an admin. */
function tenantKeys() {
  const key = (label: string): ApiKey => ({ label, secret: `verify-${label}-${randomUUID()}` });
  const keys = { a1: key("a1"), a2: key("a2"), b: key("b"), admin: key("admin") };
  const config = [
    { key: keys.a1.secret, prefixes: ["a:"] },
    { key: keys.a2.secret, prefixes: ["a:"] },
    { key: keys.b.secret, prefixes: ["b:"] },
    { key: keys.admin.secret, prefixes: [""], admin: true },
  ];
  return { keys, env: { LEASEHOLD_API_KEYS: JSON.stringify(config) } };
}

const ADVERSARIAL_LAG_MS = 10;

const adversarial: Scenario = {
  id: "adversarial",
  title: "adversarial callers: force releases, dropped answers replayed, two tenants",
  what: `a 3-member cluster and three service instances with API keys on (tenant a with two keys, tenant b, an admin; the third instance reaches etcd through a proxy that delays each way by ${ADVERSARIAL_LAG_MS} ms, and the admin starts there). Holders of both tenants hold and renew; 30 % of acquires abort their first request 0–25 ms after sending it and retry with the same Idempotency-Key, which the tenant's other key (must not receive the grant) and the other tenant (403) replay first; 45 % of releases race an admin force release of the same name (the release sent 0–80 ms after it, then at once an acquire of another name) and 20 % race a renew; the admin also force-releases a held name every 150–500 ms. Besides the invariants: a handle never goes to two API keys, a force release answered 204 never falls inside a hold whose release succeeded, and no grant ends early (another grant, or a renew's or release's 410, while the holder's lease was provably live with no release or force release sent). ${MORE_ADVERSARIES}`,
  run: (transport, scale) => {
    const { keys, env: authEnv } = tenantKeys();
    return withEnv(
      "adversarial",
      transport,
      scale,
      { members: 3, instances: 3, env: authEnv, lagMs: ADVERSARIAL_LAG_MS },
      async (env) => {
        const { run } = env;
        const until = loadEnd(env);
        const lagged = env.instances.length - 1;
        const admin = run.client("admin", lagged, keys.admin);
        const held = new Map<string, number>();
        const counts: Record<string, number> = {};
        // On the lagging instance a force release reads 20–60 ms after it was sent and acts
        // 20–70 ms later (measured): releases land anywhere across that.
        const raceMs = 8 * ADVERSARIAL_LAG_MS;
        const perTenant = Math.max(2, Math.floor((env.scale.clients - 1) / 2));
        const aNames = names(3, "a:lock");
        const bNames = names(3, "b:lock");
        const a2Other = run.client("a-other2", 0, keys.a2);
        const a1Other = run.client("a-other1", 1, keys.a1);
        const outsiderOfA = run.client("b-outsider", 2, keys.b);
        const outsiderOfB = run.client("a-outsider", 0, keys.a1);
        const holders = [
          ...Array.from({ length: perTenant }, (_, i) => {
            const mine = i % 3 === 2 ? keys.a2 : keys.a1;
            const c = run.client(`a${i}`, i, mine);
            const other = mine === keys.a1 ? a2Other : a1Other;
            return adversary(c, {
              names: aNames,
              ttl: TTL,
              until,
              other,
              outsider: outsiderOfA,
              admin,
              held,
              counts,
              raceMs,
            });
          }),
          ...Array.from({ length: perTenant }, (_, i) =>
            adversary(run.client(`b${i}`, i + 1, keys.b), {
              names: bNames,
              ttl: TTL,
              until,
              outsider: outsiderOfB,
              raceMs,
              admin,
              held,
              counts,
            }),
          ),
        ];
        const more = moreAdversaries({
          tenants: [
            { label: "a1", key: keys.a1, other: keys.a2, prefix: "a:" },
            { label: "b", key: keys.b, prefix: "b:" },
          ],
          admin: run.client("admin-tokens", 0, keys.admin),
          users: env.scale.form === "short" ? 2 : 3,
          ttl: TTL,
          until,
          counts,
        });
        await Promise.all([...holders, ...more, forceLoop(admin, { held, names: [...aNames, ...bNames], until })]);
        const forced = run.forces.filter((f) => f.status === 204).length;
        counts["force releases in all"] = run.forces.length;
        env.notes.push(
          `${run.forces.length} force releases (${forced} ended a grant); ${Object.entries(counts)
            .filter(([k]) => k !== "force releases in all")
            .map(([k, n]) => `${n} ${k}`)
            .join(", ")}`,
        );
      },
    );
  },
};

// ---------------------------------------------------------------- lines

const TICKET_TTL = 3;
const SEMAPHORES: readonly LineSpec[] = [
  { kind: "semaphore", name: "sem:0", limit: 3 },
  { kind: "semaphore", name: "sem:1", limit: 2 },
];
const QUEUE: LineSpec = { name: "queue:0", limit: 1 };

const LINES_WHAT = `semaphore users take permits of two semaphores (limits 3 and 2; 60 % of acquires wait up to 2.5 s), waiters join one lock's line (every acquire waits 1–3 s) and ticket holders take tickets (\`queue: true\`, \`ticketTtl\` ${TICKET_TTL} s) in that lock's line and the first semaphore's, coming back until granted; all through three service instances (each client starts on its own). Some holders vanish, some waiters hang up, some tickets leave the line (half of those then redeem once more) and some are abandoned. Once a client is done with its place (refused, hung up, released, vanished, left, abandoned), its key must leave etcd in time: a waiter's within the queue lease's ${QUEUE_LEASE_TTL} s (+1 s; at once, normally), a grant's within its TTL, a ticket's within \`ticketTtl\` (counted from the end of any fault meanwhile)`;

/**
 * A scenario of the line workloads (see lines.ts) while `fault` is injected every
 * `gapMs`; meanwhile each participant's key must leave etcd in time once its client is
 * done with it (`GoneWatch`); then the line invariants are checked over the clients'
 * records and etcd's history (see check-lines.ts). `vanish`: more vanishing clients.
 */
export function lineScenario(o: ScenarioSpec & Partial<Faults> & { vanish?: boolean }): Scenario {
  return scenario(o, async (env) => {
    const { run } = env;
    const until = loadEnd(env);
    env.limits = new Map([...SEMAPHORES, QUEUE].map((l) => [lineOf(l), l.limit]));
    // An abandoned ticket stays its TTL.
    env.lingerMs = Math.max(TTL, QUEUE_LEASE_TTL, TICKET_TTL) * 1_000;
    const gone = new GoneWatch(run, env.cluster, env.prefix);
    const counts: Record<string, number> = {};
    const load: LineLoad = {
      until,
      ttl: TTL,
      ticketTtl: TICKET_TTL,
      semaphores: SEMAPHORES,
      queue: QUEUE,
      ticketLines: [QUEUE, SEMAPHORES[0] as LineSpec],
      vanishRate: o.vanish ? 0.15 : 0.05,
      hangUpRate: o.vanish ? 0.2 : 0.05,
      leaveRate: o.vanish ? 0.08 : 0.05,
      abandonRate: o.vanish ? 0.08 : 0.03,
      gone,
      counts,
    };
    const n = env.scale.clients;
    let loadDone = false;
    const users = Promise.all([
      ...clients(env, Math.ceil(n / 2), "s").map((c) => semaphoreUser(c, load)),
      ...clients(env, Math.ceil((n * 3) / 8), "q").map((c) => queueWaiter(c, load)),
      ...clients(env, Math.ceil((n * 3) / 8), "t").map((c) => ticketHolder(c, load)),
    ]).finally(() => {
      loadDone = true;
      env.loadEndedAt = run.now();
    });
    await Promise.all([
      users,
      o.fault && o.gapMs ? faultLoop(env, until, o.gapMs, (i) => o.fault?.(env, i) ?? Promise.resolve()) : undefined,
      gone.loop(() => loadDone),
    ]);
    env.revisionsSeen = gone.seen;
    env.notes.push(...lineNotes(env, counts, gone));
    o.after?.(env);
  });
}

/** What the clients did in a line scenario, for the report. */
function lineNotes(env: Env, counts: Record<string, number>, gone: GoneWatch): string[] {
  const { run } = env;
  const statuses = (calls: { status: number }[]) => {
    const by = new Map<number, number>();
    for (const c of calls) by.set(c.status, (by.get(c.status) ?? 0) + 1);
    return [...by]
      .sort((x, y) => x[0] - y[0])
      .map(([st, k]) => `${k}× ${st <= 0 ? (st === 0 ? "connection failed" : "hung") : st}`)
      .join(", ");
  };
  const of = (line: LineSpec) => run.participants.filter((p) => lineOf(p) === lineOf(line));
  const waits = (ps: ParticipantRecord[]) =>
    ps.flatMap((p) => (p.queue ? [] : p.calls.filter((c) => c.op === "acquire")));
  const semGrants = run.grants.filter((g) => g.kind === "semaphore").length;
  const queueGrants = run.grants.filter((g) => g.name === QUEUE.name && g.kind === undefined).length;
  const tickets = run.participants.filter((p) => p.queuedSeq !== undefined);
  let rose = 0;
  for (const p of tickets) {
    const positions = p.calls.flatMap((c) => (c.position === undefined ? [] : [c.position]));
    for (let i = 1; i < positions.length; i++) if ((positions[i] as number) > (positions[i - 1] as number)) rose++;
  }
  const count = (what: string) => counts[what] ?? 0;
  const byPrefix = (prefix: string) =>
    Object.entries(counts)
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]) => `${v}× ${k.slice(prefix.length)}`)
      .join(", ") || "none";
  const notes = [
    `semaphores: ${semGrants} permits granted; acquires of ${SEMAPHORES.map((l) => `${l.name} (limit ${l.limit}): ${statuses(waits(of(l)))}`).join("; ")}`,
    `queue ${QUEUE.name}: ${queueGrants} grants; waiting acquires: ${statuses(waits(of(QUEUE)))}`,
    `tickets: ${tickets.length} taken (202); redeems answered ${byPrefix("redeems answered ")}; leaves answered ${byPrefix("leaves answered ")}; redeems after leaving answered ${byPrefix("redeems after leaving answered ")}; ${count("tickets abandoned")} abandoned; a position rose between two answers of one ticket ${rose} times`,
    `${count("holders vanished")} holders vanished, ${count("waiters hung up")} waiters hung up mid-wait`,
  ];
  const gones = [...gone.slowest].sort((a, b) => a[0].localeCompare(b[0]));
  notes.push(
    `keys gone once their clients were done with them (the slowest, counted from the end of any fault meanwhile): ${gones
      .map(([what, s]) => `${s.n} ${what} (${Math.round(s.ms)} ms)`)
      .join(", ")}`,
  );
  return notes;
}

const linesCluster = lineScenario({
  id: "lines-cluster",
  title: "lines: semaphores, a fair queue and tickets while etcd members (the leader among them) are SIGKILLed",
  what: `${LINES_WHAT}; a 3-member cluster, one member SIGKILLed every few seconds (every other time the leader), down 1–3 s`,
  shape: { members: 3, instances: 3 },
  ...memberKills,
});

const linesOutage = lineScenario({
  id: "lines-outage",
  title: "lines: semaphores, a fair queue and tickets through full etcd outages",
  what: `${LINES_WHAT}; a single-member etcd SIGKILLed again and again, down 2–4 s; every 503 must come fast`,
  shape: { members: 1, instances: 3 },
  ...outages,
});

const linesInstances = lineScenario({
  id: "lines-instances",
  title: "lines: semaphores, a fair queue and tickets while service instances are SIGKILLed",
  what: `${LINES_WHAT}; every few seconds one of the three instances is SIGKILLed with its waiters and restarted 0.5–2 s later; clients fail over, retrying with the same Idempotency-Key, and the dead instance's waiters leave the line with its queue lease`,
  shape: { members: 1, instances: 3 },
  ...instanceKills,
});

const linesVanish = lineScenario({
  id: "lines-vanish",
  title: "lines: vanishing holders, waiters and tickets",
  what: `${LINES_WHAT}; no other fault, but more clients vanish: 15 % of holders, 20 % of waiting acquires hang up mid-wait, and per redeem 8 % of tickets leave and 8 % are abandoned`,
  shape: { members: 1, instances: 3 },
  vanish: true,
});

// ---------------------------------------------------------------- leaders and change feeds

const LEADERS = "leader:";

const LEADERS_WHAT = `campaigners elect a leader for three names through three service instances (each client starts on its own): an acquire with \`wait\` (0.5–2.5 s) and a \`value\`, then as leader 1–3 renews each publishing a new \`value\`, then a release; 10 % of leaders vanish. Two observers per instance follow \`GET /events?prefix=${LEADERS}&kind=lock\`: one stays on its instance and keeps its stream until a fault ends it, one hangs up on its own every 1–4 s and moves to the next instance; both resume with Last-Event-ID after every drop; a batch counts once the \`id\` closing it arrived. Once the last leader is gone, each observer must have received every change etcd's history implies under the prefix (a \`held\` for each grant and each new value, a \`free\` when it ended), in revision order, none missing and none twice, never a \`held\` with a token older than one it saw for that name, and each \`reset\` with exactly etcd's holders at its index`;

/** Campaigners and observers (see observers.ts) while `fault` is injected every `gapMs`. */
function leaderScenario(o: ScenarioSpec & Faults): Scenario {
  return scenario(o, async (env) => {
    const { run } = env;
    const until = loadEnd(env);
    const counts: Record<string, number> = {};
    const stop = new AbortController();
    const n = env.instances.length;
    const records: ObserverRecord[] = Array.from({ length: 2 * n }, (_, i) => ({
      id: `observer${i}`,
      batches: [],
      connections: 0,
      drops: 0,
    }));
    const observing = Promise.all(
      records.map((r, i) =>
        observer(run, r, {
          names: LEADERS,
          home: i,
          stop: stop.signal,
          // The first on each instance stays there and keeps its stream until a fault ends it.
          ...(i < n ? { failover: false } : { failover: true, hangUpMs: [1_000, 4_000] as [number, number] }),
        }),
      ),
    );
    const opts = { names: names(3, "leader"), ttl: TTL, until, vanishRate: 0.1, counts };
    await Promise.all([
      Promise.all(clients(env, env.scale.clients).map((c) => campaigner(c, opts))).finally(() => {
        env.loadEndedAt = run.now();
      }),
      faultLoop(env, until, o.gapMs, (i) => o.fault(env, i)),
    ]);
    // The last leader's key goes (a vanished one's with its lease); then every observer
    // must catch up with etcd's last change under the prefix.
    await locksGone(env, TTL * 1_000 + 6_000);
    const history = await historyOf(env);
    if (!history) {
      run.fail("etcd's history could not be read");
      stop.abort();
      await observing;
      return;
    }
    const expected = expectedFeed(history, env.prefix, LEADERS);
    const last = expected.at(-1)?.revision ?? 0;
    const caughtUp = run.now() + 10_000;
    const at = (r: ObserverRecord) => r.batches.at(-1)?.revision ?? 0;
    while (run.now() < caughtUp && records.some((r) => at(r) < last)) await sleep(100);
    stop.abort();
    await observing;
    env.violations = checkObservers(expected, records);
    const changes = expected.reduce((k, b) => k + b.events.length, 0);
    const resets = records.reduce((k, r) => k + r.batches.filter((b) => b.events[0]?.event === "reset").length, 0);
    const complete = records.filter((r) => at(r) >= last).length;
    env.notes.push(
      `campaigns: ${Object.entries(counts)
        .sort()
        .map(([k, v]) => `${v} ${k}`)
        .join(", ")}`,
      `etcd's history under the prefix: ${changes} feed changes in ${expected.length} revisions; ${records.length} observers: ${records.reduce((k, r) => k + r.connections, 0)} streams opened, ${records.reduce((k, r) => k + r.drops, 0)} dropped and resumed, ${resets} resets; ${complete} of them reached etcd's last change`,
    );
  });
}

const leadersCluster = leaderScenario({
  id: "leaders-cluster",
  title: "leaders and change feeds while etcd members (the leader among them) are SIGKILLed",
  what: `${LEADERS_WHAT}; a 3-member cluster, one member SIGKILLed every few seconds (every other time the leader), down 1–3 s`,
  shape: { members: 3, instances: 3 },
  ...memberKills,
});

const leadersInstances = leaderScenario({
  id: "leaders-instances",
  title: "leaders and change feeds while service instances are SIGKILLed",
  what: `${LEADERS_WHAT}; every few seconds one of the three instances is SIGKILLed with its streams and restarted 0.5–2 s later`,
  shape: { members: 1, instances: 3 },
  ...instanceKills,
});

// ---------------------------------------------------------------- lock-set

const SET_NAMES = names(2, "set");
/** One hold in this many pauses past its TTL (the second, the tenth...: the first comes early). */
export const SET_PAUSE_EVERY = 8;

const SET_WHAT = `holders on three service instances (each client starts on its own; the third instance is reached through a proxy that can stall) take one of two locks (waiting 0.5–3 s), read its guarded state (\`GET /locks/{name}/state\`, a JSON list of integers; none yet is the empty list), append an element of their own, write the list back and release; one hold in ${SET_PAUSE_EVERY} pauses between the read and the write (a GC pause) past the TTL until another holder's grant of the name has arrived (at most 5 s more), then 0–0.8 s longer, and a write with no answer, a dropped connection or a 503 is sent again with the same list for up to 2 s. Faults in turn every 1.5–3 s: a service instance SIGKILLed and restarted 0.5–2 s later; the proxy stalls every connection to the third instance for the TTL + 0.3–1.5 s, so requests in flight arrive after their grant expired; an etcd member of three SIGKILLed, down 1–3 s (every other time the leader). After the load, every version of the state in etcd's history is checked: each write's token was a current holder's at its revision, tokens never go backwards, no write drops an element of the version it replaced, no element twice, each element first written with its appender's token, none from a refused write; every acknowledged append is in the final state, and no write sent after a later grant had arrived is acknowledged`;

/** An instance kill, a stall of the clients' proxy and an etcd member kill, in turn. */
const setFault = async (env: Env, n: number) => {
  const round = Math.floor(n / 3);
  if (n % 3 === 0) return instanceFault(env, round);
  if (n % 3 === 2) return memberFault(env, round);
  const proxy = env.clientProxy;
  if (!proxy) return;
  await env.run.fault(`stall the clients' connections to instance ${env.instances.length - 1}`, () =>
    proxy.stall(TTL * 1_000 + uniform(300, 1_500)),
  );
};

/**
 * The lock-set workload (see lock-set.ts) while `setFault` is injected; then the set
 * invariants are checked over the appends and etcd's history (see check-set.ts).
 * `guarded: false` writes the state with a plain etcd put instead of the service's
 * guarded write: the same workload with no fence, which must lose acknowledged appends.
 */
function setScenario(o: ScenarioSpec & { guarded: boolean; expects?: readonly Violation["invariant"][] }): Scenario {
  const s = scenario(o, async (env) => {
    const { run, cluster } = env;
    if (o.expects) env.expects = o.expects;
    // The line checks over etcd's history too: one holder at a time, in join order.
    env.limits = new Map(SET_NAMES.map((n) => [n, 1]));
    const until = loadEnd(env);
    const appends: AppendRecord[] = [];
    const counts: Record<string, number> = {};
    let element = 0;
    let holds = 0;
    const opts: SetOptions = {
      names: SET_NAMES,
      ttl: TTL,
      pause: () => ++holds % SET_PAUSE_EVERY === 2,
      until,
      write: o.guarded ? guardedWrite : plainPut(cluster, env.prefix),
      appends,
      element: () => ++element,
      counts,
    };
    await Promise.all([
      Promise.all(clients(env, env.scale.clients).map((c) => setAppender(c, opts))).finally(() => {
        env.loadEndedAt = run.now();
      }),
      faultLoop(env, until, [1_500, 3_000], (n) => setFault(env, n)),
    ]);
    // Once every grant has ended no guarded write can land any more. A plain put its
    // client gave up on (1 s per member) may still be applied by etcd a moment later, so
    // the history is read once the state has not changed for 2 s.
    const stateDir = new LineKeys(env.prefix).state({ kind: "lock", name: "" });
    await locksGone(env, TTL * 1_000 + 6_000);
    await stateSettled(env, stateDir, 2_000);
    const history = await historyOf(env);
    if (!history) {
      run.fail("etcd's history could not be read");
      return;
    }
    // The service must read back what etcd's history ends with.
    const reader = run.client("reader");
    for (const name of SET_NAMES) {
      const last = history.filter((e) => e.key === `${stateDir}${name}`).at(-1);
      let a = await reader.send("read-state", "GET", `/locks/${name}/state`);
      for (let tries = 0; (a.status <= 0 || a.status === 503) && tries < 10; tries++) {
        await sleep(200);
        a = await reader.send("read-state", "GET", `/locks/${name}/state`);
      }
      const got = a.status === 200 ? a.body.revision : a.status === 404 ? undefined : a.status;
      if (got !== last?.revision) {
        run.fail(
          `${name}: the state read after the load (${a.status}, revision ${a.body?.revision}) is not etcd's last write (revision ${last?.revision})`,
        );
      }
    }
    // The state outlives its grants by design; the leak check is about lock keys and leases.
    await cluster.deletePrefix(stateDir).catch((err) => run.fail(`the state could not be deleted: ${err}`));
    const checked = checkSet(appends, history, { prefix: env.prefix, grants: run.grants });
    env.violations = checked.violations;
    env.set = checked.stats;
    const faults = new Map<string, number>();
    for (const f of run.faults) {
      const kind = f.what.startsWith("kill")
        ? "etcd member kills"
        : f.what.startsWith("SIGKILL")
          ? "instance kills"
          : "stalls";
      faults.set(kind, (faults.get(kind) ?? 0) + 1);
    }
    env.notes.push(
      `faults: ${[...faults].map(([k, n]) => `${n} ${k}`).join(", ") || "none"}${
        Object.keys(counts).length
          ? `; ${Object.entries(counts)
              .map(([k, n]) => `${n} ${k}`)
              .join(", ")}`
          : ""
      }`,
    );
  });
  return o.expects ? { ...s, expects: o.expects } : s;
}

const lockSet = setScenario({
  id: "lock-set",
  title: "lock-set: holders append to a lock's guarded state under pauses, stalls and kills",
  what: SET_WHAT,
  shape: { members: 3, instances: 3, clientProxy: true },
  guarded: true,
});

const lockSetUnguarded = setScenario({
  id: "lock-set-unguarded",
  title: "lock-set without guards: the same workload writing the state with a plain etcd put",
  what: `the lock-set workload above, faults and all, except that holders write the state with a plain etcd put under the same key (through the checker's own connection to the cluster), checking nothing, as a resource that trusts whoever holds or held the lock would. Expected: a holder paused past its TTL writes back the list it read before the pause over what later holders appended, so acknowledged appends are lost; the run counts as passing when the checker catches that (\`caught\`), and fails when it catches nothing`,
  shape: { members: 3, instances: 3, clientProxy: true },
  guarded: false,
  expects: ["lost-append", "lost-update", "stale-state-write", "state-token-order", "stale-write-acknowledged"],
});

export const SET_SCENARIOS: readonly Scenario[] = [lockSet, lockSetUnguarded];
export const LOCK_SCENARIOS: readonly Scenario[] = [cluster, outage, instances, vanish, waiters, adversarial];
export const LINE_SCENARIOS: readonly Scenario[] = [linesCluster, linesOutage, linesInstances, linesVanish];
export const LEADER_SCENARIOS: readonly Scenario[] = [leadersCluster, leadersInstances];
export const SCENARIOS: readonly Scenario[] = [
  ...LOCK_SCENARIOS,
  ...LINE_SCENARIOS,
  ...LEADER_SCENARIOS,
  ...SET_SCENARIOS,
];
