import { performance } from "node:perf_hooks";
import { readMachineCpu, readProc, rssSampler } from "./procs.js";
import { percentile } from "./stats.js";
import type { Client, Held, InLine, Session, System, SystemId } from "./systems.js";
import { FETCH_SYSTEM_IDS, isHeld, SYSTEM_IDS, TimedOut } from "./systems.js";

export type CaseId =
  | "c1"
  | "c32"
  | "c256"
  | "contention"
  | "waiters"
  | "fair64x3"
  | "sem8x64"
  | "tickets1k"
  | "scale1"
  | "scale2"
  | "scale4"
  | "waiters10k";

export const CASE_IDS: readonly CaseId[] = [
  "c1",
  "c32",
  "c256",
  "contention",
  "waiters",
  "fair64x3",
  "sem8x64",
  "tickets1k",
  "scale1",
  "scale2",
  "scale4",
  "waiters10k",
];

/**
 * The scale-out cases and their leasehold instance counts: c=32 on a 3-member etcd
 * cluster of their own, the callers spread over that many instances of each transport.
 */
export const SCALE_CASES: Partial<Record<CaseId, number>> = { scale1: 1, scale2: 2, scale4: 4 };

/** The cases of the fair line, semaphores and tickets, reported in a table of their own. */
export const LINE_CASES: readonly CaseId[] = ["fair64x3", "sem8x64", "tickets1k"];

/** The systems driven through tuned undici pools (and the `etcd3` client): every lock case runs them. */
const POOLED: readonly SystemId[] = SYSTEM_IDS.filter((s) => !FETCH_SYSTEM_IDS.includes(s));

/**
 * The systems each case runs. The throughput cases run every system, those called with
 * the global `fetch` too (how users call them); the others, the pooled ones. etcd's lock
 * API queues fairly like leasehold's line, so it runs the fair case; the `etcd3` cycle
 * retries after a watch, which has no order to check. Semaphores and tickets exist only
 * in leasehold.
 */
export const CASE_SYSTEMS: Record<CaseId, readonly SystemId[]> = {
  c1: SYSTEM_IDS,
  c32: SYSTEM_IDS,
  c256: SYSTEM_IDS,
  contention: POOLED,
  waiters: POOLED,
  fair64x3: ["leasehold-grpc", "leasehold-http", "etcd-lock"],
  sem8x64: ["leasehold-grpc", "leasehold-http"],
  tickets1k: ["leasehold-grpc", "leasehold-http"],
  // etcd's lock API has no instances to add: it runs once on the cluster, beside one instance.
  scale1: ["leasehold-grpc", "leasehold-http", "etcd-lock"],
  scale2: ["leasehold-grpc", "leasehold-http"],
  scale4: ["leasehold-grpc", "leasehold-http"],
  // The service's memory and wake-ups with 10,000 parked waiters: leasehold alone.
  waiters10k: ["leasehold-grpc", "leasehold-http"],
};

/** etcd calls the leasehold service made per cycle, from its /metrics (leasehold only). */
export type EtcdCalls = Record<string, { perCycle: number; meanMs: number }>;

