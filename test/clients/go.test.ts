import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../support/service.js";

// The Go client (clients/go) is tested by its own `go test` suite against this real
// service: auth on, with an admin key (force release) and a normal key scoped to the
// names the Go tests use.
const ADMIN = "go-client-admin-key";
const NORMAL = "go-client-normal-key";
const MODULE = fileURLToPath(new URL("../../clients/go", import.meta.url));

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({
    env: {
      LEASEHOLD_API_KEYS: JSON.stringify([
        { key: ADMIN, prefixes: [""], admin: true },
        { key: NORMAL, prefixes: ["go-test:"] },
      ]),
    },
  });
});
afterAll(async () => {
  await svc?.stop();
});

/**
 * Runs `go ARGS` in the module, asynchronously: the service answers from this process,
 * so blocking it (spawnSync) would leave every request of the Go tests unanswered.
 */
function go(args: string[], cwd = MODULE): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn("go", args, {
      cwd,
      env: {
        ...process.env,
        LEASEHOLD_URL: svc.url,
        LEASEHOLD_API_KEY: NORMAL,
        LEASEHOLD_ADMIN_KEY: ADMIN,
        // The standard library only: never download a module or a toolchain.
        GOPROXY: "off",
        GOTOOLCHAIN: "local",
        GOFLAGS: "-mod=readonly",
        // Kept between runs (a build cache makes the next run fast), and writable
        // even where HOME is not.
        GOCACHE: process.env.GOCACHE ?? join(tmpdir(), "leasehold-go-cache"),
        GOPATH: process.env.GOPATH ?? join(tmpdir(), "leasehold-go-path"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      fail(
        err.code === "ENOENT"
          ? new Error("`go` is not on PATH: install Go (apt-get install golang-go; .ci/run does) to test clients/go")
          : err,
      );
    });
    child.on("close", (code) => done({ code, output }));
  });
}

describe("Go client (clients/go)", () => {
  it("passes go vet and its go test suite against the real service", async () => {
    const vet = await go(["vet", "./..."]);
    if (vet.code !== 0) throw new Error(`go vet ./... failed (exit ${vet.code}):\n${vet.output}`);
    const test = await go(["test", "-count=1", "-timeout=120s", "-v", "./..."]);
    if (test.code !== 0) throw new Error(`go test ./... failed (exit ${test.code}):\n${test.output}`);
    // Every scenario ran (none skipped, none missing).
    for (const name of [
      "TestGrant",
      "TestContention",
      "TestLostLockCancelsFn",
      "TestLockExpiresAtTheClientDeadlineWhenRenewsGetNoAnswer",
      "TestRetryAfterDroppedResponse",
      "TestSemaphore",
      "TestTickets",
      "TestWithLockQueue",
      "TestFence",
      "TestGuardedState",
      "TestHeldFencesAndState",
      "TestLockDelay",
    ]) {
      expect(test.output, `${name} did not pass`).toMatch(new RegExp(`--- PASS: ${name} `));
    }
    expect(test.output).not.toMatch(/--- SKIP/);
  }, 240_000);

  it("installs into a fresh module as its README shows (a replace directive), and runs WithLock from it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "leasehold-go-consumer-"));
    try {
      writeFileSync(
        join(dir, "go.mod"),
        [
          "module example.com/consumer",
          "",
          "go 1.19",
          "",
          "require github.com/leasehold/leasehold/clients/go v0.0.0",
          "",
          `replace github.com/leasehold/leasehold/clients/go => ${MODULE}`,
          "",
        ].join("\n"),
      );
      writeFileSync(
        join(dir, "main.go"),
        `package main

import (
	"context"
	"fmt"
	"os"

	leasehold "github.com/leasehold/leasehold/clients/go"
)

func main() {
	c := leasehold.NewClient("", "") // LEASEHOLD_URL, LEASEHOLD_API_KEY
	err := c.WithLock(context.Background(), "go-test:consumer", leasehold.LockOptions{}, func(ctx context.Context, held *leasehold.Held) error {
		info, err := c.Inspect(ctx, "go-test:consumer")
		if err != nil {
			return err
		}
		fmt.Printf("held token=%d inspected=%d\\n", held.Token, info.Token)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`,
      );
      const run = await go(["run", "."], dir);
      if (run.code !== 0) throw new Error(`go run in a consumer module failed (exit ${run.code}):\n${run.output}`);
      const [, held, inspected] = /held token=(\d+) inspected=(\d+)/.exec(run.output) ?? [];
      expect(Number(held)).toBeGreaterThan(0);
      expect(inspected).toBe(held);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
