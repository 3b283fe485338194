import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "./support/service.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

/** The first shell block under the heading `## title`, exactly as printed. */
function shellBlock(title: string): string {
  const section = readme.split(`## ${title}`)[1] ?? "";
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error(`README has no shell block under "${title}"`);
  return block;
}

/**
 * Runs a README shell block against the test service and checks that it printed the
 * statuses its comments promise, in order ("→ 201", "→ 201, then 200", …). Lines of an
 * event stream it prints are not answers (an `id:` may end in three digits too).
 */
async function runsAsPrinted(script: string, url: string, atLeast: number): Promise<string> {
  const promised = [...script.matchAll(/→ ([^\n]*)/g)].flatMap((m) => (m[1] ?? "").match(/\b\d{3}\b/g) ?? []);
  expect(promised.length).toBeGreaterThanOrEqual(atLeast);
  const runnable = script.replaceAll("http://127.0.0.1:8080", url);
  const { stdout } = await promisify(execFile)("bash", ["-euo", "pipefail", "-c", runnable], { timeout: 30_000 });
  const printed = stdout
    .trim()
    .split("\n")
    .filter((line) => !/^(event|data|id):|^:/.test(line))
    .map((line) => /(\d{3})$/.exec(line.trim())?.[1])
    .filter((s): s is string => s !== undefined);
  expect(printed).toEqual(promised);
  return stdout;
}

describe("README", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ env: { LEASEHOLD_PREFIX: "leasehold/" } });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("the curl walk-through works as printed and shows every status it promises", async () => {
    const stdout = await runsAsPrinted(shellBlock("Walk-through with curl"), svc.url, 14);
    // The grant printed by the first command is a full grant; the lease never shows in GET.
    expect(stdout).toMatch(/"token":\d+,"lease":"[0-9a-f]{48}"/);
  });

  it("the tickets and semaphores walk-through works as printed", async () => {
    const stdout = await runsAsPrinted(shellBlock("Waiting in line, tickets and semaphores"), svc.url, 14);
    const out = stdout.trim().split("\n");
    // Invocation 1 got a place in line, next after the holder, kept for the ticketTtl asked.
    const place = out[1] ?? "";
    for (const part of [/"ticket":"[0-9a-f]{16,64}"/, /"position":0\b/, /"ttl":300\b/, / 202$/]) {
      expect(place).toMatch(part);
    }
    // The caller behind it was told so.
    expect(out.find((l) => l.includes('"position":1'))).toMatch(/ 202$/);
    // The inspect showed the waiter; the semaphore's never showed a lease.
    expect(stdout).toMatch(/"waiters":1\b/);
    const semaphore = out.at(-1) ?? "";
    expect(semaphore).toMatch(/"limit":2/);
    expect(semaphore).not.toContain("lease");
  });

  it("the leader election with curl works as printed: campaign, proclaim, a blocking read, the stream, resign", async () => {
    const stdout = await runsAsPrinted(shellBlock("Leader election with curl"), svc.url, 6);
    const lines = stdout.trim().split("\n");
    expect(stdout).toMatch(/"value":"10\.0\.0\.7:8080"/);
    expect(stdout).toMatch(/"value":"10\.0\.0\.8:8080","index":\d+}/);
    const sse = lines.filter((line) => /^(event|data|id):/.test(line));
    expect(sse).toEqual(expect.arrayContaining(["event: reset", "event: held"]));
    expect(sse.find((line) => line.startsWith('data: {"kind":"lock"'))).toMatch(/"value":"10\.0\.0\.8:8080"/);
    expect(lines.at(-1)).toMatch(/"code":"lock-not-found","index":\d+} 404$/);
  });

  it("the fence check and guarded state example works as printed", async () => {
    const stdout = await runsAsPrinted(shellBlock("Correctness: fence the resource"), svc.url, 7);
    // The state read after the release is the one the grant wrote, with its token.
    const token = /"token":(\d+)/.exec(stdout)?.[1];
    expect(stdout).toContain(`{"value":"2026-12-01","token":${token},`);
    expect(stdout).toMatch(/"code":"fence-stale"/);
  });

  it("documents every configuration variable the service reads", async () => {
    const { configSchema } = await import("../src/config.js");
    for (const variable of Object.keys(configSchema.shape)) expect(readme).toContain(`\`${variable}\``);
  });
});