/** One system in one case in one round. Times in ms, CPU in % of one core. */
export interface RoundResult {
  system: SystemId;
  case: CaseId;
  round: number;
  seconds: number;
  cycles: number;
  cyclesPerSec: number;
  errors: number;
  /** Waiting acquires that gave up (409 after `wait`). */
  timeouts: number;
  p50Ms?: number;
  p99Ms?: number;
  wakeP50Ms?: number;
  wakeP99Ms?: number;
  wakeSamples?: number;
  /** Line cases: from sending the acquire (or taking the ticket) to the grant's arrival. */
  waitP50Ms?: number;
  waitP99Ms?: number;
  /**
   * Line cases on a lock: grants whose join revision is lower than that of a grant the
   * clients received before it on the same name (served out of arrival order), of
   * `ordered` grants whose join revision is known. A fair line has 0.
   */
  outOfOrder?: number;
  ordered?: number;
  /** Line cases: the most grants of one name held at once, client-side (grant's arrival → release sent). */
  maxHolders?: number;
  /** Tickets: redeem requests (202 or 201), per second, and their latency. */
  redeems?: number;
  redeemsPerSec?: number;
  redeemP50Ms?: number;
  redeemP99Ms?: number;
  /** Waiter cases: how many were seen waiting at once, and how long it took them to get there. */
  parked?: number;
  parkSeconds?: number;
  /** Peak service RSS in the round; in `waiters`, while all the waiters wait. */
  serviceRssMb?: number;
  serviceCpuPct?: number;
  etcdCpuPct: number;
  /** This bench process (the load generator; for etcd3 also the lock client). */
  loadCpuPct: number;
  /** Everything else the machine ran meanwhile (other processes: noise). */
  otherCpuPct: number;
  /** CPU time per cycle: less sensitive to a busy machine than cycles/s. */
  serviceCpuMsPerCycle?: number;
  etcdCpuMsPerCycle?: number;
  loadCpuMsPerCycle?: number;
  etcdCalls?: EtcdCalls;
  etcdServer?: EtcdServerFigures;
  firstError?: string;
}

export interface Env {
  /** The etcd member whose /metrics a round reads (on a cluster: the leader when the case began). */
  etcdEndpoint: string;
  etcdPid: number | undefined;
  /**
   * On a cluster, every member's PID: their CPU is summed. Raft proposals and WAL
   * fsyncs are still read from `etcdEndpoint` alone, so a proposal counts once (every
   * member commits each one) and fsyncs are one member's (each member writes its own WAL).
   */
  etcdPids?: readonly number[];
}

/** CPU seconds of etcd: its one process, or every member of a cluster. */
function etcdCpu(env: Env): number {
  const pids: readonly (number | undefined)[] = env.etcdPids ?? [env.etcdPid];
  return pids.reduce<number>((sum, pid) => sum + (readProc(pid)?.cpuSeconds ?? 0), 0);
}

/** Sums and counts of Prometheus histograms / counters in a text exposition, by series. */
async function scrape(url: string, series: RegExp): Promise<Map<string, number> | undefined> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(5_000) })).text();
    const out = new Map<string, number>();
    for (const line of text.split("\n")) {
      if (line.startsWith("#") || !series.test(line)) continue;
      const at = line.lastIndexOf(" ");
      out.set(line.slice(0, at), Number(line.slice(at + 1)));
    }
    return out;
  } catch {
    return undefined;
  }
}

/** `scrape` of several instances, their series summed; `undefined` when there are none or one failed. */
async function scrapeSum(urls: readonly string[], series: RegExp): Promise<Map<string, number> | undefined> {
  if (urls.length === 0) return undefined;
  const sum = new Map<string, number>();
  for (const one of await Promise.all(urls.map((u) => scrape(u, series)))) {
    if (!one) return undefined;
    for (const [k, v] of one) sum.set(k, (sum.get(k) ?? 0) + v);
  }
  return sum;
}

/** CPU seconds of all the system's service instances; `undefined` without a service (or when one is gone). */
function servicesCpu(system: System): number | undefined {
  if (system.services.length === 0) return undefined;
  let sum = 0;
  for (const s of system.services) {
    const cpu = readProc(s.pid)?.cpuSeconds;
    if (cpu === undefined) return undefined;
    sum += cpu;
  }
  return sum;
}

