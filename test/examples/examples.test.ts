import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildClient } from "../../scripts/build-client.js";
import { createClient, type LeaseholdClient } from "../../src/client/index.js";
import { cleanEnv, repo } from "../cli/run.js";
import { uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

let svc: TestService;
let client: LeaseholdClient;
beforeAll(async () => {
  // The JavaScript examples import "leasehold/client", which this package resolves to
  // its compiled client (dist/client): build it from the current sources first.
  [svc] = await Promise.all([startTestService(), buildClient()]);
  client = createClient({ url: svc.url });
});
afterAll(async () => {
  await svc?.stop();
});

const examples = join(repo, "examples");

/** Runs an example as a user would, against the test service; never rejects. */
function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      cmd,
      args,
      { cwd: repo, env: cleanEnv({ LEASEHOLD_URL: svc.url, ...env }), timeout: 55_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe.concurrent("examples", { timeout: 60_000 }, () => {
  it("cron: the same crontab line on three hosts runs job9 once", async () => {
    const r = await run("sh", [join(examples, "cron", "three-hosts.sh")]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.match(/^host-\d: leasehold exec exited 0$/gm)).toHaveLength(3);
    expect(r.stdout.match(/^job9 ran on host-\d with lock cron:job9-demo-\d+, fencing token \d+$/gm)).toHaveLength(1);
    expect(r.stdout).toContain("job9 ran 1 time(s) on 3 hosts");
    // The simulation runs the crontab's own line.
    const crontab = readFileSync(join(examples, "cron", "crontab"), "utf8");
    expect(crontab).toMatch(
      /^\*\/5 \* \* \* \* \/opt\/leasehold\/bin\/leasehold\.mjs exec cron:job9 .* -- \/opt\/jobs\/job9\.sh$/m,
    );
  });

  it("curl: takes, renews and releases a lock; exits 73 when it is held", async () => {
    const name = uniqueName("curl");
    const script = join(examples, "curl", "lock.sh");
    const r = await run("bash", [script, name, "3.5"], { TTL: "3" });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^got ${name} with fencing token \\d+$`, "m"));
    expect(r.stdout.match(/^renewed /gm)?.length).toBeGreaterThanOrEqual(2);
    expect(r.stdout).toContain(`released ${name}`);
    expect(await client.inspect(name)).toBeUndefined();

    const holder = await client.acquire(name, { ttl: 10 });
    const held = await run("bash", [script, name, "1"]);
    expect(held.code).toBe(73);
    expect(held.stderr).toContain(`someone else holds ${name}`);
    await client.release(name, holder.lease);
  });

  it("python: the standard-library client holds a lock by renewing it, then releases it", async () => {
    const name = uniqueName("python");
    const script = join(examples, "python", "leasehold_lock.py");
    const r = await run("python3", [script, name, "3.5"], { TTL: "3" });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^got ${name} with fencing token \\d+$`, "m"));
    const renewals = Number(/renewed (\d+) time/.exec(r.stdout)?.[1]);
    expect(renewals).toBeGreaterThanOrEqual(2);
    expect(await client.inspect(name)).toBeUndefined();

    const holder = await client.acquire(name, { ttl: 10 });
    const held = await run("python3", [script, name, "1"]);
    expect(held.code).toBe(73);
    await client.release(name, holder.lease);
  });

  it("lambda: concurrent invocations of the withLock handler take turns, in token order", async () => {
    const day = uniqueName("day");
    const r = await run("node", [join(examples, "lambda", "invoke.mjs"), day, "3"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const results = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(results.map((x) => x.statusCode)).toEqual([200, 200, 200]);
    const runs = results.sort((x, y) => x.token - y.token);
    for (let i = 1; i < runs.length; i++) {
      expect(runs[i].token).toBeGreaterThan(runs[i - 1].token);
      expect(runs[i].started).toBeGreaterThanOrEqual(runs[i - 1].finished);
    }
    expect(await client.inspect(`report:${day}`)).toBeUndefined();
  });

  it("fenced write: the store refuses the paused holder's stale token", async () => {
    const r = await run("node", [join(examples, "fenced-write", "fenced-write.mjs"), uniqueName("fenced")]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^A writes "A's first draft" with token \d+: accepted$/m);
    expect(r.stdout).toMatch(/^B writes "B's report" with token \d+: accepted$/m);
    expect(r.stdout).toMatch(/^A writes "A's late overwrite" with token \d+: refused \(409: stale fencing token/m);
    expect(r.stdout).toContain(`the store keeps "B's report"`);
  });
});
