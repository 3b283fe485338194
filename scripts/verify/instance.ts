import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { freePort } from "../../src/node/local-etcd.js";
import { atCheckerEnd } from "./checker-end.js";

const repo = new URL("../..", import.meta.url).pathname;
const tsx = join(repo, "node_modules", ".bin", "tsx");
/** Where instances run `src/node/main.ts` from: this repository, or a patched copy (broken.ts). */
let tree = repo;

/** Runs the instances started from now on from the copy of the source tree at `root` (default: this repository). */
export function useServiceTree(root: string = repo): void {
  tree = root;
}

export type Transport = "grpc" | "http";

export interface InstanceOptions {
  endpoints: string[];
  transport: Transport;
  /** Deadline of every etcd call (ETCD_TIMEOUT_MS). */
  etcdTimeoutMs: number;
  prefix: string;
  /** More environment (e.g. LEASEHOLD_API_KEYS). */
  env?: Record<string, string>;
  /** Listen on this port (default: a free one). */
  port?: number;
  /** A command that runs the service (e.g. `ip netns exec <ns>`); it must exec it, keeping the PID. */
  wrapper?: string[];
}

/**
 * One leasehold service as a real process (`tsx src/node/main.ts`), so SIGKILL is real.
 * tsx runs the entry in a child process of its own, so each instance is started in a
 * process group of its own and killed by group: nothing outlives a kill.
 */
export interface ServiceInstance {
  readonly url: string;
  readonly port: number;
  /** PID of the process group leader (the tsx process). */
  readonly pid: number | undefined;
  isUp(): boolean;
  /** SIGKILLs the whole process group and waits for it to go. */
  kill(): Promise<void>;
  /** Starts it again on the same port; resolves once /healthz answers. */
  start(): Promise<void>;
  /** Graceful stop (SIGTERM to the group leader, which passes it on), SIGKILL after 10 s. */
  stop(): Promise<void>;
  /** Lines the service logged at level error, and anything it printed on stderr. */
  errors(): string[];
  /** How many times the process exited without being told to. */
  readonly crashes: number;
}

/**
 * How long an instance under test keeps its waiters' session lease once nobody waits
 * (LEASEHOLD_WAITER_SESSION_IDLE; 10 s by default). Shorter than the default so the
 * leak check at a scenario's end (every lease gone) waits seconds less; the lease's
 * life is otherwise the same.
 */
export const WAITER_SESSION_IDLE_MS = 2_000;

export async function startInstance(opts: InstanceOptions): Promise<ServiceInstance> {
  const port = opts.port ?? (await freePort());
  const root = tree;
  const url = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    ...inheritedEnv(),
    ETCD_ENDPOINTS: opts.endpoints.join(","),
    ETCD_TRANSPORT: opts.transport,
    ETCD_TIMEOUT_MS: String(opts.etcdTimeoutMs),
    LEASEHOLD_PREFIX: opts.prefix,
    PORT: String(port),
    HOST: "127.0.0.1",
    LOG_LEVEL: process.env.VERIFY_LOGS ? "info" : "warn",
    LEASEHOLD_WAITER_SESSION_IDLE: String(WAITER_SESSION_IDLE_MS / 1_000),
    ...opts.env,
  };
  // VERIFY_LOGS=<dir>: every line the instance prints (each request, at level info) goes
  // to <dir>/instance-<port>.log as well, to look into a violation afterwards.
  const log = process.env.VERIFY_LOGS ? join(process.env.VERIFY_LOGS, `instance-${port}.log`) : undefined;
  if (log) mkdirSync(dirname(log), { recursive: true });
  let child: ChildProcess | undefined;
  /** Removes the running process group from those killed when the checker ends. */
  let untrack: (() => void) | undefined;
  let exited: Promise<void> = Promise.resolve();
  let expectingExit = false;
  let crashes = 0;
  const errors: string[] = [];
  const keep = (line: string) => {
    if (errors.length < 200) errors.push(line);
  };

  const launch = async () => {
    expectingExit = false;
    const [cmd = tsx, ...args] = [...(opts.wrapper ?? []), tsx, join(root, "src", "node", "main.ts")];
    const proc = spawn(cmd, args, { cwd: root, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    // Its own process group (so a kill reaches tsx's child too) is out of reach of the
    // checker's Ctrl-C: it ends with the checker, however that ends.
    const pgid = proc.pid;
    untrack =
      pgid === undefined
        ? undefined
        : atCheckerEnd(() => {
            try {
              process.kill(-pgid, "SIGKILL");
            } catch {}
          });
    exited = new Promise<void>((r) =>
      proc.once("exit", () => {
        if (!expectingExit) crashes++;
        r();
      }),
    );
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
      const lines = stderr.split("\n");
      stderr = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) keep(l);
    });
    let stdout = "";
    if (log) {
      proc.stdout?.on("data", (d: Buffer) => appendFileSync(log, d));
      proc.stderr?.on("data", (d: Buffer) => appendFileSync(log, d));
    }
    proc.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
      const lines = stdout.split("\n");
      stdout = lines.pop() ?? "";
      for (const l of lines) if (/"level":\s*("error"|50|60)/.test(l)) keep(l);
    });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`leasehold exited while starting:\n${errors.join("\n")}`);
      }
      try {
        if ((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) })).status === 200) return;
      } catch {}
      await new Promise((r) => setTimeout(r, 50));
    }
    await killGroup("SIGKILL");
    throw new Error(`leasehold did not answer /healthz at ${url} within 30 s`);
  };

  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const killGroup = async (signal: NodeJS.Signals) => {
    const proc = child;
    if (!proc?.pid) return;
    expectingExit = true;
    try {
      process.kill(-proc.pid, signal); // the group we created with detached: true
    } catch {}
    await exited;
    if (signal === "SIGKILL") untrack?.();
  };

  await launch();
  return {
    url,
    port,
    get pid() {
      return child?.pid;
    },
    get crashes() {
      return crashes;
    },
    isUp: alive,
    kill: () => killGroup("SIGKILL"),
    start: launch,
    async stop() {
      const proc = child;
      if (!proc?.pid || !alive()) return;
      expectingExit = true;
      const timer = setTimeout(() => {
        try {
          if (proc.pid) process.kill(-proc.pid, "SIGKILL");
        } catch {}
      }, 10_000);
      proc.kill("SIGTERM");
      await exited;
      clearTimeout(timer);
      // The group leader is gone; make sure its child is too.
      try {
        process.kill(-proc.pid, "SIGKILL");
      } catch {}
      untrack?.();
    },
    errors: () => [...errors],
  };
}

/** The checker's environment without leasehold's and etcd's own settings. */
function inheritedEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("ETCD_") && !k.startsWith("LEASEHOLD_")) out[k] = v;
  }
  return out;
}