const SERVICE_SERIES = /^leasehold_etcd_request_seconds_(sum|count)\{/;
const ETCD_SERIES =
  /^(etcd_disk_wal_fsync_duration_seconds_(sum|count)|etcd_disk_backend_commit_duration_seconds_(sum|count)|etcd_server_proposals_committed_total) /;

/** etcd's own view of a round: raft proposals, WAL fsyncs and backend commits per cycle. */
export interface EtcdServerFigures {
  proposalsPerCycle: number;
  fsyncsPerCycle: number;
  fsyncMeanMs: number;
  commitMeanMs: number;
}

/**
 * What a round cost, from its start to `end()`: CPU of the service, etcd, this process
 * (the load) and everything else on the machine (other projects' noise), the etcd calls
 * the service made (its own histogram) and etcd's raft and disk work (its /metrics).
 */
async function usageWindow(system: System, env: Env) {
  const svcUrls = system.services.map((s) => `${s.url}/metrics`);
  const scrapeServices = () => scrapeSum(svcUrls, SERVICE_SERIES);
  const svcBefore = await scrapeServices();
  const etcdBefore = await scrape(`${env.etcdEndpoint}/metrics`, ETCD_SERIES);
  const t0 = performance.now();
  const svc0 = servicesCpu(system);
  const etcd0 = etcdCpu(env);
  const self0 = process.cpuUsage();
  const machine0 = readMachineCpu();
  return async (cycles: number) => {
    const seconds = (performance.now() - t0) / 1000;
    const svc1 = servicesCpu(system);
    const etcd1 = etcdCpu(env);
    const self = process.cpuUsage(self0);
    const machine1 = readMachineCpu();
    const pct = (cpu: number) => (100 * cpu) / seconds;
    const serviceCpu = svc0 !== undefined && svc1 !== undefined ? svc1 - svc0 : 0;
    const ours = serviceCpu + (etcd1 - etcd0) + (self.user + self.system) / 1e6;
    const svcAfter = await scrapeServices();
    const etcdAfter = await scrape(`${env.etcdEndpoint}/metrics`, ETCD_SERIES);
    const delta = (a: Map<string, number> | undefined, b: Map<string, number> | undefined, k: string) =>
      (b?.get(k) ?? 0) - (a?.get(k) ?? 0);

    let etcdCalls: EtcdCalls | undefined;
    if (svcBefore && svcAfter && cycles > 0) {
      etcdCalls = {};
      for (const key of svcAfter.keys()) {
        const op = /^leasehold_etcd_request_seconds_count\{op="([^"]+)"\}$/.exec(key)?.[1];
        if (!op) continue;
        const count = delta(svcBefore, svcAfter, key);
        const sum = delta(svcBefore, svcAfter, `leasehold_etcd_request_seconds_sum{op="${op}"}`);
        if (count > 0) etcdCalls[op] = { perCycle: count / cycles, meanMs: (sum / count) * 1000 };
      }
    }
    let etcdServer: EtcdServerFigures | undefined;
    if (etcdBefore && etcdAfter && cycles > 0) {
      const d = (k: string) => delta(etcdBefore, etcdAfter, k);
      const fsyncs = d("etcd_disk_wal_fsync_duration_seconds_count");
      const commits = d("etcd_disk_backend_commit_duration_seconds_count");
      etcdServer = {
        proposalsPerCycle: d("etcd_server_proposals_committed_total") / cycles,
        fsyncsPerCycle: fsyncs / cycles,
        fsyncMeanMs: fsyncs ? (d("etcd_disk_wal_fsync_duration_seconds_sum") / fsyncs) * 1000 : 0,
        commitMeanMs: commits ? (d("etcd_disk_backend_commit_duration_seconds_sum") / commits) * 1000 : 0,
      };
    }
    const perCycle = (cpu: number) => (cycles > 0 ? (cpu * 1000) / cycles : undefined);
    const cpuMs = {
      service: svc0 !== undefined && svc1 !== undefined ? perCycle(serviceCpu) : undefined,
      etcd: perCycle(etcd1 - etcd0),
      load: perCycle((self.user + self.system) / 1e6),
    };
    return {
      seconds,
      ...(svc0 !== undefined && svc1 !== undefined ? { serviceCpuPct: pct(serviceCpu) } : {}),
      etcdCpuPct: pct(etcd1 - etcd0),
      loadCpuPct: pct((self.user + self.system) / 1e6),
      ...(cpuMs.service !== undefined ? { serviceCpuMsPerCycle: cpuMs.service } : {}),
      ...(cpuMs.etcd !== undefined ? { etcdCpuMsPerCycle: cpuMs.etcd } : {}),
      ...(cpuMs.load !== undefined ? { loadCpuMsPerCycle: cpuMs.load } : {}),
      otherCpuPct: Math.max(0, pct(machine1.busySeconds - machine0.busySeconds - ours)),
      ...(etcdCalls ? { etcdCalls } : {}),
      ...(etcdServer ? { etcdServer } : {}),
    };
  };
}

