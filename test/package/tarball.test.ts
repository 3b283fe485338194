import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupAlive, signalGroup } from "../../src/cli/process-group.js";
import { freePort } from "../../src/node/local-etcd.js";
import { call, uniqueName, until } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";
import { wranglerDev } from "../support/worker.js";

/**
 * The packages as a user gets them: both are packed with `npm pack` (which builds them
 * through `prepack`) and installed with `npm install <tarball>` into fresh projects
 * outside the repository, then used the way the README says.
 */

const repo = new URL("../..", import.meta.url).pathname;
const bin = (name: string) => join(repo, "node_modules", ".bin", name);
const version = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string }).version;

/** The environment a user's shell would have: nothing from `npm test` or leasehold's settings. */
const userEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    (e): e is [string, string] =>
      e[1] !== undefined && !/^(npm_|ETCD_|LEASEHOLD_)/i.test(e[0]) && e[0] !== "NODE_OPTIONS" && e[0] !== "INIT_CWD",
  ),
);

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never rejects. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd, env: { ...userEnv, npm_config_update_notifier: "false", ...env }, timeout: 90_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

async function ok(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  const r = await run(cmd, args, cwd, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A process in its own group: npx, the shell it starts and node, or wrangler and workerd. */
function startGroup(cmd: string, args: string[], cwd: string, env: Record<string, string>) {
  let output = "";
  const child: ChildProcess = spawn(cmd, args, {
    cwd,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...userEnv, npm_config_update_notifier: "false", ...env },
  });
  child.stdout?.on("data", (d) => {
    output += d;
  });
  child.stderr?.on("data", (d) => {
    output += d;
  });
  /** SIGTERM to the group, as a terminal's Ctrl-C or `kill -- -PGID` sends it; waits until none is left (SIGKILL after 10 s). */
  const stop = async () => {
    const pgid = child.pid;
    if (pgid === undefined) return;
    signalGroup(pgid, "SIGTERM");
    try {
      await until(() => !groupAlive(pgid), "the process group to exit", 10_000);
    } finally {
      if (groupAlive(pgid)) signalGroup(pgid, "SIGKILL");
    }
  };
  return { child, output: () => output, stop };
}

/** A fresh npm project with `tarball` installed, as a user would install it. */
async function project(dir: string, tarball: string): Promise<string> {
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  // The packages' dependencies come from npm's cache when it has them (CI's `npm ci` fills it).
  await ok("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball], dir);
  return dir;
}

/** Type-checks the files `files` of `dir` under `compilerOptions` with this repo's tsc. */
async function typecheck(dir: string, name: string, compilerOptions: object, files: string[]): Promise<Ran> {
  const config = join(dir, `tsconfig.${name}.json`);
  writeFileSync(config, JSON.stringify({ compilerOptions: { strict: true, noEmit: true, ...compilerOptions }, files }));
  return run(process.execPath, [join(repo, "node_modules", "typescript", "bin", "tsc"), "-p", config], dir);
}

/**
 * A TypeScript program using the client: calls, types and errors as the README shows
 * them. The `@ts-expect-error` lines fail the check if the types were `any`.
 */
const consumer = (from: string) => `import {
  createClient,
  type Grant,
  LeaseholdError,
  type LeaseholdErrorCode,
  type LockInfo,
  type Problem,
  type Ticket,
  withLock,
} from "${from}";

export async function main(url: string): Promise<number> {
  const client = createClient({ url, timeoutMs: 5_000 });
  const grant: Grant = await client.acquire("ts:consumer", { ttl: 10, owner: "tsc" });
  const info: LockInfo | undefined = await client.inspect("ts:consumer");
  const queued: Grant | Ticket = await client.acquire("ts:queued", { queue: true });
  if ("ticket" in queued) await client.leave("ts:queued", queued.ticket);
  await client.release("ts:consumer", grant.lease);
  // @ts-expect-error: a fencing token is a number
  const wrong: string = grant.token;
  try {
    return await withLock("ts:consumer", async ({ token, signal }) => (signal.aborted ? -1 : token), { url, ttl: 5 });
  } catch (err) {
    if (err instanceof LeaseholdError) {
      const code: LeaseholdErrorCode = err.code;
      const problem: Problem | undefined = err.problem;
      return problem?.holder?.token ?? (code === "lock-held" ? 0 : (info?.token ?? wrong.length));
    }
    throw err;
  }
}
`;

/** The same, from CommonJS: \`require\` of the ES module (Node 20.19+ and 22.12+). */
const cjsConsumer = (from: string) => `import client = require("${from}");
export const make = (url: string): client.LeaseholdClient => client.createClient({ url });
`;

/** A Node program: lock, see it held by someone else, release; prints what it saw. */
const nodeCheck = (from: string) => `import { createClient, LeaseholdError, withLock } from "${from}";
const [url, name] = process.argv.slice(2);
const client = createClient({ url });
const seen = await withLock(name, async (lock) => {
  const other = await client.acquire(name, { retryMs: 0 }).catch((e) => (e instanceof LeaseholdError ? e.code : String(e)));
  return { token: lock.token, other, held: (await client.inspect(name))?.token };
}, { url, ttl: 5 });
console.log(JSON.stringify({ ...seen, after: (await client.inspect(name)) ?? null }));
`;

const requireCheck = (from: string) => `const { createClient } = require("${from}");
createClient({ url: process.argv[2] }).inspect(process.argv[3]).then((info) => console.log(JSON.stringify(info ?? null)));
`;

let tmp: string;
let svc: TestService;
const tarballs = { client: "", server: "" };
let clientOnly: string;
let server: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "leasehold-tarball-"));
  const packed = join(tmp, "packed");
  mkdirSync(packed);
  // One after the other: both prepack scripts build the client into the repository.
  await ok("npm", ["pack", "--pack-destination", packed], repo);
  await ok("npm", ["pack", "--pack-destination", packed], join(repo, "clients", "typescript"));
  const files = readdirSync(packed);
  tarballs.server = join(packed, files.find((f) => f === `leasehold-${version}.tgz`) ?? "missing leasehold tarball");
  tarballs.client = join(packed, files.find((f) => f.startsWith("leasehold-client-")) ?? "missing client tarball");
  [svc, clientOnly, server] = await Promise.all([
    startTestService(),
    project(join(tmp, "client-only"), tarballs.client),
    project(join(tmp, "server"), tarballs.server),
  ]);
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The client as each package offers it, and the project that installed that package. */
const imports: [string, () => string][] = [
  ["leasehold-client", () => clientOnly],
  ["leasehold/client", () => server],
];

