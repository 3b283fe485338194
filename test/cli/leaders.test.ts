import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type LeaseholdClient } from "../../src/client/index.js";
import { startProxy } from "../client/proxy.js";
import { revokeInEtcd } from "../client/revoke.js";
import { uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { type CliRun, cli, startCli } from "./run.js";

let svc: TestService;
let client: LeaseholdClient;
let env: Record<string, string>;
beforeAll(async () => {
  svc = await startTestService();
  client = createClient({ url: svc.url });
  env = { LEASEHOLD_URL: svc.url };
});
afterAll(async () => {
  await svc?.stop();
});

/** The JSON lines a command printed so far. */
// biome-ignore lint/suspicious/noExplicitAny: tests inspect arbitrary JSON
const jsonLines = (run: CliRun): any[] =>
  run
    .stdout()
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));

/** Stops a command that is still running (whatever the test's outcome). */
const stop = (...runs: CliRun[]) => {
  for (const r of runs) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
};

// Each spawn of the command costs ~0.4 s of CPU: allow for a busy machine.
describe.concurrent("leasehold watch", { timeout: 60_000 }, () => {
  it("prints one JSON line per event, starting with a reset and the holders; SIGINT ends it with 0", async () => {
    const base = uniqueName("watch");
    const a = await client.acquire(`${base}.a`, { ttl: 30, value: "first" });
    const run = startCli(["watch", `${base}.`], env);
    try {
      await until(
        () => jsonLines(run).length >= 2,
        () => `the reset and the holder; stderr: ${run.stderr()}`,
      );
      await client.renew(`${base}.a`, a.lease, { value: "second" });
      await client.release(`${base}.a`, a.lease);
      const b = await client.acquire(`${base}.b`, { ttl: 30 });
      await until(
        () => jsonLines(run).length >= 5,
        () => `five lines, got ${run.stdout()}`,
      );
      const lines = jsonLines(run);
      expect(lines.map((l) => `${l.type} ${l.name ?? l.reason} ${l.value ?? ""}`.trim())).toEqual([
        "reset start",
        `held ${base}.a first`,
        `held ${base}.a second`,
        `free ${base}.a`,
        `held ${base}.b`,
      ]);
      expect(lines[4]).toMatchObject({ kind: "lock", token: b.token, ttl: 30, id: expect.any(String) });
      expect(lines[3]).toMatchObject({ token: a.token });

      run.child.kill("SIGINT");
      expect(await run.exited).toBe(0);

      // --after resumes after a line's id: what happened since, no reset.
      await client.release(`${base}.b`, b.lease);
      const resumed = startCli(["watch", "--name", `${base}.b`, "--after", lines[3].id], env);
      try {
        await until(
          () => jsonLines(resumed).length >= 2,
          () => `two lines, got ${resumed.stdout()}`,
        );
        expect(jsonLines(resumed).map((l) => `${l.type} ${l.name}`)).toEqual([`held ${base}.b`, `free ${base}.b`]);
        resumed.child.kill("SIGTERM");
        expect(await resumed.exited).toBe(0);
      } finally {
        stop(resumed);
      }
    } finally {
      stop(run);
    }
  });

  it("goes on after a dropped connection, without losing or repeating a line", async () => {
    const proxy = await startProxy(svc.url);
    const base = uniqueName("watch-drop");
    proxy.plan = () => "stream";
    const run = startCli(["watch", `${base}.`, "--url", proxy.url], {});
    try {
      await until(
        () => jsonLines(run).length >= 1,
        () => `the reset; stderr: ${run.stderr()}`,
      );
      const x = await client.acquire(`${base}.x`, { ttl: 30 });
      await until(() => jsonLines(run).length >= 2, "held x");
      const down = { status: 503, headers: { "retry-after": "0" }, body: { code: "backend-unavailable" } };
      proxy.plan = () => down;
      proxy.cut();
      await client.release(`${base}.x`, x.lease);
      await until(
        () => proxy.seen.some((s) => s.url.startsWith("/events") && s.action === down),
        "a reconnect refused while down",
      );
      proxy.plan = () => "stream";
      await until(
        () => jsonLines(run).length >= 3,
        () => `free x; stderr: ${run.stderr()}`,
      );
      expect(jsonLines(run).map((l) => l.type)).toEqual(["reset", "held", "free"]);
      expect(run.stderr()).toMatch(/event stream: .*reconnecting in \d+ ms/);
      run.child.kill("SIGTERM");
      expect(await run.exited).toBe(0);
    } finally {
      stop(run);
      await proxy.stop();
    }
  });

  it("stops quietly when its reader goes away, and rejects bad arguments", async () => {
    const base = uniqueName("watch-pipe");
    await client.acquire(`${base}.a`, { ttl: 30 });
    // As `watch | head -2`: the pipe closes after the second line.
    const piped = startCli(["watch", `${base}.`], env);
    try {
      await until(() => jsonLines(piped).length >= 2, "two lines");
      piped.child.stdout?.destroy();
      await client.acquire(`${base}.b`, { ttl: 30 });
      expect(await piped.exited).toBe(0);
    } finally {
      stop(piped);
    }
    const bad = await cli(["watch", "--kind", "mutex"], env);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("--kind must be lock or semaphore");
    const both = await cli(["watch", "a", "--name", "b"], env);
    expect(both.code).toBe(64);
  });
});