const pidsOf = (system: System) => system.services.map((s) => s.pid);

/** Counts errors and keeps the first message. */
function errorLog() {
  let errors = 0;
  let timeouts = 0;
  let first: string | undefined;
  return {
    add(err: unknown) {
      if (err instanceof TimedOut) timeouts++;
      else errors++;
      first ??= err instanceof Error ? err.message : String(err);
    },
    /** Counts a failed cycle; true when there were too many to go on, else after a short pause. */
    async backOff(err: unknown): Promise<boolean> {
      this.add(err);
      if (errors > 1000) return true;
      await new Promise((r) => setTimeout(r, 10));
      return false;
    },
    get timeouts() {
      return timeouts;
    },
    summary() {
      return { errors, timeouts, ...(first !== undefined ? { firstError: first } : {}) };
    },
  };
}

const ms = (n: number) => Math.round(n * 1000) / 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One grant of a name, client-side times (ms): when its 201 arrived and when its release's 204 did. */
interface Handoff {
  token: number;
  grantedAt: number;
  releasedAt?: number;
}

/**
 * Wake-up delays: each grant of a name after the first, minus the arrival of the previous
 * holder's release answer. Grants of one name alternate with releases in etcd's order, which
 * the tokens give. The two answers race back to the client, so a grant can arrive just
 * before the release's answer; such a delay counts as 0.
 */
export function wakeDelays(byName: Iterable<Handoff[]>): number[] {
  const out: number[] = [];
  for (const list of byName) {
    const sorted = [...list].sort((a, b) => a.token - b.token);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]?.releasedAt;
      const cur = sorted[i];
      if (prev === undefined || !cur) continue;
      out.push(Math.max(0, cur.grantedAt - prev));
    }
  }
  return out;
}

/** Sessions for `n` callers, opened a few at a time (etcd-lock grants a lease each). */
async function openSessions(client: Awaited<ReturnType<System["client"]>>, n: number): Promise<Session[]> {
  const sessions: Session[] = [];
  for (let i = 0; i < n; i += 64) {
    const batch = Math.min(64, n - i);
    sessions.push(...(await Promise.all(Array.from({ length: batch }, () => client.session()))));
  }
  return sessions;
}

async function closeSessions(sessions: Session[]) {
  for (let i = 0; i < sessions.length; i += 64) {
    await Promise.all(sessions.slice(i, i + 64).map((s) => s.close().catch(() => {})));
  }
}

/** What a case's callers share: their client, a session each, the service's RSS and the errors. */
interface Callers {
  client: Client;
  sessions: Session[];
  rss: ReturnType<typeof rssSampler>;
  errs: ReturnType<typeof errorLog>;
}

/** Opens `n` callers of `system`, runs `fn` with them, and closes them whatever happens. */
async function withCallers<T>(system: System, n: number, fn: (c: Callers) => Promise<T>, rssEveryMs = 100): Promise<T> {
  const client = await system.client(n);
  const sessions = await openSessions(client, n);
  const rss = rssSampler(pidsOf(system), rssEveryMs);
  try {
    return await fn({ client, sessions, rss, errs: errorLog() });
  } finally {
    rss.stop();
    await closeSessions(sessions);
    await client.close();
  }
}

