import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../../src/node/local-etcd.js";
import { buildService } from "../build.js";

const repo = new URL("../..", import.meta.url).pathname;

export type Transport = "grpc" | "http";

/** Clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
export const CLK_TCK = (() => {
  const out = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const n = Number(out.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** Resident memory (bytes) and CPU time (seconds, user + system) of a process, from /proc. */
export interface ProcSample {
  rssBytes: number;
  cpuSeconds: number;
}

export function readProc(pid: number | undefined): ProcSample | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces; fields after it are space-separated,
    // starting with field 3 (state). utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { rssBytes: Number(rss?.[1] ?? 0) * 1024, cpuSeconds: ticks / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** CPU time (seconds) the whole machine spent busy and in total, summed over cores, from /proc/stat. */
export function readMachineCpu(): { busySeconds: number; totalSeconds: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const t = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const total = t.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (t[3] ?? 0) + (t[4] ?? 0);
  return { busySeconds: (total - idle) / CLK_TCK, totalSeconds: total / CLK_TCK };
}

/** Samples the summed RSS of some processes (a service's instances) every `everyMs` and keeps the peak. */
export function rssSampler(pids: readonly number[], everyMs = 100) {
  let peak = 0;
  const take = () => {
    const sum = pids.reduce((n, pid) => n + (readProc(pid)?.rssBytes ?? 0), 0);
    if (sum > peak) peak = sum;
  };
  take();
  const timer = setInterval(take, everyMs);
  timer.unref();
  return {
    /** Peak since start or the last reset, sampling once more now. */
    peak(): number {
      take();
      return peak;
    },
    reset() {
      peak = 0;
      take();
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/** The soft limit of open files of this process (Node raises it to the hard limit at start; children inherit it). */
export function openFilesLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return line?.[1] === "unlimited" ? Number.POSITIVE_INFINITY : line ? Number(line[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The services' LEASEHOLD_MAX_WAITERS (the production default): waiting acquires beyond it are refused (too-many-waiters). */
export const SERVICE_MAX_WAITERS = 10_000;

export interface ServiceProcess {
  readonly url: string;
  /** PID of the Node process that serves HTTP. */
  readonly pid: number;
  stop(): Promise<void>;
  /** Last lines the service printed (for error messages). */
  output(): string;
}

/**
 * The service's sources at a git revision, extracted under `dir` (nothing in the
 * repository changes), with this repository's node_modules linked in. Lets one bench
 * binary measure an older version: `--ref=HEAD` is the last commit, without the
 * working tree's edits.
 */
export function checkoutAt(ref: string, dir: string): { root: string; commit: string } {
  const rev = spawnSync("git", ["-C", repo, "rev-parse", "--verify", `${ref}^{commit}`], { encoding: "utf8" });
  const commit = rev.stdout?.trim();
  if (rev.status !== 0 || !commit) throw new Error(`--ref: ${ref} is not a commit: ${rev.stderr}`);
  mkdirSync(dir, { recursive: true });
  const archive = spawnSync(
    "git",
    ["-C", repo, "archive", "--format=tar", commit, "src", "package.json", "tsconfig.json"],
    {
      maxBuffer: 256 * 2 ** 20,
    },
  );
  if (archive.status !== 0) throw new Error(`git archive ${commit} failed: ${archive.stderr?.toString()}`);
  const untar = spawnSync("tar", ["-x", "-C", dir], { input: archive.stdout });
  if (untar.status !== 0) throw new Error(`tar failed: ${untar.stderr?.toString()}`);
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"), "dir");
  return { root: dir, commit };
}

/** How a checkout's service runs in production: `node` arguments, and the script that serves. */
export interface ServiceCommand {
  args: string[];
  entry: string;
}

const commands = new Map<string, Promise<ServiceCommand>>();

/**
 * What production runs, for a checkout: its package.json's `start:prod` (`[exec] node
 * [flags] dist/main.js`) after building it with scripts/build.ts (once per checkout and bench
 * run). A checkout from before the build existed ran `node --import tsx
 * src/node/main.ts` (a single Node process: tsx's CLI would run the entry in a child
 * process of its own); that is what it gets, so `--ref` compares like with like.
 */
export function serviceCommand(root: string): Promise<ServiceCommand> {
  let command = commands.get(root);
  if (!command) {
    command = (async () => {
      const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts?: Record<string, string> };
      const script = pkg.scripts?.["start:prod"];
      if (script === undefined) {
        return { args: ["--import", "tsx", join(root, "src", "node", "main.ts")], entry: "src/node/main.ts" };
      }
      // A leading `exec` makes the script shell replace itself with node.
      const [node, ...words] = script
        .trim()
        .replace(/^exec\s+/, "")
        .split(/\s+/);
      const entry = words.at(-1);
      if (node !== "node" || !entry?.endsWith(".js")) {
        throw new Error(`start:prod in ${root}/package.json is not "node [flags] <file>.js": ${script}`);
      }
      await buildService(root);
      return { args: [...words.slice(0, -1), join(root, entry)], entry };
    })();
    commands.set(root, command);
  }
  return command;
}

/**
 * One leasehold service as its own process, started as production starts it
 * (`serviceCommand`): one Node process serves HTTP, so /proc/<pid> is the server.
 */
export async function startService(opts: {
  etcdEndpoint: string;
  transport: Transport;
  /** Checkout to run (its src/ and package.json); default this repository. */
  root?: string;
  env?: Record<string, string>;
}): Promise<ServiceProcess> {
  const root = opts.root ?? repo;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_") && !k.startsWith("LEASEHOLD_")),
  );
  const env = {
    ...inherited,
    ETCD_ENDPOINTS: opts.etcdEndpoint,
    ETCD_TRANSPORT: opts.transport,
    PORT: String(port),
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    LEASEHOLD_MAX_WAITERS: String(SERVICE_MAX_WAITERS),
    LEASEHOLD_MAX_STREAMS: "10000",
    ...opts.env,
  };
  const command = await serviceCommand(root);
  // Opt-in node flags for the service (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`), before its own.
  const nodeArgs = (process.env.BENCH_SERVICE_NODE_ARGS ?? "").split(/\s+/).filter((a) => a !== "");
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, ...command.args], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const pid = child.pid;
  if (pid === undefined) throw new Error("could not start the leasehold service");

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 12_000);
    await exited;
    clearTimeout(timer);
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`leasehold (${opts.transport}) exited while starting:\n${out}`);
    }
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {}
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`leasehold (${opts.transport}) did not become ready:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // The process we measure must be the server itself, not a launcher.
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  if (!cmdline.some((a) => a.endsWith(command.entry))) {
    await stop();
    throw new Error(`process ${pid} is not the leasehold server: ${cmdline.join(" ")}`);
  }
  return { url, pid, stop, output: () => out };
}
