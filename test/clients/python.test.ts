import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, repo } from "../cli/run.js";
import { startTestService, type TestService } from "../support/service.js";

/**
 * The Python client (clients/python): its own unittest suite run against a real etcd and
 * service with auth on, and the package installed with pip, offline, into a fresh venv.
 */

const pkg = join(repo, "clients", "python");
const USER_KEY = "py-client-test-key";
const ADMIN_KEY = "py-client-test-admin-key";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({
    env: {
      LEASEHOLD_API_KEYS: JSON.stringify([
        { key: USER_KEY, prefixes: ["py:"] },
        { key: ADMIN_KEY, prefixes: [""], admin: true },
      ]),
    },
  });
});
afterAll(async () => {
  await svc?.stop();
});

interface Run {
  code: number;
  output: string;
}

/** Runs a command to its end (stdout and stderr together, as a person would read them); never rejects. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string>, timeoutMs: number) {
  return new Promise<Run>((resolve) => {
    const child = execFile(
      cmd,
      args,
      // pip must not look for a newer pip (there is no network): nothing but the package is fetched.
      {
        cwd,
        env: cleanEnv({ PIP_DISABLE_PIP_VERSION_CHECK: "1", PYTHONDONTWRITEBYTECODE: "1", ...env }),
        timeout: timeoutMs,
      },
      (err) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, output });
      },
    );
    let output = "";
    child.stdout?.on("data", (d) => {
      output += d;
    });
    child.stderr?.on("data", (d) => {
      output += d;
    });
  });
}

/** Fails with the whole output of a run that failed, so CI shows the Python side's own report. */
function expectSuccess(r: Run, what: string) {
  if (r.code !== 0) expect.fail(`${what} exited ${r.code}:\n${r.output}`);
}

describe("Python client (clients/python)", () => {
  it("passes its unittest suite (grant, contention, lost lock, retry after a dropped response, …) against the service", {
    timeout: 180_000,
  }, async () => {
    const env = { LEASEHOLD_URL: svc.url, LEASEHOLD_API_KEY: USER_KEY, LEASEHOLD_ADMIN_API_KEY: ADMIN_KEY };
    const r = await run("python3", ["-m", "unittest", "discover", "-v"], pkg, env, 170_000);
    expectSuccess(r, "python3 -m unittest discover");
    const ran = /^Ran (\d+) tests? in/m.exec(r.output);
    expect(Number(ran?.[1])).toBeGreaterThanOrEqual(20);
    expect(r.output).toMatch(/^OK$/m);
    // The four scenarios every client is tested against ran, and passed.
    for (const scenario of ["Grant", "Contention", "LostLock", "RetryAfterDroppedResponse"]) {
      expect(r.output).toMatch(new RegExp(`\\(tests\\.test_scenarios\\.${scenario}\\.\\w+\\) \\.\\.\\. ok$`, "m"));
    }
    // And the fencing calls: fence check, guarded state, the held lock's, lock-delay.
    for (const group of ["Fence", "GuardedState", "HeldLock", "LockDelay"]) {
      expect(r.output).toMatch(new RegExp(`\\(tests\\.test_fences\\.${group}\\.\\w+\\) \\.\\.\\. ok$`, "m"));
    }
  });

  it("its tests fail loudly, saying what to set, when LEASEHOLD_URL is not set", async () => {
    const r = await run("python3", ["-m", "unittest", "discover"], pkg, {}, 60_000);
    expect(r.code).not.toBe(0);
    expect(r.output).toContain("LEASEHOLD_URL is not set: these tests run against a real leasehold service");
  });

  it("pip installs it offline into a fresh venv, and the installed package takes and releases a lock", {
    timeout: 180_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "leasehold-pyvenv-"));
    try {
      const venv = join(dir, "venv");
      expectSuccess(await run("python3", ["-m", "venv", venv], dir, {}, 120_000), "python3 -m venv");
      const pip = await run(join(venv, "bin", "pip"), ["install", "--no-index", "--no-input", pkg], dir, {}, 120_000);
      expectSuccess(pip, "pip install --no-index ./clients/python");
      expect(pip.output).toContain("Successfully installed leasehold-0.1.0");
      // From another folder, so that the import can only find the installed copy.
      const script = [
        "import leasehold, sys",
        "assert leasehold.__file__.startswith(sys.prefix), leasehold.__file__",
        "c = leasehold.Client()",
        "with c.lock('py:installed', ttl=10) as held:",
        "    assert c.inspect('py:installed').token == held.token",
        "assert c.inspect('py:installed') is None",
        "print('installed', leasehold.__version__, 'token', held.token)",
      ].join("\n");
      const r = await run(
        join(venv, "bin", "python"),
        ["-c", script],
        dir,
        { LEASEHOLD_URL: svc.url, LEASEHOLD_API_KEY: USER_KEY },
        60_000,
      );
      expectSuccess(r, "the installed package");
      expect(r.output).toMatch(/^installed 0\.1\.0 token \d+$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
