import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../src/cli/exit-codes.js";
import { createClient } from "../../src/client/index.js";
import { freePort } from "../../src/node/local-etcd.js";
import { startProxy } from "../client/proxy.js";
import { call, uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { binDir, cleanEnv, cli, startCli } from "./run.js";

let svc: TestService;
let env: Record<string, string>;
const dirs: string[] = [];
beforeAll(async () => {
  svc = await startTestService();
  env = { LEASEHOLD_URL: svc.url };
});
afterAll(async () => {
  await svc?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Each spawn of the command costs ~0.4 s of CPU: allow for a busy machine.
describe.concurrent("leasehold CLI", { timeout: 60_000 }, () => {
  it("--help for the command and each verb, listing the exit codes", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    for (const code of ["64", "73", "74", "75", "77"]) expect(top.stdout).toMatch(new RegExp(`^  ${code} `, "m"));
    const verbs = ["serve", "exec", "acquire", "renew", "release", "status"];
    const helps = await Promise.all(verbs.map((v) => cli([v, "--help"])));
    helps.forEach((h, i) => {
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`Usage: leasehold ${verbs[i]}`);
    });
  });

  it("the README documents the same exit codes as --help", async () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.split("## Client and CLI")[1]?.split("\n## ")[0] ?? "";
    const documented = [...section.matchAll(/^\| (\d+)(?:, (\d+))? \|/gm)].flatMap((m) => m.slice(1).filter(Boolean));
    const help = (await cli(["--help"])).stdout;
    const inHelp = [...help.matchAll(/^ {2}(\d+) /gm)].map((m) => m[1]);
    for (const code of Object.values(EXIT)) {
      expect(documented).toContain(String(code));
      if (code < 126) expect(inHelp).toContain(String(code));
    }
  });

  it("bad command lines exit 64", async () => {
    const runs = await Promise.all([
      cli(["frobnicate"]),
      cli(["acquire"]),
      cli(["acquire", "x", "--ttl", "soon"]),
      cli(["acquire", "x", "--bogus"]),
      cli(["exec", "x", "echo", "hi"]),
      cli(["exec", "x", "--"]),
      cli(["renew", "x"]),
      cli(["acquire", "no/slash"], env), // the service's 400
    ]);
    for (const r of runs) expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 64 });
    expect(runs[2]?.stderr).toContain("--ttl");
    expect(runs[4]?.stderr).toContain("put -- before the command");
    expect(runs[7]?.json).toMatchObject({ code: "invalid-request" });
  });

  it("acquire and status: JSON on stdout, 0 when acquired, 73 when held", async () => {
    const name = uniqueName("cli");
    const got = await cli(["acquire", name, "--ttl", "20", "--owner", "host-a"], env);
    expect(got.code).toBe(0);
    expect(got.json).toMatchObject({ name, ttl: 20, owner: "host-a" });
    const { token, lease } = got.json;

    const [held, status, listed] = await Promise.all([
      cli(["acquire", name, "--wait", "0.3"], env),
      cli(["status", name], env),
      cli(["status", "--prefix", name], env),
    ]);
    expect(held.code).toBe(73);
    expect(held.json).toMatchObject({ code: "lock-held", holder: { owner: "host-a", token } });
    expect(status.code).toBe(0);
    expect(status.json).toMatchObject({ held: true, name, token, owner: "host-a" });
    expect(status.stdout).not.toContain(lease);
    expect(listed.json.items.map((i: { name: string }) => i.name)).toEqual([name]);
  });

  it("renew and release: 0 while held, 74 once lost; status exits 3 when free", async () => {
    const name = uniqueName("cli");
    const { token, lease } = await createClient({ url: svc.url }).acquire(name, { ttl: 20 });
    const renewed = await cli(["renew", name, "--lease", lease], env);
    expect(renewed.code).toBe(0);
    expect(renewed.json).toMatchObject({ token, lease });

    const released = await cli(["release", name], { ...env, LEASEHOLD_LEASE: lease });
    expect(released).toMatchObject({ code: 0, json: { name, released: true } });
    const [again, renewLost, gone] = await Promise.all([
      cli(["release", name, "--lease", lease], env),
      cli(["renew", name, "--lease", lease], env),
      cli(["status", name], env),
    ]);
    expect(again.code).toBe(74);
    expect(again.json).toMatchObject({ code: "lock-lost", status: 410 });
    expect(renewLost.code).toBe(74);
    expect(gone).toMatchObject({ code: 3, json: { held: false, name } });
  });

  it("--format env prints assignments a shell can eval, and renew/release read LEASEHOLD_LEASE", async () => {
    const dir = binDir();
    dirs.push(dir);
    const name = uniqueName("shell");
    const script = `
      set -eu
      eval "$(leasehold acquire ${name} --ttl 20 --format env)"
      echo "name=$LEASEHOLD_NAME token=$LEASEHOLD_TOKEN"
      leasehold renew "$LEASEHOLD_NAME" >/dev/null
      leasehold release "$LEASEHOLD_NAME"
      if leasehold status "$LEASEHOLD_NAME" >/dev/null; then echo still-held; else echo "free, status exit $?"; fi
    `;
    const { stdout } = await promisify(execFile)("sh", ["-c", script], {
      env: cleanEnv({ ...env, PATH: `${dir}:${process.env.PATH}` }),
    });
    expect(stdout).toMatch(new RegExp(`^name=${name} token=\\d+$`, "m"));
    expect(stdout).toContain(`{"name":"${name}","released":true}`);
    expect(stdout).toContain("free, status exit 3");
  });

  it("an unreachable service exits 75 after --retry seconds", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    const r = await cli(["acquire", "x", "--retry", "0.5", "--url", url]);
    expect(r.code).toBe(75);
    expect(r.json).toMatchObject({ code: "network-error" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect((await cli(["--url", url, "status", "x"])).code).toBe(75);
  });

  it("sends LEASEHOLD_API_KEY as a bearer token; 401/403 exit 77", async () => {
    const proxy = await startProxy(svc.url);
    try {
      const name = uniqueName("key");
      const ok = await cli(["acquire", name, "--ttl", "60"], { LEASEHOLD_URL: proxy.url, LEASEHOLD_API_KEY: "k-123" });
      expect(ok.code).toBe(0);
      expect(proxy.seen.at(-1)?.headers.authorization).toBe("Bearer k-123");
      const none = await cli(["status", name], { LEASEHOLD_URL: proxy.url });
      expect(proxy.seen.at(-1)?.headers.authorization).toBeUndefined();
      expect(none.code).toBe(0);

      proxy.plan = () => ({ status: 403, body: { code: "forbidden", status: 403, detail: "not for this key" } });
      const denied = await cli(["acquire", name], { LEASEHOLD_URL: proxy.url, LEASEHOLD_API_KEY: "k-123" });
      expect(denied).toMatchObject({ code: 77, json: { code: "forbidden" } });
    } finally {
      await proxy.stop();
    }
  });

  it("serve runs the service like npm start and stops on SIGTERM", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const serve = startCli(["serve"], {
      ETCD_ENDPOINTS: svc.etcd.endpoint,
      PORT: String(port),
      HOST: "127.0.0.1",
      LEASEHOLD_PREFIX: "cli-serve/",
    });
    await until(() => serve.stdout().includes('"msg":"listening"'), "serve to listen", 30_000);
    const readyz = () => call(url, "GET", "/readyz").catch(() => ({ status: 0 }));
    await until(async () => (await readyz()).status === 200, "serve to be ready");
    expect((await readyz()).status).toBe(200);
    const got = await cli(["acquire", "served:one", "--ttl", "5"], { LEASEHOLD_URL: url });
    expect(got.code).toBe(0);
    serve.child.kill("SIGTERM");
    expect(await serve.exited).toBe(0);
  });
});