/** The figures every case reports, from its latencies, wake-ups and usage window. */
function result(
  system: System,
  caseId: CaseId,
  round: number,
  cycles: number,
  usage: Awaited<ReturnType<Awaited<ReturnType<typeof usageWindow>>>>,
  errs: ReturnType<typeof errorLog>,
  o: { latencies?: number[]; wakes?: number[]; rssBytes?: number; figures?: Partial<RoundResult> },
): RoundResult {
  const lat = o.latencies?.sort((a, b) => a - b) ?? [];
  const wakes = o.wakes?.sort((a, b) => a - b) ?? [];
  const { seconds, ...rest } = usage;
  return {
    system: system.id,
    case: caseId,
    round,
    seconds: ms(seconds),
    cycles,
    cyclesPerSec: cycles / seconds,
    ...errs.summary(),
    ...(lat.length ? { p50Ms: ms(percentile(lat, 50)), p99Ms: ms(percentile(lat, 99)) } : {}),
    ...(wakes.length
      ? { wakeP50Ms: ms(percentile(wakes, 50)), wakeP99Ms: ms(percentile(wakes, 99)), wakeSamples: wakes.length }
      : {}),
    ...(system.services.length && o.rssBytes !== undefined ? { serviceRssMb: o.rssBytes / 2 ** 20 } : {}),
    ...o.figures,
    ...rest,
  };
}

/**
 * Closed loop: `concurrency` callers, each doing acquire + release back to back until
 * `durationMs` is over. With `contended`, all on one name, acquiring with `wait`
 * (latency then includes the time queued for the lock, and each handoff is a wake-up
 * sample); otherwise each on a name of its own, with no wait.
 */
export async function runClosedLoop(
  system: System,
  env: Env,
  o: {
    caseId: CaseId;
    round: number;
    concurrency: number;
    durationMs: number;
    names: string;
    contended?: { waitSeconds: number };
  },
): Promise<RoundResult> {
  return withCallers(system, o.concurrency, async ({ sessions, rss, errs }) => {
    const latencies: number[] = [];
    const handoffs: Handoff[] = [];
    const wait = o.contended?.waitSeconds ?? 0;
    const window = await usageWindow(system, env);
    const deadline = performance.now() + o.durationMs;
    await Promise.all(
      sessions.map(async (session, i) => {
        const name = o.contended ? o.names : `${o.names}-${i}`;
        while (performance.now() < deadline) {
          const t = performance.now();
          try {
            const held = await session.acquire(name, wait);
            const h: Handoff = { token: held.token, grantedAt: performance.now() };
            await held.release();
            h.releasedAt = performance.now();
            latencies.push(h.releasedAt - t);
            if (o.contended) handoffs.push(h);
          } catch (err) {
            if (await errs.backOff(err)) return;
          }
        }
      }),
    );
    const usage = await window(latencies.length);
    return result(system, o.caseId, o.round, latencies.length, usage, errs, {
      latencies,
      ...(o.contended ? { wakes: wakeDelays([handoffs]) } : {}),
      rssBytes: rss.peak(),
    });
  });
}

/**
 * Many parked waiters: hold `names` names, start `waiters` acquires with `wait` spread
 * evenly over them, read the service's RSS once they all wait, then release the holders
 * one by one. Each waiter releases as soon as it is granted, so every name is handed down
 * its queue; each handoff is one wake-up sample. Rate and CPU cover the handoffs.
 */
