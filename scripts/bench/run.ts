/**
 * `npm run bench`: leasehold against the direct `etcd3` baseline and etcd's own lock
 * API, on one etcd, in alternating rounds. See BENCHMARKS.md.
 *
 *   npm run bench                      full run (a few minutes)
 *   npm run bench -- --smoke           tiny run (BENCH_SMOKE=1 too), proves it works
 *   options: --out=FILE (BENCH_OUT) --rounds=N --seconds=S --ref=COMMIT
 *            --cases=c1,c32,c256,contention,waiters,fair64x3,sem8x64,tickets1k,scale1,scale2,scale4,
 *                    waiters10k,sse1k,blocking1k
 *            --systems=etcd3,leasehold-grpc,leasehold-http,etcd-lock,client-grpc,etcd-lock-fetch
 *
 * Table on stdout, progress on stderr, JSON in bench-results/latest.json (smoke:
 * bench-results/smoke.json).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { type LocalEtcd, startLocalEtcd } from "../../src/node/local-etcd.js";
import {
  CASE_IDS,
  CASE_SYSTEMS,
  type CaseId,
  LINE_CASES,
  type RoundResult,
  runClosedLoop,
  runLine,
  runTickets,
  runWaiters,
  SCALE_CASES,
} from "./cases.js";
import {
  FEED_CASE_IDS,
  type FeedCaseId,
  type FeedResult,
  feedTable,
  isFeedCase,
  runBlocking,
  runSse,
} from "./feeds.js";
import {
  checkoutAt,
  openFilesLimit,
  readProc,
  SERVICE_MAX_WAITERS,
  type ServiceProcess,
  startService,
} from "./procs.js";
import {
  aggregate,
  costTable,
  lineComparisons,
  linesTable,
  scaleTable,
  table,
  targetLines,
  targets,
} from "./report.js";
import { CLUSTER_SIZE, scaleOut } from "./scale.js";
import {
  clientSystem,
  etcd3System,
  etcdLockSystem,
  FETCH_SYSTEM_IDS,
  leaseholdSystem,
  loadClient,
  SYSTEM_IDS,
  type System,
  type SystemId,
} from "./systems.js";

const repo = new URL("../..", import.meta.url).pathname;

interface Options {
  smoke: boolean;
  out: string;
  rounds: number;
  /** Length of each throughput / contention round. */
  roundMs: number;
  /** Each system's warm-up before the first case (ms). */
  warmMs: number;
  /** The warm-up of a service started after that (ms). */
  rewarmMs: number;
  cases: (CaseId | FeedCaseId)[];
  systems: SystemId[];
  contenders: number;
  contentionWait: number;
  waiters: number;
  waiterNames: number;
  waiterWait: number;
  /** The 10,000-waiter case: waiters, names they spread over, and their wait. */
  bigWaiters: number;
  bigWaiterNames: number;
  bigWaiterWait: number;
  bigWaiterJoining: number;
  /** Service instances per transport in the fair case (each caller bound to one). */
  instances: number;
  fairCallers: number;
  semLimit: number;
  semCallers: number;
  /** Wait of the fair and semaphore cases' acquires. */
  lineWait: number;
  /** How long a grant is held in the line cases. */
  holdMs: number;
  ticketHolders: number;
  ticketNames: number;
  ticketMs: number;
  redeemEveryMs: number;
  /** Subscribers of each change-feed case, and how long its driver makes changes. */
  feedSubscribers: number;
  feedMs: number;
  /** Git revision whose service to run; default the working tree. */
  ref?: string;
}

const USAGE = `usage: npm run bench -- [options]   (BENCHMARKS.md says what each case and figure is)
  --smoke             a tiny run of every case (also BENCH_SMOKE=1)
  --cases=A,B         cases to run (default all): ${[...CASE_IDS, ...FEED_CASE_IDS].join(", ")}
  --systems=A,B       systems to run (default all): ${SYSTEM_IDS.join(", ")}
  --rounds=N          rounds of each case (default 3)
  --seconds=S         length of a throughput round (default 3)
  --ref=COMMIT        run the service as it was at a commit
  --out=FILE          where the JSON goes (default bench-results/latest.json)
environment: ETCD_BIN (etcd to run), BENCH_SERVICE_NODE_ARGS (node flags for the services)`;

