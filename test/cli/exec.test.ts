import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type LeaseholdClient } from "../../src/client/index.js";
import { startProxy } from "../client/proxy.js";
import { revokeInEtcd } from "../client/revoke.js";
import { sleep, uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { cli, startCli, until } from "./run.js";

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

const lines = (file: string) => {
  try {
    return readFileSync(file, "utf8").trim().split("\n").filter(Boolean);
  } catch {
    return [];
  }
};

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

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
    await sleep(800); // past a renewal or two: renewals keep it
    expect(run.child.exitCode).toBeNull();
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
      await sleep(300);
      expect(await client.inspect(name)).toBeUndefined();
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
});
