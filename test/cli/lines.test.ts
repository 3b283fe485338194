import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type LeaseholdClient } from "../../src/client/index.js";
import { uniqueName, until } from "../support/http.js";
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
  dir = mkdtempSync(join(tmpdir(), "leasehold-lines-"));
});
afterAll(async () => {
  await svc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const lines = fileLines;

const waitersOf = async (name: string) => (await client.inspect(name))?.waiters ?? 0;

// Each spawn of the command costs ~0.4 s of CPU: allow for a busy machine.
describe.concurrent("leasehold exec --limit / --queue, and semaphores in the other verbs", { timeout: 60_000 }, () => {
  it("exec --limit N runs under a permit: 73 when full, 1 on another limit, 0 with a free permit", async () => {
    const name = uniqueName("pool");
    const pool = client.semaphore(name, 2);
    const [a, b] = [await pool.acquire({ ttl: 20, owner: "a" }), await pool.acquire({ ttl: 20, owner: "b" })];
    const script = 'echo "$LEASEHOLD_NAME $LEASEHOLD_TOKEN $LEASEHOLD_LEASE"';
    const [full, mismatch] = await Promise.all([
      cli(["exec", name, "--limit", "2", "--", "sh", "-c", script], env),
      cli(["exec", name, "--limit", "3", "--", "sh", "-c", script], env),
    ]);
    expect(full).toMatchObject({ code: 73, stdout: "" });
    expect(full.stderr).toContain(`semaphore ${name} has no free permit`);
    expect(mismatch).toMatchObject({ code: 1, stdout: "" });
    expect(mismatch.stderr).toContain("limit 2");

    await pool.release(a.lease);
    const ran = await cli(["exec", name, "--limit", "2", "--", "sh", "-c", script], env);
    expect(ran.code).toBe(0);
    const [, token, lease] = ran.stdout.trim().split(" ");
    expect(Number(token)).toBeGreaterThan(b.token);
    expect(lease).toMatch(/^[0-9a-f]{16,64}$/);
    // Released at the end: only b holds.
    expect((await pool.inspect())?.holders.map((h) => h.token)).toEqual([b.token]);
    await pool.release(b.lease);

    const bad = await cli(["exec", name, "--limit", "0", "--", "true"], env);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("--limit");
  });

  it("exec --queue waits in line as long as it takes and runs at its turn, in arrival order", async () => {
    const name = uniqueName("queue");
    const file = join(dir, `${name}.log`);
    const holder = await client.acquire(name, { ttl: 30 });
    const first = startCli(["exec", name, "--queue", "--", "sh", "-c", `echo first >> '${file}'`], env);
    await until(async () => (await waitersOf(name)) === 1, "the first exec in line");
    const second = startCli(["exec", name, "--queue", "--", "sh", "-c", `echo second >> '${file}'`], env);
    await until(async () => (await waitersOf(name)) === 2, "the second exec in line");
    expect(first.stderr()).toContain(`waiting in line for the lock ${name} (0 ahead)`);
    await until(
      () => second.stderr().includes("(1 ahead)"),
      () => `second to say it waits: ${second.stderr()}`,
    );
    expect(first.child.exitCode).toBeNull();
    await client.release(name, holder.lease);
    expect(await first.exited).toBe(0);
    expect(await second.exited).toBe(0);
    expect(lines(file)).toEqual(["first", "second"]);
    // Nothing printed the ticket.
    expect(first.stdout() + first.stderr()).not.toMatch(/[0-9a-f]{16,}/);
  });

  it("exec --queue interrupted while in line leaves the line and does not run the command", async () => {
    const name = uniqueName("queue-int");
    const file = join(dir, `${name}.log`);
    const pool = client.semaphore(name, 1);
    const holder = await pool.acquire({ ttl: 30 });
    const run = startCli(
      ["exec", name, "--limit", "1", "--queue", "--quiet", "--", "sh", "-c", `echo ran >> '${file}'`],
      env,
    );
    await until(async () => (await pool.inspect())?.waiters === 1, "exec in line");
    run.child.kill("SIGTERM");
    expect(await run.exited).toBe(128 + 15);
    expect(run.stderr()).toBe("");
    await until(async () => ((await pool.inspect())?.waiters ?? 0) === 0, "the line to be empty", 5_000);
    await pool.release(holder.lease);
    expect(lines(file)).toEqual([]);
  });

  it("exec --queue --wait S gives up after S seconds in line: 73, or --held-exit", async () => {
    const name = uniqueName("queue-wait");
    const holder = await client.acquire(name, { ttl: 30 });
    const started = Date.now();
    const r = await cli(["exec", name, "--queue", "--wait", "0.5", "--", "true"], env);
    expect(r.code).toBe(73);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(r.stderr).toContain("still in line");
    expect(await waitersOf(name)).toBe(0);
    await client.release(name, holder.lease);
  });

  it("acquire --limit, renew/release/status --semaphore", async () => {
    const name = uniqueName("sem-cli");
    const got = await cli(["acquire", name, "--limit", "3", "--ttl", "20", "--owner", "w1"], env);
    expect(got.code).toBe(0);
    expect(got.json).toMatchObject({ name, limit: 3, ttl: 20, owner: "w1" });
    const { token, lease } = got.json;

    const [status, listed, asLock] = await Promise.all([
      cli(["status", "--semaphore", name], env),
      cli(["status", "--semaphore", "--prefix", name], env),
      cli(["status", name], env),
    ]);
    expect(status.code).toBe(0);
    expect(status.json).toMatchObject({ held: true, name, limit: 3, holders: [{ token, owner: "w1" }] });
    expect(status.stdout).not.toContain(lease);
    expect(listed.json.items.map((i: { name: string; limit: number }) => [i.name, i.limit])).toEqual([[name, 3]]);
    expect(asLock.code).toBe(3);

    const renewed = await cli(["renew", name, "--semaphore", "--lease", lease], env);
    expect(renewed).toMatchObject({ code: 0, json: { token, limit: 3 } });
    const released = await cli(["release", name, "--semaphore"], { ...env, LEASEHOLD_LEASE: lease });
    expect(released).toMatchObject({ code: 0, json: { name, released: true } });
    const [again, gone] = await Promise.all([
      cli(["release", name, "--semaphore", "--lease", lease], env),
      cli(["status", "--semaphore", name], env),
    ]);
    expect(again.code).toBe(74);
    expect(gone).toMatchObject({ code: 3, json: { held: false, name } });
  });
});