describe.concurrent("leasehold elect", { timeout: 60_000 }, () => {
  /** `elect NAME` of a shell that prints its token and keeps running; SIGTERM makes it exit 0. */
  const member = (name: string, value: string) =>
    startCli(
      [
        "elect",
        name,
        "--value",
        value,
        // Nothing here waits for an expiry (the leader resigns, the lease is revoked), so
        // the TTL is only slack. At 2 s a leader may act until 1.4 s after a renew's send
        // (the client's margin) and renews every 0.67 s: one renew answered 0.7 s late on a
        // loaded CI machine, and the leader gave its lock up, as designed, before the test
        // revoked it. At 6 s that takes a renew 3.2 s late.
        "--ttl",
        "6",
        "--",
        "sh",
        "-c",
        `trap 'echo resigned; exit 0' TERM; echo "leader $LEASEHOLD_TOKEN"; while :; do sleep 0.05; done`,
      ],
      env,
    );
  const tokenOf = (run: CliRun) => Number(/leader (\d+)/.exec(run.stdout())?.[1] ?? Number.NaN);
  const leads = (run: CliRun) => /leader \d+/.test(run.stdout());

  it("runs the command on one member at a time; the next takes over with a larger token when it ends", async () => {
    const name = uniqueName("elect");
    const a = member(name, "host-a");
    const b = member(name, "host-b");
    try {
      await until(() => leads(a) || leads(b), "a leader");
      const [first, second] = leads(a) ? [a, b] : [b, a];
      const firstValue = first === a ? "host-a" : "host-b";
      expect(await client.inspect(name)).toMatchObject({ token: tokenOf(first), value: firstValue });
      expect(leads(second)).toBe(false);
      // The other member may still be starting (a loaded machine): wait for it to say so.
      await until(() => second.stderr().includes(`campaigning for ${name}`), "the other member to campaign");
      expect(leads(second)).toBe(false);

      // The leader is stopped: its command ends (exit 0 on TERM), it resigns, the other leads.
      first.child.kill("SIGTERM");
      expect(await first.exited).toBe(0);
      expect(first.stdout()).toContain("resigned");
      await until(() => leads(second), "the second member to lead");
      expect(tokenOf(second)).toBeGreaterThan(tokenOf(first));
      expect((await client.inspect(name))?.value).toBe(first === a ? "host-b" : "host-a");

      // Its lease taken away: the command is stopped and elect exits 74.
      await revokeInEtcd(svc, name);
      expect(await second.exited).toBe(74);
      expect(second.stdout()).toContain("resigned");
      expect(second.stderr()).toContain(`lost the leadership of ${name}`);
    } finally {
      stop(a, b);
    }
  });

  it("the command proclaims a new value with renew --value; a signal before election ends the campaign", async () => {
    const name = uniqueName("proclaim");
    // Elected at once (nobody else campaigns); resigns when the command ends.
    const alone = await cli(["elect", name, "--", "sh", "-c", "echo started"], env);
    expect(alone.code).toBe(0);
    expect(alone.stdout).toBe("started\n");
    expect(await client.inspect(name)).toBeUndefined();

    const held = await client.acquire(name, { ttl: 30 });
    const waiting = startCli(["elect", name, "--quiet", "--", "sh", "-c", "echo ran"], env);
    try {
      await until(async () => ((await client.inspect(name))?.waiters ?? 0) === 1, "the campaign in line");
      waiting.child.kill("SIGINT");
      expect(await waiting.exited).toBe(130);
      expect(waiting.stdout()).not.toContain("ran");
      expect(waiting.stderr()).toBe("");
    } finally {
      stop(waiting);
      await client.release(name, held.lease);
    }

    const proclaiming = await cli(
      [
        "elect",
        name,
        "--value",
        "v1",
        "--",
        "sh",
        "-c",
        `"${process.execPath}" "${new URL("../../bin/leasehold.mjs", import.meta.url).pathname}" renew "$LEASEHOLD_NAME" --value v2 && exit 5`,
      ],
      env,
    );
    expect(proclaiming.code).toBe(5);
    expect(JSON.parse(proclaiming.stdout)).toMatchObject({ name, value: "v2" });
  });
});
