import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "./support/service.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

/** The shell block under "## Walk-through with curl", exactly as printed. */
function walkThrough(): string {
  const section = readme.split("## Walk-through with curl")[1] ?? "";
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error("README has no walk-through block");
  return block;
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
    const script = walkThrough();
    // The statuses each comment promises, in order ("→ 201", "→ 201, then 200", …).
    const promised = [...script.matchAll(/→ ([^\n]*)/g)].flatMap((m) => (m[1] ?? "").match(/\b\d{3}\b/g) ?? []);
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

  it("documents every configuration variable the service reads", async () => {
    const { configSchema } = await import("../src/config.js");
    for (const variable of Object.keys(configSchema.shape)) expect(readme).toContain(`\`${variable}\``);
  });
});
