import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../src/node/local-etcd.js";
import { until } from "./http.js";

const run = promisify(execFile);

export interface TestPostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres`: trust authentication on loopback only. */
  readonly url: string;
  readonly port: number;
  /** The postmaster's PID, read from its pid file once it was ready. */
  readonly pid: number;
  /** Fast shutdown by PID; waits until the server has removed its pid file, then deletes the data. */
  destroy(): Promise<void>;
}

/**
 * The directory holding `initdb` and `pg_ctl`: on PATH, or Debian's versioned directory
 * (the `postgresql` package does not put them on PATH), the newest version first.
 */
export function postgresBinDir(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"))) return dir;
  }
  const debian = "/usr/lib/postgresql";
  if (!existsSync(debian)) return undefined;
  const versions = readdirSync(debian)
    .filter((v) => existsSync(join(debian, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(debian, versions[0], "bin");
}

/**
 * Starts a real PostgreSQL server on a temp data dir, listening on 127.0.0.1 only, on a
 * free port (its unix socket in the temp dir, away from the system's). Throws (never
 * skips) when PostgreSQL is not installed or does not start, so the suite fails loudly.
 * initdb refuses to run as root: as root, the server runs as the `postgres` user, which
 * then owns the temp dir.
 */
export async function startTestPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin) {
    throw new Error(
      "PostgreSQL was not found (no initdb on PATH or under /usr/lib/postgresql/*/bin): " +
        "install it (Debian/Ubuntu: `apt-get install -y postgresql`)",
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "leasehold-pg-"));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  const pg = (tool: string, args: string[]) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", join(bin, tool), ...args]) : run(join(bin, tool), args);

  const data = join(dir, "data");
  const log = join(dir, "server.log");
  try {
    // Trust authentication is safe here only because the server listens on loopback and
    // lives for one test file.
    await pg("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off`;
      try {
        // -w: pg_ctl returns once the server accepts connections, or fails when it exits.
        await pg("pg_ctl", ["-D", data, "-l", log, "-o", options, "-w", "-t", "30", "start"]);
      } catch (err) {
        // The port was taken between choosing it and the server binding it: choose again.
        const said = existsSync(log) ? readFileSync(log, "utf8") : "";
        if (attempt < 5 && /could not bind|already in use/i.test(said)) {
          rmSync(log, { force: true });
          continue;
        }
        throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${said}`);
      }
      const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
      return {
        url: `postgres://postgres@127.0.0.1:${port}/postgres`,
        port,
        pid,
        destroy: async () => {
          await stopPostmaster(pid, join(data, "postmaster.pid"));
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * SIGINT is PostgreSQL's fast shutdown (rolls back open transactions, disconnects
 * clients). The postmaster was started by pg_ctl, so it is not our child and its exit is
 * not ours to see: it removes its pid file last, which is the event to wait for. SIGKILL
 * if it has not gone in 10 s.
 */
async function stopPostmaster(pid: number, pidFile: string): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // Already gone.
    }
  };
  signal("SIGINT");
  try {
    await until(() => !existsSync(pidFile), `PostgreSQL (pid ${pid}) to shut down`);
  } catch {
    signal("SIGKILL");
  }
}