describe("the packed packages, installed from their tarballs", () => {
  it("leasehold-client installs alone: compiled JavaScript and declarations, no dependencies", () => {
    const installed = readdirSync(join(clientOnly, "node_modules")).filter((f) => !f.startsWith("."));
    expect(installed).toEqual(["leasehold-client"]);
    const pkgDir = join(clientOnly, "node_modules", "leasehold-client");
    const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
    expect(pkg.dependencies ?? {}).toEqual({});
    expect(pkg.peerDependencies ?? {}).toEqual({});
    const dist = readdirSync(join(pkgDir, "dist"));
    expect(dist.every((f) => /\.(js|d\.ts)$/.test(f))).toBe(true);
    expect(dist).toContain("index.js");
    expect(dist).toContain("index.d.ts");
  });

  it("leasehold installs compiled JavaScript only: no sources, no TypeScript loader", () => {
    const pkgDir = join(server, "node_modules", "leasehold");
    expect(readdirSync(pkgDir).sort()).toEqual(["LICENSE", "README.md", "bin", "dist", "openapi.yaml", "package.json"]);
    expect(existsSync(join(server, "node_modules", "tsx"))).toBe(false);
    expect(existsSync(join(server, "node_modules", "typescript"))).toBe(false);
    const names = readdirSync(join(pkgDir, "dist"), { recursive: true }).map(String);
    expect(names.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && !f.endsWith(".map"))).toEqual([]);
    expect(names.filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it.each(imports)(
    "Node imports %s (ESM, and CommonJS through require) and locks against a real service",
    async (from, dir) => {
      const cwd = dir();
      writeFileSync(join(cwd, "check.mjs"), nodeCheck(from));
      writeFileSync(join(cwd, "check.cjs"), requireCheck(from));
      const name = uniqueName("tarball");
      const seen = JSON.parse(await ok(process.execPath, ["check.mjs", svc.url, name], cwd));
      expect(seen).toMatchObject({ other: "lock-held", after: null });
      expect(seen.held).toBe(seen.token);
      expect(await ok(process.execPath, ["check.cjs", svc.url, name], cwd)).toBe("null\n");
    },
  );

  it.each(imports)(
    "a TypeScript program using %s type-checks under nodenext and bundler resolution",
    async (from, dir) => {
      const cwd = dir();
      writeFileSync(join(cwd, "consumer.ts"), consumer(from));
      writeFileSync(join(cwd, "consumer.cts"), cjsConsumer(from));
      // Declarations checked too (skipLibCheck off): they must stand alone. On Node the
      // fetch types come from @types/node, for a bundler from the DOM library.
      const nodeTypes = { types: ["node"], typeRoots: [join(repo, "node_modules", "@types")], lib: ["es2022"] };
      const results = await Promise.all([
        typecheck(cwd, "nodenext", { module: "nodenext", moduleResolution: "nodenext", ...nodeTypes }, [
          "consumer.ts",
          "consumer.cts",
        ]),
        typecheck(
          cwd,
          "bundler",
          { module: "esnext", moduleResolution: "bundler", types: [], lib: ["es2022", "dom"] },
          ["consumer.ts"],
        ),
      ]);
      for (const r of results) expect(r.stdout + r.stderr).toBe("");
      // And a mistake is caught: the check is not vacuous.
      writeFileSync(join(cwd, "wrong.ts"), `import { createClient } from "${from}";\ncreateClient({ ttl: 5 });\n`);
      const wrong = await typecheck(cwd, "wrong", { module: "nodenext", moduleResolution: "nodenext", ...nodeTypes }, [
        "wrong.ts",
      ]);
      expect(wrong.stdout).toMatch(/wrong\.ts\(2,\d+\): error TS2353: .*'ttl'/);
    },
  );

  it("leasehold-client runs inside workerd (wrangler dev)", async () => {
    // The repository's own Worker check, importing the installed package instead.
    const source = readFileSync(join(repo, "test", "client", "workerd", "worker.ts"), "utf8");
    const worker = source.replace(/from "[./]+\/src\/client\/index\.js"/, 'from "leasehold-client"');
    expect(worker).not.toBe(source);
    writeFileSync(join(clientOnly, "worker.ts"), worker);
    writeFileSync(
      join(clientOnly, "wrangler.toml"),
      'name = "leasehold-client-tarball"\nmain = "worker.ts"\ncompatibility_date = "2026-04-01"\n',
    );
    const port = await freePort();
    const wrangler = startGroup(
      process.execPath,
      wranglerDev({
        port,
        inspectorPort: await freePort(),
        persist: join(tmp, "wrangler-state"),
        vars: { LEASEHOLD_URL: svc.url },
      }),
      clientOnly,
      { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", CI: "true" },
    );
    try {
      const url = `http://127.0.0.1:${port}`;
      await until(
        async () => {
          if (wrangler.child.exitCode !== null) throw new Error(`wrangler dev exited:\n${wrangler.output()}`);
          return fetch(url, { method: "HEAD" }).then(
            () => true,
            () => false,
          );
        },
        () => `wrangler dev to answer:\n${wrangler.output()}`,
        40_000,
      );
      const [locked, observed] = await Promise.all([
        fetch(`${url}/?name=${uniqueName("tarball-workerd")}`),
        fetch(`${url}/?observe&name=${uniqueName("tarball-workerd")}`),
      ]);
      expect(locked.status).toBe(200);
      const seen = await locked.json();
      expect(seen).toMatchObject({ other: "lock-held", aborted: false, after: null });
      expect(seen.renewals).toBeGreaterThanOrEqual(2);
      expect(observed.status).toBe(200);
      expect((await observed.json()).events).toEqual(["reset", "held one", "held two", "free"]);
    } finally {
      await wrangler.stop();
    }
  }, 60_000);

  it("npx leasehold serve runs the compiled service; leasehold exec and --version the compiled CLI", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    expect((await ok("npx", ["--no", "--", "leasehold", "--version"], server)).trim()).toBe(version);
    const service = startGroup("npx", ["--no", "--", "leasehold", "serve"], server, {
      ETCD_ENDPOINTS: svc.etcd.endpoint,
      LEASEHOLD_PREFIX: "tarball-serve/",
      PORT: String(port),
      HOST: "127.0.0.1",
    });
    try {
      await until(
        async () => {
          if (service.child.exitCode !== null) throw new Error(`leasehold serve exited:\n${service.output()}`);
          return (await call(url, "GET", "/readyz").catch(() => undefined))?.status === 200;
        },
        () => `leasehold serve to become ready:\n${service.output()}`,
        30_000,
      );
      // Its packages resolve from the project's node_modules (Swagger UI's files too).
      expect((await call(url, "GET", "/docs/assets/swagger-ui.css")).status).toBe(200);
      expect((await call(url, "GET", "/openapi.yaml")).text).toContain("openapi:");

      const name = uniqueName("tarball-exec");
      const exec = await run(
        "npx",
        [
          "--no",
          "leasehold",
          "exec",
          name,
          "--url",
          url,
          "--",
          process.execPath,
          "-e",
          "console.log('token', process.env.LEASEHOLD_TOKEN)",
        ],
        server,
      );
      expect(exec.stderr).toBe("");
      expect(exec.code).toBe(0);
      expect(exec.stdout).toMatch(/^token \d+$/m);
      expect((await call(url, "GET", `/locks/${name}`)).status).toBe(404);
    } finally {
      await service.stop();
    }
    // It drained and stopped on the signal, rather than being killed.
    await until(
      () => service.output().includes('"msg":"stopped"'),
      () => `"stopped" in:\n${service.output()}`,
    );
  }, 60_000);

  it.each([
    ["leasehold-client", () => tarballs.client],
    ["leasehold", () => tarballs.server],
  ])("publint and arethetypeswrong find no problem in %s", async (_name, tarball) => {
    const [lint, types] = await Promise.all([
      run(bin("publint"), ["run", "--strict", tarball()], tmp),
      run(bin("attw"), ["--profile", "esm-only", "--format", "json", tarball()], tmp),
    ]);
    expect(lint.code, lint.stdout + lint.stderr).toBe(0);
    expect(lint.stdout).toContain("All good!");
    expect(types.code, types.stdout + types.stderr).toBe(0);
    // ESM only (see README, "Install"): the one thing attw notes is that `require`
    // gets ES modules (Node 20.19+ and 22.12+ load them; the .cts consumer above checks
    // it type-checks), and that the node10 resolution, which cannot read "exports" (gone
    // from TypeScript 7), does not find `leasehold/client`.
    const problems = Object.values(
      JSON.parse(types.stdout).problems as Record<string, { kind: string; resolutionKind?: string }[]>,
    ).flat();
    for (const p of problems) {
      expect([
        ["CJSResolvesToESM", "node16-cjs"],
        ["NoResolution", "node10"],
      ]).toContainEqual([p.kind, p.resolutionKind]);
    }
  });
});