/** A mistake in the command line: said in one line, with where the options are listed. */
class UsageError extends Error {}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    process.exit(0);
  }
  try {
    return parseGiven(argv, env);
  } catch (err) {
    throw new UsageError(
      `${err instanceof Error ? err.message : String(err)} (npm run bench -- --help lists the options)`,
    );
  }
}

function parseGiven(argv: string[], env: NodeJS.ProcessEnv): Options {
  const flags = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m?.[1]) throw new Error(`unknown argument ${a}`);
    flags.set(m[1], m[2] ?? "true");
  }
  for (const k of flags.keys()) {
    if (!["smoke", "out", "rounds", "seconds", "cases", "systems", "ref"].includes(k))
      throw new Error(`unknown option --${k}`);
  }
  const smoke = flags.has("smoke") || env.BENCH_SMOKE === "1" || env.BENCH_SMOKE === "true";
  const list = <T extends string>(v: string | undefined, all: readonly T[], what: string): T[] => {
    if (!v) return [...all];
    const items = v.split(",").map((s) => s.trim()) as T[];
    for (const i of items) if (!all.includes(i)) throw new Error(`unknown ${what} ${i} (one of ${all.join(", ")})`);
    return items;
  };
  const num = (v: string | undefined, def: number, what: string) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${what} must be a positive number`);
    return n;
  };
  return {
    smoke,
    out: resolve(
      flags.get("out") ?? env.BENCH_OUT ?? join(repo, "bench-results", smoke ? "smoke.json" : "latest.json"),
    ),
    rounds: Math.round(num(flags.get("rounds"), smoke ? 1 : 3, "rounds")),
    roundMs: num(flags.get("seconds"), smoke ? 0.5 : 3, "seconds") * 1000,
    // A process keeps getting cheaper per cycle for its first ~15 s under load (the JIT,
    // V8's heap sizing), the callers' process as much as the service: five back-to-back
    // rounds of the official client at c=32 ran 833, 978, 1,037, 1,032 and 1,145 cycles/s,
    // service 0.64 → 0.45 and client 1.02 → 0.69 ms of CPU per cycle (BENCHMARKS.md,
    // session 10). So every system runs 15 s before the first case (2 s until session 10),
    // and a service started later (the waiter cases, scale-out) 5 s.
    warmMs: smoke ? 300 : 15_000,
    rewarmMs: smoke ? 300 : 5_000,
    cases: list(flags.get("cases"), [...CASE_IDS, ...FEED_CASE_IDS], "case"),
    systems: list(flags.get("systems"), SYSTEM_IDS, "system"),
    // The smoke run keeps every row but shrinks the crowds and the waits, to stay well
    // under a minute even when waiters time out.
    contenders: smoke ? 8 : 64,
    contentionWait: smoke ? 3 : 10,
    waiters: smoke ? 40 : 1000,
    waiterNames: 10,
    waiterWait: smoke ? 5 : 20,
    // 1,000 per name: the queues are 10 times as deep as in `waiters`, with as many names
    // handed down at once (10), so the wake-ups show what a long line costs a handoff.
    bigWaiters: smoke ? 500 : 10_000,
    bigWaiterNames: 10,
    // Long enough for the last of a name's line to be reached (parking, then a whole line handed down).
    bigWaiterWait: 60,
    // Arriving in a steady stream: at most this many acquires on their way into the line at once.
    bigWaiterJoining: smoke ? 100 : 500,
    instances: 3,
    fairCallers: smoke ? 8 : 64,
    semLimit: 8,
    semCallers: smoke ? 16 : 64,
    lineWait: smoke ? 3 : 10,
    holdMs: smoke ? 1 : 2,
    ticketHolders: smoke ? 40 : 1000,
    ticketNames: smoke ? 4 : 10,
    // Polls once a second: a round must see many turns of each name's line.
    ticketMs: smoke ? 1500 : Math.max(10_000, num(flags.get("seconds"), 3, "seconds") * 1000),
    redeemEveryMs: smoke ? 200 : 1000,
    feedSubscribers: smoke ? 20 : 1000,
    feedMs: smoke ? 600 : 10_000,
    ...(flags.get("ref") ? { ref: flags.get("ref") } : {}),
  };
}

function caseLabel(o: Options) {
  return (c: CaseId): string => {
    switch (c) {
      case "c1":
        return "c=1";
      case "c32":
        return "c=32";
      case "c256":
        return "c=256";
      case "contention":
        return `${o.contenders} on 1 name`;
      case "waiters":
        return `${o.waiters} waiters/${o.waiterNames} names`;
      case "waiters10k":
        return `${o.bigWaiters} waiters/${o.bigWaiterNames} names`;
      case "scale1":
      case "scale2":
      case "scale4":
        return `scale-out c=32: ${SCALE_CASES[c]} inst., ${CLUSTER_SIZE} etcd`;
      case "fair64x3":
        return `fair: ${o.fairCallers} on 1 name, ${o.instances} inst.`;
      case "sem8x64":
        return `semaphore ${o.semLimit}, ${o.semCallers} callers`;
      case "tickets1k":
        return `${o.ticketHolders} tickets/${o.ticketNames} names`;
    }
  };
}

function machine(etcdBin: string) {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const etcdVersion = /etcd Version: (\S+)/.exec(
    spawnSync(etcdBin, ["--version"], { encoding: "utf8" }).stdout ?? "",
  )?.[1];
  return {
    nproc: availableParallelism(),
    memoryGb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    node: process.version,
    etcd: etcdVersion ?? "unknown",
    loadavgAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** The service runs from this checkout: its HEAD, and whether src/ has uncommitted edits. */
function workingTree() {
  const git = (...args: string[]) => spawnSync("git", ["-C", repo, ...args], { encoding: "utf8" }).stdout?.trim() ?? "";
  return { ref: "working tree", commit: git("rev-parse", "HEAD"), dirty: git("status", "--porcelain", "src") !== "" };
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One change-feed case on each leasehold system, each on a fresh instance so its RSS is
 * the subscribers', not what earlier cases left on the heap.
 */
async function runFeedCase(
  c: FeedCaseId,
  systems: System[],
  start: (id: "leasehold-grpc" | "leasehold-http") => Promise<System>,
  warmUp: (s: System) => Promise<void>,
  etcdEndpoint: string,
  names: string,
  o: Options,
  out: FeedResult[],
) {
  for (const [i, s] of systems.entries()) {
    const proc = s.services[0];
    if (!proc || (s.id !== "leasehold-grpc" && s.id !== "leasehold-http")) continue;
    await proc.stop();
    const fresh = await start(s.id);
    await warmUp(fresh);
    systems[i] = fresh;
    const feedOptions = {
      subscribers: o.feedSubscribers,
      durationMs: o.feedMs,
      gapMs: 100,
      names: `${names}-${s.id}`,
      etcdEndpoint,
    };
    const r = c === "sse1k" ? await runSse(fresh, feedOptions) : await runBlocking(fresh, feedOptions);
    out.push(r);
    log(
      `  ${c.padEnd(22)} ${s.id.padEnd(15)} ${r.delivered}/${r.expected} delivered, p99 ${r.p99Ms ?? "–"} ms, ` +
        `RSS ${r.serviceRssIdleMb} → ${r.serviceRssMb} MB, etcd watches ${r.etcdWatchesBefore} → ${r.etcdWatches}` +
        (r.errors ? `, errors ${r.errors}: ${r.firstError}` : ""),
    );
  }
}

async function main() {
  const o = parseOptions(process.argv.slice(2), process.env);
  const startedAt = new Date();
  const etcdBin = process.env.ETCD_BIN || "etcd";
  const info = machine(etcdBin);
  log(
    `bench: ${o.smoke ? "smoke" : "full"} run, ${o.rounds} round(s) × ${o.roundMs / 1000} s; ` +
      `${info.nproc} cores, ${info.cpu}, Node ${info.node}, etcd ${info.etcd}, load ${info.loadavgAtStart.join(" ")}`,
  );

  const busy = info.loadavgAtStart[0] ?? 0;
  if (busy > info.nproc) {
    log(
      `bench: warning: load average ${busy} on ${info.nproc} cores; other work will skew the figures (see "other CPU %")`,
    );
  }

  const dir = mkdtempSync(join(tmpdir(), "leasehold-bench-"));
  let etcd: LocalEtcd | undefined;
  const services: ServiceProcess[] = [];
  let scale: ReturnType<typeof scaleOut> | undefined;
  const cleanup = async () => {
    await Promise.all(services.map((s) => s.stop().catch(() => {})));
    await scale?.stop().catch(() => {});
    await etcd?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = () => {
    log("bench: interrupted, stopping what it started");
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    const service = o.ref ? checkoutAt(o.ref, join(dir, "service")) : undefined;
    const serviceInfo = service ? { ref: o.ref, commit: service.commit, dirty: false } : workingTree();
    log(
      `bench: leasehold from ${serviceInfo.ref} (${serviceInfo.commit}${serviceInfo.dirty ? " + uncommitted src/" : ""})`,
    );
    etcd = await startLocalEtcd({ dataDir: join(dir, "etcd"), bin: etcdBin });
    const etcdEnv = { etcdEndpoint: etcd.endpoint, etcdPid: etcd.pid };
    const tag = `b${Date.now().toString(36)}`;
    const startProc = async (
      transport: "grpc" | "http",
      etcdEndpoints = etcd?.endpoint ?? "",
    ): Promise<ServiceProcess> => {
      const proc = await startService({
        etcdEndpoint: etcdEndpoints,
        transport,
        ...(service ? { root: service.root } : {}),
      });
      services.push(proc);
      return proc;
    };
    const startLeasehold = async (id: "leasehold-grpc" | "leasehold-http", etcdEndpoints?: string): Promise<System> =>
      leaseholdSystem(id, [await startProc(id === "leasehold-grpc" ? "grpc" : "http", etcdEndpoints)]);
    const stopService = async (proc: ServiceProcess) => {
      await proc.stop();
      services.splice(services.indexOf(proc), 1);
    };
    /** More instances of a leasehold system's transport, for the fair case; `stop` ends only those. */
    const withInstances = async (s: System) => {
      const first = s.services[0];
      if (!first || (s.id !== "leasehold-grpc" && s.id !== "leasehold-http"))
        return { system: s, stop: async () => {} };
      const extra: ServiceProcess[] = [];
      for (let i = 1; i < o.instances; i++) extra.push(...(await startLeasehold(s.id)).services);
      const system = leaseholdSystem(s.id, [first, ...extra]);
      await warmUp(system);
      return {
        system,
        stop: async () => {
          for (const proc of extra) await stopService(proc);
        },
      };
    };
    const warmUp = async (s: System, env = etcdEnv, durationMs = o.rewarmMs) => {
      await runClosedLoop(s, env, {
        caseId: "c32",
        round: 0,
        concurrency: 16,
        durationMs,
        names: `${tag}-warm-${s.id}-${Date.now().toString(36)}`,
      });
    };
    scale = scaleOut({
      startService: async (id, endpoints) => (await startLeasehold(id, endpoints)).services[0] as ServiceProcess,
      stopService,
      warmUp,
      log,
    });
    const lastScaleCase = o.cases.findLastIndex((c) => !isFeedCase(c) && SCALE_CASES[c] !== undefined);
    const systems: System[] = [];
    // The systems called with fetch run only the throughput cases: without one, they need no process or warm-up.
    const runs = (id: SystemId) => o.cases.some((c) => !isFeedCase(c) && CASE_SYSTEMS[c].includes(id));
    for (const id of o.systems) {
      if (FETCH_SYSTEM_IDS.includes(id) && !runs(id)) continue;
      if (id === "etcd3") systems.push(etcd3System(etcd.endpoint));
      else if (id === "etcd-lock") systems.push(etcdLockSystem(etcd.endpoint));
      else if (id === "etcd-lock-fetch") systems.push(etcdLockSystem(etcd.endpoint, "fetch"));
      else if (id === "client-grpc") {
        const client = await loadClient(service?.root ?? repo, dir);
        systems.push(clientSystem([await startProc("grpc")], client));
      } else systems.push(await startLeasehold(id));
    }

    log("bench: warming up");
    for (const s of systems) await warmUp(s, etcdEnv, o.warmMs);
    /** Service RSS after start and warm-up, before any measured case (fresh processes). */
    const idleRss: { system: SystemId; when: string; rssMb: number }[] = [];
    const readIdleRss = (when: string) => {
      for (const s of systems) {
        const pid = s.services[0]?.pid;
        if (pid !== undefined) idleRss.push({ system: s.id, when, rssMb: (readProc(pid)?.rssBytes ?? 0) / 2 ** 20 });
      }
    };
    readIdleRss("start");

    const results: RoundResult[] = [];
    const feeds: FeedResult[] = [];
    for (const [caseIndex, c] of o.cases.entries()) {
      if (isFeedCase(c)) {
        await runFeedCase(c, systems, startLeasehold, warmUp, etcdEnv.etcdEndpoint, `${tag}-${c}`, o, feeds);
        continue;
      }
      if (c === "waiters10k") {
        // Node raises its soft limit of open files to the hard one, and the services
        // inherit it: each side needs a socket per waiter.
        const limit = openFilesLimit();
        if (limit !== undefined && limit < o.bigWaiters + 1024) {
          throw new Error(
            `waiters10k needs ${o.bigWaiters + 1024} open files per process (a socket per waiter); ` +
              `the hard limit is ${limit}: raise it (ulimit -Hn, /etc/security/limits.conf, or systemd's LimitNOFILE)`,
          );
        }
        if (o.bigWaiters > SERVICE_MAX_WAITERS) {
          throw new Error(`waiters10k: ${o.bigWaiters} waiters exceed the services' cap of ${SERVICE_MAX_WAITERS}`);
        }
      }
      if ((c === "waiters" || c === "waiters10k") && caseIndex > 0) {
        // Fresh services, so the waiters' RSS is theirs, not what earlier cases left on the heap.
        log(`bench: restarting the leasehold services for the ${c} case`);
        for (const [i, s] of systems.entries()) {
          const proc = s.services[0];
          if (!proc || (s.id !== "leasehold-grpc" && s.id !== "leasehold-http")) continue;
          await stopService(proc);
          const fresh = await startLeasehold(s.id);
          await warmUp(fresh);
          systems[i] = fresh;
        }
        readIdleRss(`before ${c}`);
      }
      let inCase = systems.filter((s) => CASE_SYSTEMS[c].includes(s.id));
      let env = etcdEnv;
      const scaleInstances = SCALE_CASES[c];
      if (scaleInstances !== undefined) {
        ({ systems: inCase, env } = await scale.prepare(
          scaleInstances,
          inCase.map((s) => s.id),
        ));
      }
      const extras: { stop(): Promise<void> }[] = [];
      if (c === "fair64x3") {
        log(`bench: ${o.instances} instances of each leasehold service for the fair case`);
        for (const [i, s] of inCase.entries()) {
          const more = await withInstances(s);
          extras.push(more);
          inCase[i] = more.system;
        }
      }
      for (let round = 1; round <= o.rounds; round++) {
        // Rotate who goes first, so no system always runs right after the same one.
        const order = inCase.map((_, i) => inCase[(i + round - 1) % inCase.length] as System);
        for (const s of order) {
          const names = `${tag}-${s.id}-${c}-r${round}`;
          let r: RoundResult;
          if (c === "fair64x3" || c === "sem8x64") {
            const sem = c === "sem8x64";
            r = await runLine(s, env, {
              caseId: c,
              round,
              callers: sem ? o.semCallers : o.fairCallers,
              durationMs: o.roundMs,
              name: names,
              waitSeconds: o.lineWait,
              holdMs: o.holdMs,
              ...(sem ? { limit: o.semLimit } : {}),
            });
          } else if (c === "tickets1k") {
            r = await runTickets(s, env, {
              round,
              holders: o.ticketHolders,
              names: o.ticketNames,
              durationMs: o.ticketMs,
              redeemEveryMs: o.redeemEveryMs,
              holdMs: o.holdMs,
              namePrefix: names,
            });
          } else if (c === "waiters" || c === "waiters10k") {
            const big = c === "waiters10k";
            r = await runWaiters(s, env, {
              caseId: c,
              round,
              waiters: big ? o.bigWaiters : o.waiters,
              names: big ? o.bigWaiterNames : o.waiterNames,
              waitSeconds: big ? o.bigWaiterWait : o.waiterWait,
              ...(big ? { joining: o.bigWaiterJoining } : {}),
              namePrefix: names,
              log,
            });
          } else {
            const contended = c === "contention";
            r = await runClosedLoop(s, env, {
              caseId: c,
              round,
              concurrency: c === "c1" ? 1 : c === "c32" || scaleInstances ? 32 : contended ? o.contenders : 256,
              durationMs: o.roundMs,
              names,
              ...(contended ? { contended: { waitSeconds: o.contentionWait } } : {}),
            });
          }
          results.push(r);
          log(
            `  ${caseLabel(o)(c).padEnd(22)} r${round} ${s.id.padEnd(15)} ${Math.round(r.cyclesPerSec)
              .toString()
              .padStart(6)}/s` +
              (r.p50Ms !== undefined ? ` p50 ${r.p50Ms.toFixed(2)} ms` : "") +
              (r.wakeP99Ms !== undefined ? ` wake p99 ${r.wakeP99Ms.toFixed(1)} ms` : "") +
              (r.parkSeconds !== undefined ? ` parked ${r.parked} in ${r.parkSeconds.toFixed(1)} s` : "") +
              (r.waitP99Ms !== undefined ? ` wait p99 ${r.waitP99Ms.toFixed(1)} ms` : "") +
              (r.outOfOrder !== undefined ? ` out of order ${r.outOfOrder}/${r.ordered}` : "") +
              (r.maxHolders !== undefined ? ` max holders ${r.maxHolders}` : "") +
              (r.redeemsPerSec !== undefined ? ` redeems ${Math.round(r.redeemsPerSec)}/s` : "") +
              (r.errors || r.timeouts ? ` errors ${r.errors} timeouts ${r.timeouts}: ${r.firstError}` : ""),
          );
          await pause(200);
        }
      }
      for (const more of extras) await more.stop();
      if (caseIndex === lastScaleCase) await scale.stop();
    }

    const rows = aggregate(results, caseLabel(o));
    const ts = targets(results, rows);
    const finishedAt = new Date();
    const report = {
      version: 1,
      kind: o.smoke ? "smoke" : "full",
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      machine: { ...info, loadavgAtEnd: loadavg().map((l) => Math.round(l * 100) / 100) },
      options: o,
      service: serviceInfo,
      serviceIdleRssMb: idleRss,
      rows,
      targets: ts,
      rounds: results,
      feeds,
    };
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, `${JSON.stringify(report, null, 2)}\n`);

    const lineRows = rows.filter((r) => LINE_CASES.includes(r.case));
    const lockRows = rows.filter((r) => !LINE_CASES.includes(r.case));
    const scaleRows = rows.filter((r) => SCALE_CASES[r.case] !== undefined);
    const out = [
      `leasehold bench (${report.kind}), ${finishedAt.toISOString()}: ${info.nproc} cores, ${info.cpu}, ` +
        `${info.memoryGb} GB, Node ${info.node}, etcd ${info.etcd}; median of ${o.rounds} round(s)` +
        (o.smoke ? "" : ` of ${o.roundMs / 1000} s`) +
        `; leasehold ${serviceInfo.commit.slice(0, 7)}${serviceInfo.dirty ? "+uncommitted" : ""}`,
      ...(lockRows.length ? ["", table(lockRows)] : []),
      ...(lineRows.length
        ? ["", "Fair line, semaphores, tickets:", linesTable(lineRows), lineComparisons(results)]
        : []),
      ...(scaleRows.length
        ? ["", `Scale-out on a ${CLUSTER_SIZE}-member etcd (c=32):`, scaleTable(scaleRows, info.nproc)]
        : []),
      "",
      "Targets:",
      targetLines(ts),
      "",
      ...(feeds.length ? ["Change feeds (one instance each):", feedTable(feeds), ""] : []),
      `Service RSS after start + warm-up: ${idleRss.map((r) => `${r.system} ${Math.round(r.rssMb)} MB (${r.when})`).join(", ")}`,
      "",
      "Where a cycle's time goes:",
      costTable(rows),
      "",
      `JSON: ${o.out} (${Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000)} s)`,
    ];
    process.stdout.write(`${out.join("\n")}\n`);
  } finally {
    await cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    if (err instanceof UsageError) {
      console.error(err.message);
      process.exit(64);
    }
    console.error(err);
    process.exit(1);
  },
);