export async function runWaiters(
  system: System,
  env: Env,
  o: {
    /** `waiters` (default) or `waiters10k`: the same case at another size. */
    caseId?: CaseId;
    round: number;
    waiters: number;
    names: number;
    waitSeconds: number;
    /**
     * At most this many acquires sent and not yet seen waiting (the service's gauge): a
     * crowd arriving over a few seconds rather than in one burst. Without it all start at once.
     */
    joining?: number;
    namePrefix: string;
    log: (s: string) => void;
  },
): Promise<RoundResult> {
  return withCallers(
    system,
    o.waiters + o.names,
    async ({ client, sessions, rss, errs }) => {
      const byName = new Map<string, Handoff[]>();
      const nameOf = (i: number) => `${o.namePrefix}-${i % o.names}`;
      const record = (name: string, h: Handoff) => {
        const list = byName.get(name) ?? [];
        list.push(h);
        byName.set(name, list);
      };
      const holders: { held: Held; h: Handoff }[] = [];
      for (let i = 0; i < o.names; i++) {
        const session = sessions[o.waiters + i];
        if (!session) throw new Error("missing session");
        // Held until every waiter waits, however long that takes: longer than any wait.
        const held = await session.acquire(nameOf(i), 0, o.waitSeconds + 30);
        const h: Handoff = { token: held.token, grantedAt: performance.now() };
        record(nameOf(i), h);
        holders.push({ held, h });
      }
      let granted = 0;
      const wait = async (session: Session, i: number) => {
        const name = nameOf(i);
        try {
          const held = await session.acquire(name, o.waitSeconds);
          const h: Handoff = { token: held.token, grantedAt: performance.now() };
          record(name, h);
          granted++;
          await held.release();
          h.releasedAt = performance.now();
        } catch (err) {
          errs.add(err);
        }
      };
      const waiters = sessions.slice(0, o.waiters);
      const waiting: Promise<void>[] = [];
      const parkStart = performance.now();
      // A paced crowd takes longer to arrive; only its first, at the heads of the lines,
      // wait through all of it (those after them wait for the lines to be handed down).
      const parkDeadline =
        parkStart + (o.joining === undefined ? Math.min(30_000, (o.waitSeconds * 1000) / 2) : o.waitSeconds * 750);
      let parked = 0;
      const look = async () => {
        parked = await client.waiting(o.namePrefix, o.names).catch(() => parked);
      };
      if (o.joining === undefined) waiting.push(...waiters.map(wait));
      while (waiting.length < waiters.length && performance.now() < parkDeadline) {
        // The waiters granted meanwhile (none, unless a holder's lock ended) are no longer parked.
        const room = Math.min(waiters.length - waiting.length, parked + granted + (o.joining ?? 0) - waiting.length);
        for (let k = 0; k < room; k++) waiting.push(wait(waiters[waiting.length] as Session, waiting.length));
        await sleep(50);
        await look();
      }
      // Everyone waiting (or as long as we dare look), then the RSS reading.
      while (parked < waiting.length && performance.now() < parkDeadline) {
        await sleep(100);
        await look();
      }
      const parkSeconds = (performance.now() - parkStart) / 1000;
      if (parked < o.waiters) o.log(`  ${system.id}: only ${parked} of ${o.waiters} were seen waiting`);
      rss.reset();
      await new Promise((r) => setTimeout(r, 300));
      const rssWaiting = rss.peak();

      const window = await usageWindow(system, env);
      for (const holder of holders) {
        try {
          await holder.held.release();
          holder.h.releasedAt = performance.now();
        } catch (err) {
          errs.add(err);
        }
      }
      await Promise.all(waiting);
      const usage = await window(granted);
      return result(system, o.caseId ?? "waiters", o.round, granted, usage, errs, {
        wakes: wakeDelays(byName.values()),
        rssBytes: rssWaiting,
        figures: { parked, parkSeconds: ms(parkSeconds) },
      });
    },
    50,
  );
}

// ---------------------------------------------------------------- fair line, semaphores, tickets

/** One grant as the client saw it (times in ms, `performance.now()`). */
export interface TimedGrant {
  name: string;
  /** Its join revision, when known (see `Held.joined`). */
  joined?: number;
  /** The acquire (or the ticket's first request) was sent. */
  sentAt: number;
  /** The grant's answer arrived. */
  grantedAt: number;
  /** The release was sent (end of the hold as the client knows it). */
  releasingAt?: number;
}

