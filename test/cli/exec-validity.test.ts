import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stopAt } from "../../src/cli/exec.js";
import { createClient, holderMarginMs } from "../../src/client/index.js";
import { startProxy } from "../client/proxy.js";
import { uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { fileLines, startCli } from "./run.js";

let svc: TestService;
let dir: string;
beforeAll(async () => {
  svc = await startTestService();
  dir = mkdtempSync(join(tmpdir(), "leasehold-validity-"));
});
afterAll(async () => {
  await svc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const TTL = 4;

/**
 * `exec NAME --ttl 4 --grace S` (against `url`) of a job that writes the time (epoch ms,
 * its own clock: the host's) to a file every 50 ms and, on SIGTERM, to another, then
 * exits or (`obey` false) goes on ticking. `started` resolves at its first tick.
 */
function execJob(url: string, name: string, grace: number, obey: boolean) {
  const term = join(dir, `${name}.term`);
  const ticksFile = join(dir, `${name}.ticks`);
  const trap = `trap 'date +%s%3N > "${term}"${obey ? "; exit 0" : ""}' TERM`;
  const script = `${trap}; while :; do date +%s%3N >> "${ticksFile}"; sleep 0.05; done`;
  const args = ["exec", name, "--ttl", String(TTL), "--grace", String(grace), "--", "sh", "-c", script];
  const run = startCli(args, { LEASEHOLD_URL: url });
  const ticks = () => fileLines(ticksFile).map(Number);
  return {
    run,
    started: until(() => ticks().length > 0, "the job to start"),
    termAt: () => Number(readFileSync(term, "utf8").trim()),
    ticks,
  };
}

/** The end of validity exec announced when it stopped the job (its own clock: the host's). */
function announcedValidUntil(stderr: string): number {
  const iso = /SIGKILL by (\S+), when its validity ends/.exec(stderr)?.[1];
  expect(iso, stderr).toBeDefined();
  return Date.parse(iso as string);
}

describe("exec stops the job within the lock's validity", { timeout: 60_000 }, () => {
  it("SIGTERM --grace before SIGKILL at the end of validity, not before renewals have failed for half the ttl", () => {
    const lock = (renewedAt: number, ttl: number) => ({
      renewedAt,
      validUntil: renewedAt + ttl * 1000 - holderMarginMs(ttl),
      grant: { ttl } as never,
    });
    // ttl 30: valid for 28 s; SIGKILL 0.1 s ahead of that, SIGTERM --grace (10 s) before.
    expect(stopAt(lock(0, 30), 10)).toBe(17_900);
    // A grace longer than that leaves the renewals half the ttl first.
    expect(stopAt(lock(0, 30), 20)).toBe(15_000);
    expect(stopAt(lock(1_000, 2), 10)).toBe(2_000);
    // No grace: SIGTERM with SIGKILL.
    expect(stopAt(lock(0, 30), 0)).toBe(27_900);
  });

  it("etcd stopped: a job that ignores SIGTERM gets it before validUntil and acts no more after it, whatever --grace", async () => {
    const own = await startTestService();
    const etcdPid = own.etcd.pid as number;
    const name = uniqueName("etcd-stopped");
    // --grace 5 is more than the validity leaves: SIGTERM once renewals have failed for
    // half the ttl, SIGKILL at the end of validity, not after the grace period.
    const j = execJob(own.url, name, 5, false);
    const { run } = j;
    try {
      await j.started;
      const stoppedAt = Date.now();
      process.kill(etcdPid, "SIGSTOP");
      expect(await run.exited).toBe(74);
      const termAt = j.termAt();
      const lastTick = Math.max(...j.ticks());
      // It went on after SIGTERM (so SIGKILL ended it).
      expect(lastTick).toBeGreaterThan(termAt);
      // The last renew that succeeded was sent before etcd stopped, so the validity ends
      // no later than this, whatever exec says.
      const latest = stoppedAt + TTL * 1000 - holderMarginMs(TTL);
      expect(termAt).toBeGreaterThan(stoppedAt);
      expect(termAt).toBeLessThan(latest);
      expect(lastTick).toBeLessThan(latest);
      // And by exec's own count: SIGTERM before the end of validity, nothing done after it.
      const validUntil = announcedValidUntil(run.stderr());
      expect(validUntil).toBeLessThanOrEqual(latest);
      expect(termAt).toBeLessThan(validUntil);
      expect(lastTick).toBeLessThan(validUntil);
      const silent = new RegExp(`no successful renew of the lock ${name} for ([\\d.]+) s`).exec(run.stderr())?.[1];
      expect(Number(silent)).toBeGreaterThanOrEqual(TTL / 2);
    } finally {
      process.kill(etcdPid, "SIGCONT");
      run.child.kill("SIGKILL");
      await own.stop();
    }
  });

  it("service unreachable: SIGTERM --grace before validUntil, and a job that obeys it is done by then", async () => {
    const proxy = await startProxy(svc.url);
    const name = uniqueName("unreachable");
    const j = execJob(proxy.url, name, 1, true);
    const { run } = j;
    try {
      await j.started;
      // Renewals go unanswered from now on (a partition between exec and the service).
      const cutAt = Date.now();
      proxy.plan = (r) => (r.method === "PUT" ? "blackhole" : "forward");
      expect(await run.exited).toBe(74);
      const termAt = j.termAt();
      const latest = cutAt + TTL * 1000 - holderMarginMs(TTL);
      expect(termAt).toBeGreaterThan(cutAt);
      expect(termAt).toBeLessThan(latest);
      const validUntil = announcedValidUntil(run.stderr());
      expect(validUntil).toBeLessThanOrEqual(latest);
      expect(termAt).toBeLessThan(validUntil);
      // Not earlier than it had to: SIGKILL would come 0.1 s ahead of validUntil, SIGTERM 1 s before that.
      expect(termAt).toBeGreaterThanOrEqual(validUntil - 1_100 - 1);
      expect(Math.max(...j.ticks())).toBeLessThan(validUntil);
      // Its lease was still live in etcd: the job ended, exec released it.
      expect(await createClient({ url: svc.url }).inspect(name)).toBeUndefined();
    } finally {
      run.child.kill("SIGKILL");
      await proxy.stop();
    }
  });
});
