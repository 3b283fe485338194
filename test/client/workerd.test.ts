import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/node/local-etcd.js";
import { uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { wranglerDev } from "../support/worker.js";

const repo = new URL("../..", import.meta.url).pathname;

let svc: TestService;
let wrangler: ChildProcess | undefined;
let workerUrl = "";
let persist = "";
beforeAll(async () => {
  svc = await startTestService();
  const port = await freePort();
  persist = mkdtempSync(join(tmpdir(), "leasehold-client-workerd-"));
  // Its own process group, so wrangler and workerd stop together.
  wrangler = spawn(
    process.execPath,
    wranglerDev({
      config: join(repo, "test", "client", "workerd", "wrangler.toml"),
      port,
      inspectorPort: await freePort(),
      persist,
      vars: { LEASEHOLD_URL: svc.url },
    }),
    { cwd: repo, detached: true, stdio: "ignore", env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" } },
  );
  workerUrl = `http://127.0.0.1:${port}`;
  const answers = () =>
    fetch(workerUrl, { method: "HEAD" }).then(
      () => true,
      () => false,
    );
  await until(answers, "wrangler dev to answer", 20_000);
});
afterAll(async () => {
  if (wrangler?.pid && wrangler.exitCode === null) {
    const exited = new Promise((r) => wrangler?.once("exit", r));
    process.kill(-wrangler.pid, "SIGTERM");
    await exited;
  }
  rmSync(persist, { recursive: true, force: true });
  await svc?.stop();
});

describe("leasehold/client in Cloudflare Workers (workerd)", () => {
  it("withLock acquires, renews a 2 s lock for 2.5 s, sees others refused, and releases", async () => {
    const name = uniqueName("workerd");
    const res = await fetch(`${workerUrl}/?name=${name}`);
    const seen = await res.json();
    expect(res.status).toBe(200);
    expect(seen).toMatchObject({ other: "lock-held", aborted: false, after: null });
    expect(seen.inspected).toBe(seen.token);
    expect(seen.renewals).toBeGreaterThanOrEqual(2);
  });

  it("observe reads the event stream and campaign publishes and proclaims values", async () => {
    const name = uniqueName("workerd-observe");
    const res = await fetch(`${workerUrl}/?observe&name=${name}`);
    expect(res.status).toBe(200);
    const seen = await res.json();
    expect(seen.events).toEqual(["reset", "held one", "held two", "free"]);
    expect(seen.token).toBeGreaterThan(0);
    expect(Number(seen.lastEventId)).toBeGreaterThan(seen.token);
  });
});
