import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type LeaseholdClient } from "../../src/client/index.js";
import { startProxy } from "../client/proxy.js";
import { holderInEtcd, revokeInEtcd } from "../client/revoke.js";
import { sleep, stillAfter, uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { cli, fileLines, startCli } from "./run.js";

let svc: TestService;
let client: LeaseholdClient;
let env: Record<string, string>;
let dir: string;
beforeAll(async () => {
  svc = await startTestService();
  client = createClient({ url: svc.url });
  env = { LEASEHOLD_URL: svc.url };
  dir = mkdtempSync(join(tmpdir(), "leasehold-exec-"));
});
afterAll(async () => {
  await svc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const lines = fileLines;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Gone, or a zombie: exited, and left for PID 1 to reap (some container inits reap only
 * every few seconds).
 */
const dead = (pid: number) => !alive(pid) || procState(pid) === "Z";

/** The fields of /proc/PID/stat after the command name (state first); undefined once it is gone. */
const procStat = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
};

/** The process's state letter (R, S, T, Z…). */
const procState = (pid: number) => procStat(pid)?.[0];

/** When each process a test saw started (field 22 of its stat), so that cleanup never hits a reused pid. */
const started = new Map<number, string | undefined>();
const remember = (pid: number) => started.set(pid, procStat(pid)?.[19]);

/** Leaves no process behind, whatever the test's outcome. */
const killAll = (...pids: number[]) => {
  for (const pid of pids) {
    const since = procStat(pid)?.[19];
    if (since === undefined || since !== started.get(pid)) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
};

/** Starts a grandchild of exec that keeps running, detached from exec's stdio, and prints its pid. */
const GRANDCHILD = 'sleep 1000 >/dev/null 2>&1 </dev/null & echo "grandchild=$!"';

/** The pids the command printed as `key=PID`, once it has. */
async function pidsOf<K extends string>(run: ReturnType<typeof startCli>, ...keys: K[]): Promise<Record<K, number>> {
  const find = (key: string) => new RegExp(`${key}=(\\d+)`).exec(run.stdout())?.[1];
  await until(() => keys.every(find), `the command to print ${keys.join(", ")}`);
  const pids = Object.fromEntries(keys.map((key) => [key, Number(find(key))])) as Record<K, number>;
  for (const key of keys) remember(pids[key]);
  return pids;
}

/** A shell loop that keeps running (in short sleeps, so traps run promptly). */
const LOOP = "while :; do sleep 0.05; done";

/** `exec --ttl 2` of a shell that sets `trap`, then loops; resolves once it runs, with its pid. */
async function startHolding(name: string, flags: string[], trap: string) {
  const script = `${trap}; echo "pid=$$"; ${LOOP}`;
  const run = startCli(["exec", name, "--ttl", "2", ...flags, "--", "sh", "-c", script], env);
  await until(() => /pid=\d+/.test(run.stdout()), "the command to start");
  return { run, pid: Number(/pid=(\d+)/.exec(run.stdout())?.[1]) };
}

// Each spawn of the command costs ~0.4 s of CPU: allow for a busy machine.
describe.concurrent("leasehold exec", { timeout: 60_000 }, () => {
  it("runs the command with LEASEHOLD_NAME/TOKEN/LEASE, passes its exit code through and releases", async () => {
    const name = uniqueName("exec");
    const r = await cli(
      [
        "exec",
        name,
        "--ttl",
        "5",
        "--",
        "sh",
        "-c",
        'echo "$LEASEHOLD_NAME $LEASEHOLD_TOKEN $LEASEHOLD_LEASE"; exit 7',
      ],
      env,
    );
    expect(r.code).toBe(7);
    expect(r.stdout.trim()).toMatch(new RegExp(`^${name} \\d+ [0-9a-f]{16,64}$`));
    expect(await client.inspect(name)).toBeUndefined();

    const ok = await cli(["exec", name, "--", "true"], env);
    expect(ok.code).toBe(0);
    const missing = await cli(["exec", name, "--", "/nonexistent/command"], env);
    expect(missing.code).toBe(127);
    expect(await client.inspect(name)).toBeUndefined();
  });

  it("two concurrent execs of one name run the command once; the other exits 73 without running it", async () => {
    const name = uniqueName("once");
    const file = join(dir, `${name}.log`);
    const cmd = ["sh", "-c", `echo "ran $$" >> '${file}'; sleep 2`];
    const runs = [startCli(["exec", name, "--", ...cmd], env), startCli(["exec", name, "--", ...cmd], env)];
    const codes = await Promise.all(runs.map((r) => r.exited));
    expect([...codes].sort()).toEqual([0, 73]);
    expect(lines(file)).toHaveLength(1);
    expect(runs[codes.indexOf(73)]?.stderr()).toMatch(/is held by .*not running sh/);

    // --held-exit 0 --quiet: the cron form, silent and successful on the hosts that skip.
    const holder = await client.acquire(name, { ttl: 10 });
    const skipped = await cli(["exec", name, "--held-exit", "0", "--quiet", "--", ...cmd], env);
    expect(skipped).toMatchObject({ code: 0, stderr: "" });
    expect(lines(file)).toHaveLength(1);
    await client.release(name, holder.lease);
  });

  it("--wait runs the command after the holder releases", async () => {
    const name = uniqueName("queue");
    const file = join(dir, `${name}.log`);
    const first = startCli(
      ["exec", name, "--", "sh", "-c", `echo first-start >> '${file}'; sleep 1; echo first-end >> '${file}'`],
      env,
    );
    await until(() => lines(file).length > 0, "the first command to start");
    const second = await cli(["exec", name, "--wait", "10", "--", "sh", "-c", `echo second >> '${file}'`], env);
    expect(await first.exited).toBe(0);
    expect(second.code).toBe(0);
    expect(lines(file)).toEqual(["first-start", "first-end", "second"]);
  });

  it.each([
    ["SIGTERM", "TERM", 42],
    ["SIGINT", "INT", 43],
  ] as const)("forwards %s to the command and exits with its code", async (signal, trap, code) => {
    const name = uniqueName("signal");
    const run = startCli(
      ["exec", name, "--", "sh", "-c", `trap 'echo got-${trap}; exit ${code}' ${trap}; echo ready; ${LOOP}`],
      env,
    );
    await until(() => run.stdout().includes("ready"), "the command to start");
    run.child.kill(signal);
    expect(await run.exited).toBe(code);
    expect(run.stdout()).toContain(`got-${trap}`);
    expect(await client.inspect(name)).toBeUndefined();
  });

  it("a lost lock stops the command with SIGTERM and exits 74", async () => {
    const name = uniqueName("lost");
    const { run } = await startHolding(name, [], "trap 'echo got-TERM; exit 0' TERM");
    // Past a renewal or two (every 0.67 s), renewals keep it: no exit.
    expect(await stillAfter(800, () => run.child.exitCode)).toBeNull();
    await revokeInEtcd(svc, name);
    const started = Date.now();
    expect(await run.exited).toBe(74);
    expect(Date.now() - started).toBeLessThan(4_000); // the next renew (every 0.67 s) finds it gone
    expect(run.stdout()).toContain("got-TERM");
    expect(run.stderr()).toContain(`lost the lock ${name}`);
  });

  it("a command that ignores SIGTERM is killed after --grace", async () => {
    const name = uniqueName("stubborn");
    const { run, pid } = await startHolding(name, ["--grace", "0.5"], "trap '' TERM");
    await revokeInEtcd(svc, name);
    expect(await run.exited).toBe(74);
    expect(alive(pid)).toBe(false);
  });

  it("a signal while waiting for the lock gives up at once without running the command", async () => {
    const name = uniqueName("impatient");
    const holder = await client.acquire(name, { ttl: 20 });
    const file = join(dir, `${name}.log`);
    const proxy = await startProxy(svc.url);
    try {
      const run = startCli(["exec", name, "--wait", "30", "--", "sh", "-c", `echo ran >> '${file}'`], {
        LEASEHOLD_URL: proxy.url,
      });
      await until(() => proxy.seen.some((s) => s.method === "POST"), "the acquire to wait");
      run.child.kill("SIGINT");
      expect(await run.exited).toBe(130);
      // The waiting acquire was abandoned: once the holder lets go, nobody holds the lock.
      await client.release(name, holder.lease);
      expect(await stillAfter(300, () => client.inspect(name))).toBeUndefined();
      expect(lines(file)).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it("--no-release leaves the lock to expire instead of releasing it", async () => {
    const name = uniqueName("keep");
    const r = await cli(
      ["exec", name, "--ttl", "30", "--no-release", "--", "sh", "-c", 'echo "$LEASEHOLD_TOKEN"'],
      env,
    );
    expect(r.code).toBe(0);
    expect((await client.inspect(name))?.token).toBe(Number(r.stdout.trim()));
  });

  it("a lost lock stops the command's whole process group, grandchildren included", async () => {
    const name = uniqueName("lost-group");
    // The lock is lost by the revoke below, not by an expiry: at --ttl 2 a renew answered
    // 0.7 s late (a loaded machine) would make exec give the lock up by itself first.
    const run = startCli(["exec", name, "--ttl", "6", "--", "sh", "-c", `${GRANDCHILD}; echo "pid=$$"; wait`], env);
    const { grandchild, pid } = await pidsOf(run, "grandchild", "pid");
    try {
      await revokeInEtcd(svc, name);
      expect(await run.exited).toBe(74);
      // exec returns only once the whole group is gone.
      expect(dead(pid)).toBe(true);
      expect(dead(grandchild)).toBe(true);
    } finally {
      killAll(grandchild, pid);
    }
  });

  it("SIGTERM to exec reaches the command's grandchildren", async () => {
    const name = uniqueName("term-group");
    const run = startCli(["exec", name, "--", "sh", "-c", `${GRANDCHILD}; wait`], env);
    const { grandchild } = await pidsOf(run, "grandchild");
    try {
      run.child.kill("SIGTERM");
      expect(await run.exited).toBe(143);
      expect(dead(grandchild)).toBe(true);
      expect(await client.inspect(name)).toBeUndefined();
    } finally {
      killAll(grandchild);
    }
  });

  it("when exec is SIGKILLed, its watchdog stops the command and its grandchildren", async () => {
    const name = uniqueName("killed");
    const run = startCli(["exec", name, "--grace", "1", "--", "sh", "-c", `${GRANDCHILD}; echo "pid=$$"; wait`], env);
    const { grandchild, pid } = await pidsOf(run, "grandchild", "pid");
    try {
      run.child.kill("SIGKILL");
      await until(() => dead(pid) && dead(grandchild), "the command and its grandchild to be stopped");
    } finally {
      killAll(grandchild, pid);
    }
  });

  it("processes the command leaves behind get SIGTERM, SIGKILL after --grace, before the lock is released", async () => {
    const name = uniqueName("stragglers");
    // One grandchild that obeys SIGTERM, one that ignores it. The command ends only once the
    // stubborn one has set its trap (it marks a file): exec signals the group as soon as the
    // command ends, and a subshell not yet past `trap` died of that SIGTERM on a loaded CI run.
    const armed = join(dir, `${name}.armed`);
    const stubbornJob = `(trap '' TERM; : > '${armed}'; exec sleep 1000) >/dev/null 2>&1 </dev/null & echo "stubborn=$!"`;
    const script = `${GRANDCHILD}; ${stubbornJob}; until [ -e '${armed}' ]; do sleep 0.02; done; echo bye; exit 3`;
    // The grace is long enough that a loaded machine still reads the lock before it runs out
    // (with 3 s, a CI run at high load once read the lock only after the release).
    const run = startCli(["exec", name, "--grace", "10", "--", "sh", "-c", script], env);
    const { grandchild, stubborn } = await pidsOf(run, "grandchild", "stubborn");
    try {
      await until(() => run.stdout().includes("bye"), "the command to end");
      // The command has ended, but its stubborn grandchild still runs: the lock stays held.
      // The grandchild is checked alive after the answer, so the lock was read held while it ran.
      expect((await client.inspect(name))?.name).toBe(name);
      expect(dead(stubborn)).toBe(false);
      expect(await run.exited).toBe(3);
      expect(dead(grandchild)).toBe(true);
      expect(dead(stubborn)).toBe(true);
      expect(await client.inspect(name)).toBeUndefined();
    } finally {
      killAll(grandchild, stubborn);
    }
  });

  it("SIGTSTP stops the command's group with exec, SIGCONT resumes both", async () => {
    const name = uniqueName("suspend");
    const run = startCli(["exec", name, "--", "sh", "-c", `${GRANDCHILD}; echo "pid=$$"; wait`], env);
    const { grandchild, pid } = await pidsOf(run, "grandchild", "pid");
    const execPid = run.child.pid as number;
    remember(execPid);
    const stopped = (p: number) => procState(p) === "T";
    try {
      run.child.kill("SIGTSTP");
      await until(() => [execPid, pid, grandchild].every(stopped), "exec and its whole job to stop");
      run.child.kill("SIGCONT");
      await until(() => ![execPid, pid, grandchild].some(stopped), "exec and its whole job to resume");
      run.child.kill("SIGTERM");
      expect(await run.exited).toBe(143);
      expect(dead(grandchild)).toBe(true);
    } finally {
      killAll(grandchild, pid, execPid);
    }
  });

  it("a job suspended past its lease is stopped, not resumed, on SIGCONT", async () => {
    const name = uniqueName("suspend-expired");
    const file = join(dir, `${name}.log`);
    const ticker = `while :; do echo t >> '${file}'; sleep 0.05; done`;
    const run = startCli(["exec", name, "--ttl", "2", "--", "sh", "-c", `(${ticker}) & echo "ticker=$!"; wait`], env);
    const { ticker: tickerPid } = await pidsOf(run, "ticker");
    const execPid = run.child.pid as number;
    remember(execPid);
    try {
      await until(() => lines(file).length > 0, "the job to tick");
      run.child.kill("SIGTSTP");
      await until(() => procState(execPid) === "T" && procState(tickerPid) === "T", "exec and the job to stop");
      const ticks = lines(file).length;
      // Nobody renews: the lease runs out in etcd.
      await until(async () => (await client.inspect(name)) === undefined, "the lease to expire", 15_000);
      run.child.kill("SIGCONT");
      expect(await run.exited).toBe(74);
      expect(dead(tickerPid)).toBe(true);
      expect(lines(file)).toHaveLength(ticks);
    } finally {
      killAll(tickerPid, execPid);
    }
  });

  it("--help does not promise the lock frees within --ttl: a lease outlives its TTL when etcd restarts", async () => {
    const help = (await cli(["exec", "--help"])).stdout;
    expect(help).not.toMatch(/at most this long/);
    expect(help).toMatch(/etcd\s+restarts every lease's countdown when it elects a new leader or\s+restarts/);

    // What it warns of. Its own etcd: a restart would disturb the other tests.
    const own = await startTestService();
    try {
      const ttl = 2;
      const since = Date.now();
      await createClient({ url: own.url }).acquire("outlives", { ttl });
      // Deliberate: part of the TTL passes (no renew from here on) before the restart.
      await sleep(since + 1_000 - Date.now());
      await own.etcd.restart();
      // Past the TTL counted from the acquire, yet still held: the restart reset its countdown.
      const held = await stillAfter(since + (ttl + 0.5) * 1000 - Date.now(), () => holderInEtcd(own, "outlives"));
      expect(held).toBeDefined();
    } finally {
      await own.stop();
    }
  });
});
