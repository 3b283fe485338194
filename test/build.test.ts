import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceCommand } from "../scripts/bench/procs.js";
import { freePort } from "../src/node/local-etcd.js";
import { startTestEtcd } from "./support/etcd.js";
import { call, uniqueName, until } from "./support/http.js";

const repo = new URL("..", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${repo}package.json`, "utf8")) as { scripts: Record<string, string> };

describe("the production build", () => {
  let etcd: Awaited<ReturnType<typeof startTestEtcd>>;
  beforeAll(async () => {
    etcd = await startTestEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it("npm run build writes dist/main.js, which start:prod runs with plain node", async () => {
    const { stdout } = await promisify(execFile)("npm", ["run", "--silent", "build"], { cwd: repo, timeout: 60_000 });
    expect(stdout).toContain("built dist/main.js");
    expect(pkg.scripts["start:prod"]).toMatch(/^exec node (\S+ )*dist\/main\.js$/);
  });

  it.each(["grpc", "http"])(
    "the built service (ETCD_TRANSPORT=%s) serves a lock cycle and its docs, and stops on SIGTERM",
    async (transport) => {
      // Exactly what the bench runs: start:prod, after building.
      const command = await serviceCommand(repo);
      expect(command.entry).toBe("dist/main.js");
      const port = await freePort();
      const clean = Object.fromEntries(
        Object.entries(process.env).filter(
          ([k]) => !k.startsWith("ETCD_") && !k.startsWith("LEASEHOLD_") && k !== "NODE_OPTIONS",
        ),
      );
      const child: ChildProcess = spawn(process.execPath, command.args, {
        cwd: repo,
        env: {
          ...clean,
          ETCD_ENDPOINTS: etcd.endpoint,
          ETCD_TRANSPORT: transport,
          PORT: String(port),
          HOST: "127.0.0.1",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout?.on("data", (d) => {
        out += d;
      });
      child.stderr?.on("data", (d) => {
        out += d;
      });
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      try {
        const url = `http://127.0.0.1:${port}`;
        await until(
          async () => {
            if (child.exitCode !== null) throw new Error(`the bundle exited:\n${out}`);
            return (await call(url, "GET", "/readyz").catch(() => undefined))?.status === 200;
          },
          () => `the bundle to become ready:\n${out}`,
          20_000,
        );
        // No TypeScript loader in the process: plain node running the bundle.
        const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, "utf8");
        expect(cmdline).not.toContain("tsx");
        expect(cmdline).toContain("dist/main.js");

        const name = uniqueName("built");
        const grant = await call(url, "POST", `/locks/${name}`, { json: { ttl: 10, owner: "bundle" } });
        expect(grant.status, grant.text).toBe(201);
        expect((await call(url, "GET", `/locks/${name}`)).json.owner).toBe("bundle");
        expect((await call(url, "DELETE", `/locks/${name}`, { json: { lease: grant.json.lease } })).status).toBe(204);
        // Swagger UI's files come from node_modules, found from dist/.
        expect((await call(url, "GET", "/docs/assets/swagger-ui.css")).status).toBe(200);
        expect((await call(url, "GET", "/openapi.yaml")).text).toContain("openapi:");

        child.kill("SIGTERM");
        expect(await exited).toBe(0);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        await exited;
      }
    },
  );
});
