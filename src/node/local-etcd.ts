import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";

/**
 * A single-node etcd started as a child process on loopback. Used by development mode
 * (`npm start` without ETCD_ENDPOINTS) and by the tests, which always run real etcd.
 */
export interface LocalEtcd {
  /** Client URL, e.g. http://127.0.0.1:23790 */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly dataDir: string;
  readonly pid: number | undefined;
  /** Stops etcd (SIGTERM, SIGKILL after a grace period). Data stays on disk. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data dir (after `stop`). */
  restart(): Promise<void>;
}

export interface LocalEtcdOptions {
  dataDir: string;
  /** etcd binary: a path or a name looked up on PATH. Default `ETCD_BIN` or `etcd`. */
  bin?: string;
  clientPort?: number;
  peerPort?: number;
  /** Extra command-line flags. */
  args?: string[];
  /**
   * Serve clients over TLS with these PEM files (paths); `clientCa` also turns on client
   * certificate authentication. Health is then checked on a plain-HTTP metrics port.
   */
  tls?: { cert: string; key: string; clientCa?: string };
  /** Where etcd's own log goes; default: discarded. */
  log?: "inherit" | "ignore";
  startTimeoutMs?: number;
}

export class EtcdNotInstalledError extends Error {
  override name = "EtcdNotInstalledError";
}

/** Another etcd holds the data dir (etcd itself would wait for it without end). */
export class EtcdDataDirInUseError extends Error {
  override name = "EtcdDataDirInUseError";
  constructor(
    readonly dataDir: string,
    readonly pid: number,
    readonly url: string | undefined,
  ) {
    super(`etcd's data dir ${dataDir} is in use by another etcd (pid ${pid}${url ? `, serving ${url}` : ""})`);
  }
}

export function etcdBinary(bin = process.env.ETCD_BIN || "etcd"): string | undefined {
  const probe = spawnSync(bin, ["--version"], { encoding: "utf8" });
  return probe.status === 0 ? bin : undefined;
}

export const INSTALL_HINT =
  "etcd was not found. Install it (Debian/Ubuntu: `sudo apt-get install -y etcd-server`), " +
  "or set ETCD_BIN to the etcd binary, or set ETCD_ENDPOINTS to use an existing cluster.";

/**
 * A loopback port nothing listens on now, for a server about to be started. Drawn at
 * random below the kernel's ephemeral range (which starts at 32768 by default): a port
 * found free in that range can be taken as the local port of any outgoing connection
 * before our server binds it, which on a busy machine (tests opening many connections)
 * happens. Callers that start a server on it still retry on a bind failure.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
  }
  // Everything tried was busy: let the kernel pick one.
  return listenOnce(0);
}

function canListen(port: number): Promise<boolean> {
  return listenOnce(port).then(
    () => true,
    () => false,
  );
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(port, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** A start that failed because a port was taken between choosing it and etcd binding it. */
export class PortTakenError extends Error {
  override name = "PortTakenError";
}

export async function startLocalEtcd(opts: LocalEtcdOptions): Promise<LocalEtcd> {
  // Ports chosen here may be taken before etcd binds them: choose again and retry. Ports
  // the caller chose are the caller's to retry (a cluster's peers must agree on them).
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      const ours = opts.clientPort === undefined && opts.peerPort === undefined;
      if (!(err instanceof PortTakenError) || !ours || attempt >= 5) throw err;
    }
  }
}

