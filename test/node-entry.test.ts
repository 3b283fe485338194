import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../src/node/local-etcd.js";
import { startTestEtcd } from "./support/etcd.js";
import { call, sleep } from "./support/http.js";

const repo = new URL("..", import.meta.url).pathname;
const tsx = join(repo, "node_modules", ".bin", "tsx");
const entry = join(repo, "src", "node", "main.ts");

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

const started: Run[] = [];
const dirs: string[] = [];

function run(env: Record<string, string>, cwd = mkdtempSync(join(tmpdir(), "leasehold-run-"))): Run {
  dirs.push(cwd);
  let out = "";
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_") && !k.startsWith("LEASEHOLD_")),
  );
  const child = spawn(tsx, [entry], { cwd, env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const handle = { child, output: () => out, exited };
  started.push(handle);
  return handle;
}

async function waitReady(url: string, proc: Run, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`service did not become ready:\n${proc.output()}`);
}

afterEach(async () => {
  for (const p of started.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill("SIGKILL");
      await p.exited;
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("the Node entry point", () => {
  it("development mode starts a local etcd under .leasehold/, serves, and stops both on SIGTERM", async () => {
    const port = await freePort();
    const proc = run({ PORT: String(port), HOST: "127.0.0.1" });
    const url = `http://127.0.0.1:${port}`;
    await waitReady(url, proc);
    expect(proc.output()).toContain("development mode");
    const g = await call(url, "POST", "/locks/dev:one", { json: { ttl: 10 } });
    expect(g.status).toBe(201);
    const etcdUrl = JSON.parse(
      proc
        .output()
        .split("\n")
        .find((l) => l.includes("development mode")) ?? "{}",
    ).etcd;
    expect(etcdUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    // A waiter in flight at shutdown is answered, not dropped.
    const waiting = call(url, "POST", "/locks/dev:one", { json: { wait: 30 } });
    await sleep(300);
    proc.child.kill("SIGTERM");
    const w = await waiting;
    expect(w.status).toBe(503);
    expect(await proc.exited).toBe(0);
    // The local etcd went down with the service.
    await expect(fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1_000) })).rejects.toThrow();
  });

  it("without etcd installed, development mode says how to install it and exits 1", async () => {
    const proc = run({ PORT: String(await freePort()), ETCD_BIN: "/nonexistent/etcd" });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toContain("apt-get install -y etcd-server");
  });

  it("invalid configuration stops start-up with a message naming the variable", async () => {
    const proc = run({ PORT: "eighty", ETCD_ENDPOINTS: "http://127.0.0.1:1" });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toContain("PORT");
  });

  it.each([
    ["an empty key list", { LEASEHOLD_API_KEYS: "[]" }, /LEASEHOLD_API_KEYS.*empty/],
    ["a key without prefixes", { LEASEHOLD_API_KEYS: '[{"key":"k"}]' }, /prefixes is required/],
    ["both key variables", { LEASEHOLD_API_KEYS: "[]", LEASEHOLD_API_KEYS_FILE: "/tmp/k.json" }, /not both/],
    ["an unreadable key file", { LEASEHOLD_API_KEYS_FILE: "/nonexistent/keys.json" }, /LEASEHOLD_API_KEYS_FILE/],
  ])("bad API key configuration (%s) stops start-up", async (_label, env, message) => {
    const proc = run({ PORT: String(await freePort()), ETCD_ENDPOINTS: "http://127.0.0.1:1", ...env });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toMatch(message);
  });

  it("with ETCD_ENDPOINTS it uses that cluster and shuts down cleanly on SIGINT", async () => {
    const etcd = await startTestEtcd();
    try {
      const port = await freePort();
      const proc = run({ PORT: String(port), HOST: "127.0.0.1", ETCD_ENDPOINTS: etcd.endpoint });
      await waitReady(`http://127.0.0.1:${port}`, proc);
      expect(proc.output()).not.toContain("development mode");
      proc.child.kill("SIGINT");
      expect(await proc.exited).toBe(0);
    } finally {
      await etcd.destroy();
    }
  });
});
