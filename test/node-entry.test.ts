import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildService } from "../scripts/build.js";
import { cause, freePort, startLocalEtcd } from "../src/node/local-etcd.js";
import { startTestEtcd } from "./support/etcd.js";
import { call, type Reply, until } from "./support/http.js";
import { openSse } from "./support/sse.js";

const repo = new URL("..", import.meta.url).pathname;
const tsx = join(repo, "node_modules", ".bin", "tsx");
const entry = join(repo, "src", "node", "main.ts");

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

const started: Run[] = [];
const dirs: string[] = [];
/** Processes a test started indirectly (npm's children), killed after it if still alive. */
const strays: number[] = [];

function run(
  env: Record<string, string>,
  cwd = mkdtempSync(join(tmpdir(), "leasehold-run-")),
  command: [string, ...string[]] = [tsx, entry],
): Run {
  dirs.push(cwd);
  let out = "";
  // Nothing from the test runner's own environment: not its npm script's variables
  // either (`npm test` sets npm_*), so a child npm behaves as it does for a user.
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !k.startsWith("ETCD_") && !k.startsWith("LEASEHOLD_") && !k.startsWith("npm_") && k !== "NODE_OPTIONS",
    ),
  );
  const [bin, ...args] = command;
  const child = spawn(bin, args, {
    cwd,
    env: { ...clean, npm_config_update_notifier: "false", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const handle = { child, output: () => out, exited };
  started.push(handle);
  return handle;
}

async function waitReady(url: string, proc: Run, ms = 20_000) {
  await until(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`the service exited:\n${proc.output()}`);
      return fetch(`${url}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
    },
    () => `the service to become ready:\n${proc.output()}`,
    ms,
  );
}

/**
 * A copy of the package (package.json, tsconfig.json, src/, node_modules linked) in a
 * temporary folder, as a user's checkout: npm runs its scripts there, and development
 * mode keeps its etcd under that folder's .leasehold/.
 */
function checkout(): string {
  const dir = mkdtempSync(join(tmpdir(), "leasehold-npm-"));
  dirs.push(dir);
  for (const f of ["package.json", "tsconfig.json"]) copyFileSync(join(repo, f), join(dir, f));
  cpSync(join(repo, "src"), join(dir, "src"), { recursive: true });
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"), "dir");
  return dir;
}

/** Fields of /proc/PID/stat after the command name: [state, ppid, …]; undefined when gone. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Whether a process still runs (a zombie nobody reaped yet has stopped). */
const alive = (pid: number) => {
  const state = procStat(pid)?.[0];
  return state !== undefined && state !== "Z";
};

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
};

/** Every live descendant of `root` (from /proc), each also recorded as a stray to clean up. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = Number(procStat(Number(entry))?.[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  const queue = [root];
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    for (const child of children.get(pid) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  strays.push(...found);
  return found.filter(alive);
}

/** The local addresses with a socket listening on TCP `port` (from /proc/net/tcp and tcp6). */
function listeningOn(port: number): string[] {
  const found: string[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      const [hex, p] = local?.split(":") ?? [];
      if (state !== "0A" || !hex || Number.parseInt(p ?? "", 16) !== port) continue;
      // IPv4 addresses are one little-endian word; IPv6 ones are shown as hex here.
      found.push(
        hex.length === 8
          ? (hex.match(/../g) ?? [])
              .reverse()
              .map((b) => Number.parseInt(b, 16))
              .join(".")
          : hex,
      );
    }
  }
  return found;
}

const lines = (out: string) => out.split("\n").filter((l) => l.startsWith("{"));

/** Whether anything answers HTTP at `url` now. */
const answers = (url: string) =>
  fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) }).then(
    () => true,
    () => false,
  );

/** This instance's parked waiters, from its metrics. */
async function waiters(url: string): Promise<number> {
  const text = (await call(url, "GET", "/metrics")).text;
  return Number(/^leasehold_waiters (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
}

/** Resolves once one acquire waits on the instance at `url`. */
const oneWaits = (url: string) => until(async () => (await waiters(url)) === 1, "the acquire to wait");

/** Takes a lock and parks a second acquire of it (up to 30 s); resolves once it waits. */
async function parkWaiter(url: string, name: string): Promise<{ answer: Promise<Reply> }> {
  expect((await call(url, "POST", `/locks/${name}`, { json: { ttl: 60 } })).status).toBe(201);
  const answer = call(url, "POST", `/locks/${name}`, { json: { wait: 30 } });
  await oneWaits(url);
  return { answer };
}

afterEach(async () => {
  for (const pid of strays.splice(0)) {
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }
  for (const p of started.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill("SIGKILL");
      await p.exited;
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("the Node entry point", () => {
  it("development mode starts a local etcd under .leasehold/, serves, and stops both on SIGTERM", async () => {
    const port = await freePort();
    const proc = run({ PORT: String(port), HOST: "127.0.0.1" });
    const url = `http://127.0.0.1:${port}`;
    await waitReady(url, proc);
    expect(proc.output()).toContain("development mode");
    const g = await call(url, "POST", "/locks/dev:one", { json: { ttl: 10 } });
    expect(g.status).toBe(201);
    const etcdUrl = JSON.parse(
      proc
        .output()
        .split("\n")
        .find((l) => l.includes("development mode")) ?? "{}",
    ).etcd;
    expect(etcdUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    // A waiter in flight at shutdown is answered, not dropped; an event stream ends (its
    // caller resumes elsewhere) rather than holding the drain up for the whole grace period.
    const waiting = call(url, "POST", "/locks/dev:one", { json: { wait: 30 } });
    await oneWaits(url);
    const stream = await openSse(`${url}/events`);
    await stream.untilEvents(2);
    const stopping = Date.now();
    proc.child.kill("SIGTERM");
    const w = await waiting;
    expect(w.status).toBe(503);
    expect(await proc.exited).toBe(0);
    // Well within the 10 s grace after which the server would close connections itself.
    expect(Date.now() - stopping).toBeLessThan(8_000);
    await until(() => stream.ended, "the event stream to end");
    // The local etcd went down with the service.
    await expect(fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1_000) })).rejects.toThrow();
  });

  it("npm start (development mode): SIGTERM to npm's PID drains the server, stops its etcd and exits 0", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = run({ PORT: String(port) }, checkout(), ["npm", "start"]);
    await waitReady(url, proc);
    const pid = proc.child.pid as number;
    const below = descendants(pid);
    const etcd = below.find((p) => cmdline(p).startsWith("etcd "));
    expect(etcd, below.map(cmdline).join("\n")).toBeDefined();

    const waiter = await parkWaiter(url, "dev:drain");
    process.kill(pid, "SIGTERM");
    const w = await waiter.answer;
    expect(w.status).toBe(503);
    expect(w.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(w.json.code).toBe("backend-unavailable");
    // npm waited for the server, which waited for its etcd: once npm has exited 0,
    // nothing it started is left.
    expect(await proc.exited, proc.output()).toBe(0);
    expect(proc.output()).toContain('"msg":"stopped"');
    expect(await answers(url)).toBe(false);
    expect(below.filter(alive).map(cmdline)).toEqual([]);
  }, 60_000);

  it("npm run start:prod: SIGTERM to npm's PID drains the server and exits 0", async () => {
    const etcd = await startTestEtcd();
    try {
      const dir = checkout();
      await buildService(dir);
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const proc = run({ PORT: String(port), ETCD_ENDPOINTS: etcd.endpoint }, dir, ["npm", "run", "start:prod"]);
      await waitReady(url, proc);
      const pid = proc.child.pid as number;
      const below = descendants(pid);
      expect(
        below.map(cmdline).some((c) => c.includes("dist/main.js")),
        below.map(cmdline).join("\n"),
      ).toBe(true);

      const waiter = await parkWaiter(url, "prod:drain");
      process.kill(pid, "SIGTERM");
      const w = await waiter.answer;
      expect(w.status).toBe(503);
      expect(w.json.code).toBe("backend-unavailable");
      expect(await proc.exited, proc.output()).toBe(0);
      expect(proc.output()).toContain('"msg":"stopped"');
      expect(await answers(url)).toBe(false);
      expect(below.filter(alive).map(cmdline)).toEqual([]);
    } finally {
      await etcd.destroy();
    }
  }, 90_000);

  it("npm start: when npm itself is killed (SIGKILL), the server notices, drains and stops its etcd", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = run({ PORT: String(port) }, checkout(), ["npm", "start"]);
    await waitReady(url, proc);
    const below = descendants(proc.child.pid as number);
    expect(below.some((p) => cmdline(p).startsWith("etcd "))).toBe(true);
    const waiter = await parkWaiter(url, "dev:orphan");
    proc.child.kill("SIGKILL");
    expect((await waiter.answer).status).toBe(503);
    await until(() => below.every((p) => !alive(p)), "the server and its etcd to stop", 15_000);
    expect(await answers(url)).toBe(false);
  }, 60_000);

  it("listens on loopback unless HOST says otherwise, and says so loudly when that is open to other hosts", async () => {
    const etcd = await startTestEtcd();
    try {
      /** Starts the service, notes where it listens and what it warned about, stops it. */
      const start = async (env: Record<string, string>) => {
        const port = await freePort();
        const proc = run({ PORT: String(port), ETCD_ENDPOINTS: etcd.endpoint, ...env });
        await waitReady(`http://127.0.0.1:${port}`, proc);
        const addresses = listeningOn(port);
        proc.child.kill("SIGTERM");
        expect(await proc.exited).toBe(0);
        const logged = lines(proc.output()).map((l) => JSON.parse(l) as { level: number; msg: string });
        return { addresses, warnings: logged.filter((l) => l.level === 40).map((l) => l.msg) };
      };
      const loud = /reachable from other hosts with no authentication/;

      // No HOST: loopback only, and the plain auth-off warning.
      const quiet = await start({});
      expect(quiet.addresses).toEqual(["127.0.0.1"]);
      expect(quiet.warnings.join("\n")).toMatch(/auth is off/);
      expect(quiet.warnings.join("\n")).not.toMatch(loud);

      // HOST=0.0.0.0 without API keys: one warn-level line that says what is open.
      const open = await start({ HOST: "0.0.0.0" });
      expect(open.addresses).toEqual(["0.0.0.0"]);
      expect(open.warnings.filter((w) => loud.test(w))).toEqual([expect.stringContaining("HOST=0.0.0.0")]);

      // With API keys it is not open, so no such warning.
      const keyed = await start({ HOST: "0.0.0.0", LEASEHOLD_API_KEYS: '[{"key":"k-1","prefixes":[""]}]' });
      expect(keyed.warnings.join("\n")).not.toMatch(/auth is off/);
    } finally {
      await etcd.destroy();
    }
  }, 60_000);

  it("a second development-mode start in the same folder exits 1 at once, naming the etcd that holds the data dir", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "leasehold-run-"));
    const firstPort = await freePort();
    const first = run({ PORT: String(firstPort) }, cwd);
    await waitReady(`http://127.0.0.1:${firstPort}`, first);
    const etcd = descendants(first.child.pid as number).find((p) => cmdline(p).startsWith("etcd "));
    expect(etcd).toBeDefined();

    const startedAt = Date.now();
    const second = run({ PORT: String(await freePort()) }, cwd);
    expect(await second.exited).toBe(1);
    // etcd alone would wait for the lock without end (saying so after 10 s); the
    // service's own health deadline is 15 s.
    expect(Date.now() - startedAt).toBeLessThan(8_000);
    const said = second.output().trim();
    expect(said.split("\n")).toHaveLength(1);
    expect(said).toMatch(
      new RegExp(
        `^leasehold: etcd's data dir .*\\.leasehold/etcd is in use by another etcd \\(pid ${etcd}, serving http://127\\.0\\.0\\.1:\\d+\\)`,
      ),
    );
    expect(said).toContain("ETCD_ENDPOINTS=http://127.0.0.1:");
    // The first one is untouched.
    expect((await call(`http://127.0.0.1:${firstPort}`, "GET", "/readyz")).status).toBe(200);
  }, 60_000);

  it("an etcd that exits while starting is reported at once with etcd's own reason", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "leasehold-etcd-"));
    dirs.push(dataDir);
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
    try {
      const clientPort = (taken.address() as AddressInfo).port;
      const startedAt = Date.now();
      const error = await startLocalEtcd({ dataDir, clientPort }).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(error?.message).toMatch(
        new RegExp(
          `^etcd exited \\(1\\) before it was ready: .*127\\.0\\.0\\.1:${clientPort}: bind: address already in use$`,
        ),
      );
      expect(Date.now() - startedAt).toBeLessThan(5_000);
    } finally {
      taken.close();
    }
  });

  it("etcd's reason is the last error in its log, text (etcd 3.4) or JSON (etcd 3.5), on one line", () => {
    expect(
      cause([
        "2026-12-01 03:49:03.452747 I | etcdmain: setting maximum number of CPUs to 2",
        "[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead",
        "2026-12-01 03:49:03.452935 C | etcdmain: listen tcp 127.0.0.1:2379: bind: address already in use",
      ]),
    ).toBe("etcdmain: listen tcp 127.0.0.1:2379: bind: address already in use");
    expect(
      cause([
        '{"level":"info","ts":"2026-12-01T03:49:03Z","caller":"embed/etcd.go:1","msg":"configuring peer listeners"}',
        '{"level":"fatal","ts":"2026-12-01T03:49:03Z","caller":"etcdmain/etcd.go:204","msg":"discovery failed","error":"listen tcp 127.0.0.1:2380: bind: address already in use"}',
        '{"level":"info","ts":"2026-12-01T03:49:03Z","msg":"closing"}',
      ]),
    ).toBe("discovery failed: listen tcp 127.0.0.1:2380: bind: address already in use");
    expect(cause(["first", "  ", "the last\tline  "])).toBe("the last line");
    expect(cause([])).toBe("no output");
  });

  it("without etcd installed, development mode says how to install it and exits 1", async () => {
    const proc = run({ PORT: String(await freePort()), ETCD_BIN: "/nonexistent/etcd" });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toContain("apt-get install -y etcd-server");
  });

  it("invalid configuration stops start-up with a message naming the variable", async () => {
    const proc = run({ PORT: "eighty", ETCD_ENDPOINTS: "http://127.0.0.1:1" });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toContain("PORT");
  });

  it.each([
    ["an empty key list", { LEASEHOLD_API_KEYS: "[]" }, /LEASEHOLD_API_KEYS.*empty/],
    ["a key without prefixes", { LEASEHOLD_API_KEYS: '[{"key":"k"}]' }, /prefixes is required/],
    ["both key variables", { LEASEHOLD_API_KEYS: "[]", LEASEHOLD_API_KEYS_FILE: "/tmp/k.json" }, /not both/],
    ["an unreadable key file", { LEASEHOLD_API_KEYS_FILE: "/nonexistent/keys.json" }, /LEASEHOLD_API_KEYS_FILE/],
  ])("bad API key configuration (%s) stops start-up", async (_label, env, message) => {
    const proc = run({ PORT: String(await freePort()), ETCD_ENDPOINTS: "http://127.0.0.1:1", ...env });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toMatch(message);
  });

  it("with ETCD_ENDPOINTS it uses that cluster and shuts down cleanly on SIGINT", async () => {
    const etcd = await startTestEtcd();
    try {
      const port = await freePort();
      const proc = run({ PORT: String(port), HOST: "127.0.0.1", ETCD_ENDPOINTS: etcd.endpoint });
      await waitReady(`http://127.0.0.1:${port}`, proc);
      expect(proc.output()).not.toContain("development mode");
      proc.child.kill("SIGINT");
      expect(await proc.exited).toBe(0);
    } finally {
      await etcd.destroy();
    }
  });
});
