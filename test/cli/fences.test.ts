import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../src/cli/exit-codes.js";
import { createClient } from "../../src/client/index.js";
import { revokeInEtcd } from "../client/revoke.js";
import { uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { binDir, cli, startCli } from "./run.js";

let svc: TestService;
let env: Record<string, string>;
const dirs: string[] = [];
beforeAll(async () => {
  svc = await startTestService();
  env = { LEASEHOLD_URL: svc.url };
});
afterAll(async () => {
  await svc?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Each spawn of the command costs ~0.4 s of CPU: allow for a busy machine.
describe.concurrent("leasehold fence, state and --lock-delay", { timeout: 60_000 }, () => {
  it("fence: exit 0 for the holder's token (also from LEASEHOLD_TOKEN), 74 once it is not current", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("cli-fence");
    const a = await client.acquire(name, { ttl: 30 });
    const [current, fromEnv, bad, none] = await Promise.all([
      cli(["fence", name, String(a.token)], env),
      cli(["fence", name], { ...env, LEASEHOLD_TOKEN: String(a.token) }),
      cli(["fence", name, "12x"], env),
      cli(["fence", name], env),
    ]);
    expect(current).toMatchObject({ code: 0, json: { name, token: a.token, current: true } });
    expect(fromEnv).toMatchObject({ code: 0, json: { current: true } });
    expect(bad.code).toBe(EXIT.USAGE);
    expect(bad.stderr).toContain("TOKEN must be a whole number");
    expect(none.code).toBe(EXIT.USAGE);
    expect(none.stderr).toContain("LEASEHOLD_TOKEN");
    await client.release(name, a.lease);
    const stale = await cli(["fence", name, String(a.token)], env);
    expect(stale).toMatchObject({ code: 74, json: { name, token: a.token, current: false } });
  });

  it("fence --semaphore: a current permit's token is current", async () => {
    const name = uniqueName("cli-fence-sem");
    const permit = await createClient({ url: svc.url }).semaphore(name, 3).acquire({ ttl: 30 });
    const [sem, asLock] = await Promise.all([
      cli(["fence", name, String(permit.token), "--semaphore"], env),
      cli(["fence", name, String(permit.token)], env),
    ]);
    expect(sem).toMatchObject({ code: 0, json: { current: true } });
    expect(asLock).toMatchObject({ code: 74, json: { current: false } });
  });

  it("state: 3 before any write; a holder writes (lease from --lease or LEASEHOLD_LEASE); a stale lease exits 74", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("cli-state");
    const empty = await cli(["state", name], env);
    expect(empty).toMatchObject({ code: 3, json: { found: false, name } });
    const a = await client.acquire(name, { ttl: 30 });
    const written = await cli(["state", name, "run 1 done", "--lease", a.lease], env);
    expect(written.code).toBe(0);
    expect(written.json).toMatchObject({ name, value: "run 1 done", token: a.token, revision: expect.any(Number) });
    expect(written.stdout).not.toContain(a.lease);
    await client.release(name, a.lease);
    const b = await client.acquire(name, { ttl: 30 });
    const [stale, read, noLease] = await Promise.all([
      cli(["state", name, "a, late"], { ...env, LEASEHOLD_LEASE: a.lease }),
      cli(["state", name], env),
      cli(["state", name, "no lease"], env),
    ]);
    expect(stale).toMatchObject({ code: 74, json: { code: "lock-lost" } });
    expect(stale.stdout + stale.stderr).not.toContain(a.lease);
    expect(read).toMatchObject({ code: 0, json: { found: true, name, value: "run 1 done", token: a.token } });
    expect(noLease.code).toBe(EXIT.USAGE);
    const big = await cli(["state", name, "x".repeat(65_537), "--lease", b.lease], env);
    expect(big).toMatchObject({ code: EXIT.USAGE, json: { code: "payload-too-large" } });
    await client.release(name, b.lease);
  });

  it("exec: the job checks its fence and writes the state with the lock's own environment", async () => {
    const dir = binDir();
    dirs.push(dir);
    const name = uniqueName("cli-exec-state");
    const script =
      'leasehold fence "$LEASEHOLD_NAME" >/dev/null && leasehold state "$LEASEHOLD_NAME" "done by $LEASEHOLD_TOKEN"';
    const run = await cli(["exec", name, "--", "sh", "-c", script], { ...env, PATH: `${dir}:${process.env.PATH}` });
    expect(run.code, run.stderr).toBe(0);
    const { token } = run.json;
    expect(run.json).toMatchObject({ name, value: `done by ${token}`, token });
    const read = await cli(["state", name], env);
    expect(read.json).toMatchObject({ found: true, value: `done by ${token}` });
  });

  it("exec --lock-delay: after the job's lock ends uncleanly, exec does not run (73, saying why), acquire exits 73 with the reason", async () => {
    const client = createClient({ url: svc.url });
    const name = uniqueName("cli-delay");
    // The name stays back for ttl + lockDelay (11 s) after the last renew: room for a busy machine's spawns.
    const holder = startCli(["exec", name, "--ttl", "3", "--lock-delay", "8", "--", "sleep", "30"], env);
    // A 503 while polling (etcd slow on a loaded machine) is not an answer: look again.
    await until(
      async () => (await client.inspect(name).catch(() => undefined)) !== undefined,
      "the job to hold the lock",
      20_000,
    );
    // The lease ends behind the job's back (as when its host hangs past the TTL).
    await revokeInEtcd(svc, name);
    expect(await holder.exited).toBe(74);
    const [exec, acquire] = await Promise.all([
      cli(["exec", name, "--", "echo", "ran"], env),
      cli(["acquire", name], env),
    ]);
    expect(exec.code).toBe(73);
    expect(exec.stdout).not.toContain("ran");
    expect(exec.stderr).toMatch(new RegExp(`lock ${name} is held back by its lock-delay for about \\d+ s more`));
    expect(acquire).toMatchObject({ code: 73, json: { code: "lock-held", reason: "lock-delay" } });
    // A waiting exec runs once the delay is over.
    const waited = await cli(["exec", name, "--wait", "20", "--", "echo", "ran"], env);
    expect(waited).toMatchObject({ code: 0, stdout: "ran\n" });
  });

  it("--lock-delay: bad values and semaphores are usage errors; acquire and elect send it", async () => {
    const name = uniqueName("cli-delay-bad");
    const [fraction, sem, over, elect] = await Promise.all([
      cli(["acquire", name, "--lock-delay", "1.5"], env),
      cli(["exec", name, "--limit", "2", "--lock-delay", "3", "--", "true"], env),
      cli(["acquire", name, "--lock-delay", "61"], env), // the service's 400
      cli(["elect", name, "--lock-delay", "61", "--quiet", "--", "true"], env),
    ]);
    expect(fraction.code).toBe(EXIT.USAGE);
    expect(fraction.stderr).toContain("--lock-delay must be a whole number of seconds");
    expect(sem.code).toBe(EXIT.USAGE);
    expect(sem.stderr).toContain("--lock-delay is for locks");
    expect(over).toMatchObject({ code: EXIT.USAGE, json: { code: "invalid-request" } });
    expect(over.json.detail).toContain("lockDelay");
    expect(elect.code).toBe(EXIT.USAGE);
    expect(elect.stderr).toContain("lockDelay");
    expect(await createClient({ url: svc.url }).inspect(name)).toBeUndefined();
  });

  it("--help documents the verbs, and the top-level help lists them", async () => {
    const [top, fence, state, exec] = await Promise.all([
      cli(["--help"]),
      cli(["fence", "--help"]),
      cli(["state", "--help"]),
      cli(["exec", "--help"]),
    ]);
    expect(top.stdout).toMatch(/^ {2}leasehold fence NAME \[TOKEN\]/m);
    expect(top.stdout).toMatch(/^ {2}leasehold state NAME \[VALUE\]/m);
    expect(fence).toMatchObject({ code: 0, stdout: expect.stringContaining("Usage: leasehold fence") });
    expect(state).toMatchObject({ code: 0, stdout: expect.stringContaining("Usage: leasehold state") });
    expect(exec.stdout).toContain("--lock-delay S");
  });
});
