import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { freePort } from "../../src/node/local-etcd.js";
import { openWatches, startTestEtcd } from "./etcd.js";
import type { TestService } from "./service.js";

const repo = new URL("../..", import.meta.url).pathname;

/**
 * The arguments for node to run `wrangler dev` (this repository's wrangler) on loopback
 * `port`, with its state under `persist` and `vars` as the Worker's variables; the
 * Worker is `config`'s, else the wrangler.toml of the current directory.
 */
export function wranglerDev(o: {
  port: number;
  inspectorPort: number;
  persist: string;
  vars: Record<string, string>;
  config?: string;
}): string[] {
  return [
    join(repo, "node_modules", "wrangler", "bin", "wrangler.js"),
    "dev",
    ...(o.config ? ["--config", o.config] : []),
    "--ip",
    "127.0.0.1",
    "--port",
    String(o.port),
    "--inspector-port",
    String(o.inspectorPort),
    "--persist-to",
    o.persist,
    "--show-interactive-dev-session=false",
    ...Object.entries(o.vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
  ];
}

/**
 * The Worker (src/worker.ts) under `wrangler dev` (workerd, local mode) against a real
 * etcd through its JSON gateway. Wrangler runs offline in its own process group and is
 * stopped by group, so workerd never outlives the test.
 */
export async function startTestWorker(env: Record<string, string> = {}): Promise<TestService> {
  const etcd = await startTestEtcd();
  const port = await freePort();
  const inspectorPort = await freePort();
  const persist = mkdtempSync(join(tmpdir(), "leasehold-wrangler-"));
  const vars: Record<string, string> = {
    ETCD_ENDPOINTS: etcd.endpoint,
    ETCD_TIMEOUT_MS: "1500",
    LEASEHOLD_PREFIX: "test-locks/",
    ...env,
  };
  const args = wranglerDev({ port, inspectorPort, persist, vars });
  const logs: string[] = [];
  let output = "";
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: repo,
    detached: true, // its own process group: we stop wrangler and workerd together
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", CI: "true" },
  });
  let partial = "";
  const collect = (d: Buffer) => {
    output += d;
    // Only the Worker's own lines: wrangler's dev request log (its "[wrangler:…]" lines)
    // prints full URLs, and is not part of what leasehold logs. Chunks can split a
    // line, so only complete lines are judged.
    const lines = (partial + d.toString()).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) if (line.trim() && !line.includes("[wrangler")) logs.push(line);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const stopGroup = async () => {
    if (child.pid && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {}
      const killer = setTimeout(() => {
        try {
          if (child.pid) process.kill(-child.pid, "SIGKILL");
        } catch {}
      }, 5_000);
      await exited;
      clearTimeout(killer);
    }
  };

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) break;
    } catch {}
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopGroup();
      await etcd.destroy();
      throw new Error(`wrangler dev did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  const direct = createGrpcEtcd({ endpoints: [etcd.endpoint], timeoutMs: 3000 });
  return {
    url,
    etcd,
    direct,
    logs,
    prefix: vars.LEASEHOLD_PREFIX ?? "test-locks/",
    waiters: () => openWatches(etcd.endpoint),
    stop: async () => {
      await stopGroup();
      await direct.close();
      await etcd.destroy();
      rmSync(persist, { recursive: true, force: true });
    },
  };
}