/**
 * Grants served out of arrival order: on each name, in the order the grants reached the
 * clients, a grant whose join revision is lower than one granted before it. For a lock
 * that order is etcd's: a holder sends its release only after its grant arrived, and
 * the next grant needs that release. Grants whose join is unknown are left out.
 */
export function outOfOrder(grants: readonly TimedGrant[]): { outOfOrder: number; ordered: number } {
  const byName = new Map<string, TimedGrant[]>();
  for (const g of grants) {
    if (g.joined === undefined) continue;
    byName.set(g.name, [...(byName.get(g.name) ?? []), g]);
  }
  let late = 0;
  let ordered = 0;
  for (const list of byName.values()) {
    let highest = Number.NEGATIVE_INFINITY;
    for (const g of [...list].sort((a, b) => a.grantedAt - b.grantedAt)) {
      const joined = g.joined ?? 0;
      if (joined < highest) late++;
      highest = Math.max(highest, joined);
      ordered++;
    }
  }
  return { outOfOrder: late, ordered };
}

/**
 * The most grants of one name held at once, as the clients saw them: from a grant's
 * arrival to its release being sent. That is inside the grant's real hold in etcd, so
 * this never counts more holders than there were.
 */
export function maxHolders(grants: readonly TimedGrant[]): number {
  const byName = new Map<string, [number, number][]>();
  for (const g of grants) {
    if (g.releasingAt === undefined) continue;
    const edges = byName.get(g.name) ?? [];
    // A release sent at the very moment another grant arrives is not an overlap: ends sort first.
    edges.push([g.grantedAt, 1], [g.releasingAt, -1]);
    byName.set(g.name, edges);
  }
  let most = 0;
  for (const edges of byName.values()) {
    let open = 0;
    for (const [, step] of edges.sort((a, b) => a[0] - b[0] || a[1] - b[1])) {
      open += step;
      most = Math.max(most, open);
    }
  }
  return most;
}

/** A grant the bench holds: its times, and what it knows of it (its join revision may come later). */
type HeldGrant = Omit<TimedGrant, "joined"> & { held: Held };

/** Records a grant as it arrived, holds it `holdMs`, and releases it. */
async function holdAndRelease(grants: HeldGrant[], name: string, held: Held, sentAt: number, holdMs: number) {
  const g: HeldGrant = { name, held, sentAt, grantedAt: performance.now() };
  grants.push(g);
  await sleep(holdMs);
  g.releasingAt = performance.now();
  await held.release();
}

/** The figures of a line case's grants: waits, order (on a lock) and holders at once. */
function lineFigures(held: readonly HeldGrant[], ordered: boolean): Partial<RoundResult> {
  const grants: TimedGrant[] = held.map(({ held: h, ...g }) =>
    h.joined !== undefined ? { ...g, joined: h.joined } : g,
  );
  const waits = grants.map((g) => g.grantedAt - g.sentAt).sort((a, b) => a - b);
  return {
    ...(waits.length ? { waitP50Ms: ms(percentile(waits, 50)), waitP99Ms: ms(percentile(waits, 99)) } : {}),
    ...(ordered ? outOfOrder(grants) : {}),
    maxHolders: maxHolders(grants),
  };
}

/**
 * Callers on one name in a closed loop for `durationMs`: acquire with `wait` (a lock, or
 * with `limit` a semaphore's permit), hold `holdMs`, release. Every grant's join
 * revision is kept to check the order grants were served in (on a lock; several
 * holders at once reach their clients in no defined order). A system with several
 * service instances spreads the callers over them.
 */