async function startOnce(opts: LocalEtcdOptions): Promise<LocalEtcd> {
  const bin = etcdBinary(opts.bin);
  if (!bin) throw new EtcdNotInstalledError(INSTALL_HINT);
  const clientPort = opts.clientPort ?? (await freePort());
  const peerPort = opts.peerPort ?? (await freePort());
  mkdirSync(opts.dataDir, { recursive: true });
  const clientUrl = `${opts.tls ? "https" : "http"}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const metricsUrl = opts.tls ? `http://127.0.0.1:${await freePort()}` : undefined;
  const tlsArgs = opts.tls
    ? [
        "--cert-file",
        opts.tls.cert,
        "--key-file",
        opts.tls.key,
        "--listen-metrics-urls",
        metricsUrl ?? "",
        ...(opts.tls.clientCa ? ["--trusted-ca-file", opts.tls.clientCa, "--client-cert-auth"] : []),
      ]
    : [];
  const args = [
    "--name",
    "leasehold-local",
    "--data-dir",
    opts.dataDir,
    "--listen-client-urls",
    clientUrl,
    "--advertise-client-urls",
    clientUrl,
    "--listen-peer-urls",
    peerUrl,
    "--initial-advertise-peer-urls",
    peerUrl,
    "--initial-cluster",
    `leasehold-local=${peerUrl}`,
    ...tlsArgs,
    ...(opts.args ?? []),
  ];

  let child: ChildProcess | undefined;
  const launch = async () => {
    // etcd waits, without end, for another etcd that holds its data dir to let go (it
    // says so only after 10 s): find that holder first and say who it is.
    const holder = dataDirHolder(opts.dataDir);
    if (holder) throw new EtcdDataDirInUseError(opts.dataDir, holder.pid, holder.url);
    // etcd's log goes to stderr; its last lines explain a failed start.
    const proc = spawn(bin, args, { stdio: ["ignore", opts.log ?? "ignore", "pipe"] });
    child = proc;
    const tail: string[] = [];
    let why: string | undefined;
    let fail: (reason: string) => void = () => {};
    const failure = new Promise<void>((resolve) => {
      fail = (reason) => {
        why ??= reason;
        resolve();
      };
    });
    if (proc.stderr) {
      if (opts.log === "inherit") proc.stderr.pipe(process.stderr);
      createInterface({ input: proc.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => {
        tail.push(line);
        if (tail.length > 50) tail.shift();
        if (line.includes("another etcd process is using")) fail(`etcd cannot start: ${cause([line])}`);
      });
    }
    // "close" comes after stderr has been read to its end, so the tail holds the reason.
    proc.once("close", (code, sig) => fail(`etcd exited (${sig ?? code}) before it was ready: ${cause(tail)}`));
    proc.once("error", (err) => fail(`etcd could not be started: ${err.message}`));

    const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
    while (why === undefined && Date.now() < deadline) {
      const up = await Promise.race([healthy(metricsUrl ?? clientUrl), failure.then(() => false)]);
      if (up && why === undefined) return;
      if (why === undefined) await Promise.race([new Promise((r) => setTimeout(r, 50)), failure]);
    }
    proc.kill("SIGKILL");
    if (why?.includes("address already in use")) throw new PortTakenError(why);
    throw new Error(why ?? `etcd did not become healthy at ${clientUrl} in time; its last log line: ${cause(tail)}`);
  };
  const stop = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((r) => proc.once("exit", () => r()));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
    await gone;
    clearTimeout(timer);
  };

  await launch();
  return {
    endpoint: clientUrl,
    clientPort,
    dataDir: opts.dataDir,
    get pid() {
      return child?.pid;
    },
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
  };
}

/**
 * The reason in etcd's last log lines, on one line: the last error there (etcd 3.4's
 * text log marks them C, E or F; etcd 3.5's JSON log has a `level`), else the last line.
 */
export function cause(lines: string[]): string {
  const parsed = lines
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      if (line.startsWith("{")) {
        try {
          const j = JSON.parse(line) as { level?: string; msg?: string; error?: string };
          const text = [j.msg, j.error].filter(Boolean).join(": ");
          return { text: text || line, error: /^(error|dpanic|panic|fatal)$/.test(j.level ?? "") };
        } catch {}
      }
      const m = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ ([A-Z]) \| (.*)$/.exec(line);
      return m ? { text: m[2] ?? line, error: "CEF".includes(m[1] ?? "") } : { text: line, error: false };
    });
  const found = parsed.filter((p) => p.error).at(-1) ?? parsed.at(-1);
  const text = (found?.text ?? "no output").replace(/\s+/g, " ");
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

/**
 * The process holding etcd's lock on `dataDir` (its bbolt file), from /proc/locks, with
 * the client URL from its command line; undefined when none is found or not on Linux.
 */
function dataDirHolder(dataDir: string): { pid: number; url?: string } | undefined {
  let db: string;
  let inode: string;
  let locks: string;
  try {
    db = realpathSync(join(dataDir, "member", "snap", "db"));
    inode = String(statSync(db).ino);
    locks = readFileSync("/proc/locks", "utf8");
  } catch {
    return undefined;
  }
  for (const line of locks.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2146411 0 EOF" ("->" marks a waiter, not a holder)
    const f = line.trim().split(/\s+/);
    if (f[1] === "->" || f[5]?.split(":")[2] !== inode) continue;
    const pid = Number(f[4]);
    if (!(pid > 0)) continue;
    // Same inode: make sure it is this file (another device may reuse the number).
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    const holds = fds.some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === db;
      } catch {
        return false;
      }
    });
    if (!holds) continue;
    let url: string | undefined;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      const at = argv.findIndex((a) => /^--?advertise-client-urls(=|$)/.test(a));
      url = at < 0 ? undefined : argv[at]?.includes("=") ? argv[at]?.split("=")[1] : argv[at + 1];
    } catch {}
    return url ? { pid, url } : { pid };
  }
  return undefined;
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === "true";
  } catch {
    return false;
  }
}
