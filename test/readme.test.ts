import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "./support/service.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

/** The first shell block under `heading`, exactly as printed. */
function shellBlock(heading: string): string {
  const section = readme.split(heading)[1] ?? "";
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error(`README has no shell block under ${heading}`);
  return block;
}

const walkThrough = () => shellBlock("## Walk-through with curl");

/** The statuses each comment of a block promises, in order ("→ 201", "→ 201, then 200", …). */
const promisedStatuses = (script: string) =>
  [...script.matchAll(/→ ([^\n]*)/g)].flatMap((m) => (m[1] ?? "").match(/\b\d{3}\b/g) ?? []);

describe("README", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ env: { LEASEHOLD_PREFIX: "leasehold/" } });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("the curl walk-through works as printed and shows every status it promises", async () => {
    const script = walkThrough();
    const promised = promisedStatuses(script);
    expect(promised.length).toBeGreaterThanOrEqual(14);
    const runnable = script.replaceAll("http://127.0.0.1:8080", svc.url);
    const { stdout } = await promisify(execFile)("bash", ["-euo", "pipefail", "-c", runnable], { timeout: 30_000 });
    const printed = stdout
      .trim()
      .split("\n")
      .map((line) => /(\d{3})$/.exec(line.trim())?.[1])
      .filter((s): s is string => s !== undefined);
    expect(printed).toEqual(promised);
    // The grant printed by the first command is a full grant; the lease never shows in GET.
    expect(stdout).toMatch(/"token":\d+,"lease":"[0-9a-f]{48}"/);
  });

  it("the leader election with curl works as printed: campaign, proclaim, a blocking read, the stream, resign", async () => {
    const script = shellBlock("### Leader election with curl");
    const promised = promisedStatuses(script);
    expect(promised).toEqual(["201", "200", "200", "200", "204", "404"]);
    const runnable = script.replaceAll("http://127.0.0.1:8080", svc.url);
    const { stdout } = await promisify(execFile)("bash", ["-euo", "pipefail", "-c", runnable], { timeout: 30_000 });
    const lines = stdout.trim().split("\n");
    // The event stream's lines are not answers (an `id:` may end in three digits too).
    const sse = lines.filter((line) => /^(event|data|id):|^:/.test(line));
    const printed = lines
      .filter((line) => !sse.includes(line))
      .map((line) => /(\d{3})$/.exec(line.trim())?.[1])
      .filter((s): s is string => s !== undefined);
    expect(printed).toEqual(promised);
    expect(stdout).toMatch(/"value":"10\.0\.0\.7:8080"/);
    expect(stdout).toMatch(/"value":"10\.0\.0\.8:8080","index":\d+}/);
    expect(sse).toEqual(expect.arrayContaining(["event: reset", "event: held"]));
    expect(sse.find((line) => line.startsWith('data: {"kind":"lock"'))).toMatch(/"value":"10\.0\.0\.8:8080"/);
    expect(lines.at(-1)).toMatch(/"code":"lock-not-found","index":\d+} 404$/);
  });

  it("documents every configuration variable the service reads", async () => {
    const { configSchema } = await import("../src/config.js");
    for (const variable of Object.keys(configSchema.shape)) expect(readme).toContain(`\`${variable}\``);
  });
});
