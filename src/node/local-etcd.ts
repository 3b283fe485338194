import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";

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

export function etcdBinary(bin = process.env.ETCD_BIN || "etcd"): string | undefined {
  const probe = spawnSync(bin, ["--version"], { encoding: "utf8" });
  return probe.status === 0 ? bin : undefined;
}

export const INSTALL_HINT =
  "etcd was not found. Install it (Debian/Ubuntu: `sudo apt-get install -y etcd-server`), " +
  "or set ETCD_BIN to the etcd binary, or set ETCD_ENDPOINTS to use an existing cluster.";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export async function startLocalEtcd(opts: LocalEtcdOptions): Promise<LocalEtcd> {
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
    const proc = spawn(bin, args, { stdio: ["ignore", opts.log ?? "ignore", opts.log ?? "ignore"] });
    child = proc;
    let exited: string | undefined;
    proc.once("exit", (code, sig) => {
      exited = `etcd exited (${sig ?? code}) before it was ready`;
    });
    const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
    while (Date.now() < deadline) {
      if (exited) throw new Error(exited);
      if (await healthy(metricsUrl ?? clientUrl)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    proc.kill("SIGKILL");
    throw new Error(`etcd did not become healthy at ${clientUrl} in time`);
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

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === "true";
  } catch {
    return false;
  }
}