export async function runLine(
  system: System,
  env: Env,
  o: {
    caseId: CaseId;
    round: number;
    callers: number;
    durationMs: number;
    name: string;
    waitSeconds: number;
    holdMs: number;
    /** A semaphore of this many permits; a lock without it. */
    limit?: number;
  },
): Promise<RoundResult> {
  return withCallers(system, o.callers, async ({ client, sessions, rss, errs }) => {
    const grants: HeldGrant[] = [];
    const take = (session: Session): Promise<Held> => {
      if (o.limit === undefined) return session.acquire(o.name, o.waitSeconds);
      if (!session.permit) throw new Error(`${system.id} has no semaphores`);
      return session.permit(o.name, o.limit, o.waitSeconds);
    };
    const window = await usageWindow(system, env);
    const deadline = performance.now() + o.durationMs;
    await Promise.all(
      sessions.map(async (session) => {
        while (performance.now() < deadline) {
          const sentAt = performance.now();
          try {
            await holdAndRelease(grants, o.name, await take(session), sentAt, o.holdMs);
          } catch (err) {
            if (await errs.backOff(err)) return;
          }
        }
      }),
    );
    const usage = await window(grants.length);
    // Outside the measured window: finding the joins may read etcd's history.
    await client.joinRevisions?.(grants.map((g) => g.held));
    return result(system, o.caseId, o.round, grants.length, usage, errs, {
      rssBytes: rss.peak(),
      figures: lineFigures(grants, o.limit === undefined),
    });
  });
}

/**
 * Ticket holders polling: each takes a ticket (`queue: true`) on one of `names` locks,
 * redeems it every `redeemEveryMs` on average (jittered ±50 %, so the polls spread out)
 * until granted, holds `holdMs`, releases, and takes a new ticket, until `durationMs`
 * is over. Places still in line then leave, outside the measured window.
 */
export async function runTickets(
  system: System,
  env: Env,
  o: {
    round: number;
    holders: number;
    names: number;
    durationMs: number;
    redeemEveryMs: number;
    holdMs: number;
    namePrefix: string;
  },
): Promise<RoundResult> {
  return withCallers(system, o.holders, async ({ sessions, rss, errs }) => {
    const grants: HeldGrant[] = [];
    const redeemMs: number[] = [];
    const stillInLine: InLine[] = [];
    const window = await usageWindow(system, env);
    const deadline = performance.now() + o.durationMs;
    await Promise.all(
      sessions.map(async (session, i) => {
        const name = `${o.namePrefix}-${i % o.names}`;
        while (performance.now() < deadline) {
          const sentAt = performance.now();
          try {
            if (!session.queue) throw new Error(`${system.id} has no tickets`);
            let answer = await session.queue(name);
            while (!isHeld(answer)) {
              const pause = Math.min(deadline - performance.now(), o.redeemEveryMs * (0.5 + Math.random()));
              if (pause > 0) await sleep(pause);
              if (performance.now() >= deadline) {
                stillInLine.push(answer);
                return;
              }
              const t = performance.now();
              answer = await answer.redeem();
              redeemMs.push(performance.now() - t);
            }
            await holdAndRelease(grants, name, answer, sentAt, o.holdMs);
          } catch (err) {
            if (await errs.backOff(err)) return;
          }
        }
      }),
    );
    const usage = await window(grants.length);
    for (let i = 0; i < stillInLine.length; i += 64) {
      await Promise.all(stillInLine.slice(i, i + 64).map((t) => t.leave().catch((err) => errs.add(err))));
    }
    redeemMs.sort((a, b) => a - b);
    return result(system, "tickets1k", o.round, grants.length, usage, errs, {
      rssBytes: rss.peak(),
      figures: {
        ...lineFigures(grants, true),
        redeems: redeemMs.length,
        redeemsPerSec: redeemMs.length / usage.seconds,
        ...(redeemMs.length
          ? { redeemP50Ms: ms(percentile(redeemMs, 50)), redeemP99Ms: ms(percentile(redeemMs, 99)) }
          : {}),
      },
    });
  });
}
