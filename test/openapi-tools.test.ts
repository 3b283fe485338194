import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { lockLife } from "./openapi-client/client.js";
import { call, type Reply, uniqueName } from "./support/http.js";
import { expectDeclared, LINE_OPERATIONS, type OpenApi, type Prism, startPrism } from "./support/prism.js";
import { startTestService, type TestService } from "./support/service.js";

// openapi.yaml checked by tools leasehold did not write: Redocly CLI's linter, Stoplight
// Prism as a validation proxy in front of the real service, and a client that
// openapi-typescript generates from it, type-checked and run with openapi-fetch.

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SPEC = join(ROOT, "openapi.yaml");
const doc = parse(readFileSync(SPEC, "utf8")) as OpenApi;

/** Runs a Node program to its end, without blocking this process (the service answers from it). */
function node(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
    const child = spawn(process.execPath, args, { cwd: o.cwd ?? ROOT, env: { ...process.env, ...o.env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", fail);
    child.on("close", (code) => done({ code, stdout, stderr }));
  });
}

describe("Redocly CLI", () => {
  it("lints openapi.yaml with its recommended rules: no errors, no warnings", async () => {
    const cli = join(ROOT, "node_modules/@redocly/cli/bin/cli.js");
    // JSON on stdout; stderr has a notice about Node 20 that is no finding.
    const run = await node([cli, "lint", "openapi.yaml", "--format=json"], {
      env: { REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_NOTIFICATIONS: "true" },
    });
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report.version).toBe("2.77.0");
    const found = report.problems.map((p: { ruleId: string; message: string; location: { pointer: string }[] }) => ({
      rule: p.ruleId,
      message: p.message,
      at: p.location[0]?.pointer,
    }));
    expect(found).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });
});

const TEAM = "openapi-tools-team-key";
const ADMIN = "openapi-tools-admin-key";
const as = (key: string) => ({ authorization: `Bearer ${key}` });
const team = as(TEAM);
/** A name the team key may use. */
const ours = (label: string) => `oa:${uniqueName(label)}`;

let svc: TestService;
/** Prism with request validation: traffic the document allows, every answer validated. */
let strict: Prism;
/** Prism without it: the refusals' deliberately bad requests reach the service, and the answers are validated. */
let lenient: Prism;

beforeAll(async () => {
  svc = await startTestService({
    env: {
      LEASEHOLD_API_KEYS: JSON.stringify([
        { key: TEAM, prefixes: ["oa:"] },
        { key: ADMIN, prefixes: [""], admin: true },
      ]),
      // One stream: the one this test opens makes the next a 429.
      LEASEHOLD_MAX_STREAMS: "1",
    },
  });
  [strict, lenient] = await Promise.all([
    startPrism(SPEC, svc.url, { validateRequest: true }),
    startPrism(SPEC, svc.url, { validateRequest: false }),
  ]);
});

afterAll(async () => {
  await Promise.all([strict?.stop(), lenient?.stop()]);
  await svc?.stop();
});

/** The operations and statuses answered through Prism, as `operationId status`. */
const answered = new Set<string>();

/**
 * One request through `prism`: it must answer `status` with no violation Prism found (an
 * error-level one makes it answer 500 itself, a warning comes in its `sl-violations`
 * header) and none of those Prism does not look for (see expectDeclared).
 */
async function via(
  prism: Prism,
  status: number,
  method: string,
  path: string,
  init: Parameters<typeof call>[3] = {},
): Promise<Reply> {
  const r = await call(prism.url, method, path, init);
  const what = `${method} ${path} through Prism`;
  expect(r.headers.get("sl-violations"), `${what}: violations`).toBeNull();
  expect(r.status, `${what}: ${r.text}\nPrism's log ends:\n${prism.output().slice(-3000)}`).toBe(status);
  const operationId = expectDeclared(doc, method, new URL(path, "http://x").pathname, r);
  answered.add(`${operationId} ${status}`);
  return r;
}

describe("Stoplight Prism as a validation proxy in front of the service", () => {
  it("allows every answer of a lock's life: grant, replay, reads, fence, state, renew, contention, release", async () => {
    const name = ours("lock");
    const key = { ...team, "idempotency-key": `idem-${name}` };
    const grant = (
      await via(strict, 201, "POST", `/locks/${name}`, {
        json: { ttl: 30, owner: "host-a", value: "10.0.0.7:8080", lockDelay: 0 },
        headers: key,
      })
    ).json;
    const replay = await via(strict, 200, "POST", `/locks/${name}`, {
      json: { ttl: 30, owner: "host-a", value: "10.0.0.7:8080", lockDelay: 0 },
      headers: key,
    });
    expect(replay.json.token).toBe(grant.token);
    const read = await via(strict, 200, "GET", `/locks/${name}`, { headers: team });
    const index = read.json.index;
    // A blocking read that times out unchanged.
    await via(strict, 200, "GET", `/locks/${name}?index=${index}&wait=0.2`, { headers: team });
    await via(strict, 200, "GET", "/locks?prefix=oa:&limit=5", { headers: team });
    await via(strict, 200, "GET", `/locks/${name}/fence?token=${grant.token}`, { headers: team });
    await via(strict, 409, "GET", `/locks/${name}/fence?token=${grant.token - 1}`, { headers: team });
    await via(strict, 404, "GET", `/locks/${name}/state`, { headers: team });
    await via(strict, 200, "PUT", `/locks/${name}/state`, {
      json: { lease: grant.lease, value: '{"lastRun":"2026-12-01T09:00:00Z"}' },
      headers: team,
    });
    await via(strict, 200, "GET", `/locks/${name}/state`, { headers: team });
    await via(strict, 200, "PUT", `/locks/${name}/renew`, { json: { lease: grant.lease, value: "v2" }, headers: team });
    await via(strict, 200, "PUT", `/locks/${name}/renew`, { form: { lease: grant.lease }, headers: team });
    await via(strict, 200, "PUT", `/locks/${name}/renew?lease=${grant.lease}`, { headers: team });
    const held = await via(strict, 409, "POST", `/locks/${name}`, { json: { ttl: 5 }, headers: team });
    expect(held.json.code).toBe("lock-held");
    await via(strict, 204, "DELETE", `/locks/${name}?lease=${grant.lease}`, { headers: team });
    await via(strict, 410, "PUT", `/locks/${name}/renew`, { json: { lease: grant.lease }, headers: team });
    await via(strict, 410, "DELETE", `/locks/${name}`, { json: { lease: grant.lease }, headers: team });
    await via(strict, 410, "POST", `/locks/${name}/release`, { json: { lease: grant.lease }, headers: team });
    const free = await via(strict, 404, "GET", `/locks/${name}`, { headers: team });
    expect(free.headers.get("leasehold-index")).toMatch(/^\d+$/);
    await via(strict, 404, "DELETE", `/locks/${name}?force=true`, { headers: as(ADMIN) });
  });

  it("allows a place in line: queued, redeemed at its turn, and left", async () => {
    const name = ours("queue");
    const holder = (await via(strict, 201, "POST", `/locks/${name}`, { json: { ttl: 30 }, headers: team })).json;
    const queued = await via(strict, 202, "POST", `/locks/${name}`, {
      json: { ttl: 30, queue: true, ticketTtl: 30 },
      headers: team,
    });
    const ticket = queued.json.ticket;
    await via(strict, 202, "POST", `/locks/${name}`, { json: { ticket }, headers: team });
    await via(strict, 204, "DELETE", `/locks/${name}?lease=${holder.lease}`, { headers: team });
    const turn = (await via(strict, 201, "POST", `/locks/${name}`, { json: { ticket }, headers: team })).json;
    const second = await via(strict, 202, "POST", `/locks/${name}`, {
      form: { queue: "true", ticketTtl: "30" },
      headers: team,
    });
    await via(strict, 204, "DELETE", `/locks/${name}?ticket=${second.json.ticket}`, { headers: team });
    await via(strict, 410, "POST", `/locks/${name}`, { json: { ticket: second.json.ticket }, headers: team });
    await via(strict, 204, "POST", `/locks/${name}/release`, { json: { lease: turn.lease }, headers: team });
  });

  it("allows every answer of a semaphore's life", async () => {
    const name = ours("sem");
    const base = `/semaphores/${name}`;
    const a = (await via(strict, 201, "POST", base, { json: { limit: 2, ttl: 30, value: "a" }, headers: team })).json;
    const b = (await via(strict, 201, "POST", base, { form: { limit: "2", ttl: "30" }, headers: team })).json;
    expect(a.limit).toBe(2);
    const full = await via(strict, 409, "POST", base, { json: { limit: 2 }, headers: team });
    expect(full.json.code).toBe("lock-held");
    const mismatch = await via(strict, 409, "POST", base, { json: { limit: 3 }, headers: team });
    expect(mismatch.json.code).toBe("limit-mismatch");
    const read = await via(strict, 200, "GET", base, { headers: team });
    expect(read.json.holders).toHaveLength(2);
    await via(strict, 200, "GET", `${base}?index=${read.json.index}&wait=0.2`, { headers: team });
    await via(strict, 200, "GET", "/semaphores?prefix=oa:&limit=1000", { headers: team });
    await via(strict, 200, "GET", `${base}/fence?token=${b.token}`, { headers: team });
    await via(strict, 409, "GET", `${base}/fence?token=1`, { headers: team });
    await via(strict, 200, "PUT", `${base}/renew`, { json: { lease: a.lease, value: "a2" }, headers: team });
    await via(strict, 200, "PUT", `${base}/state`, { json: { lease: b.lease, value: "checkpoint" }, headers: team });
    await via(strict, 200, "GET", `${base}/state`, { headers: team });
    await via(strict, 404, "DELETE", `${base}?force=true&token=1`, { headers: as(ADMIN) });
    await via(strict, 204, "DELETE", `${base}?force=true&token=${a.token}`, { headers: as(ADMIN) });
    await via(strict, 204, "POST", `${base}/release`, { json: { lease: b.lease }, headers: team });
    await via(strict, 410, "PUT", `${base}/renew`, { json: { lease: b.lease }, headers: team });
    await via(strict, 404, "GET", base, { headers: team });
  });

  it("allows the open routes' answers, with no API key", async () => {
    for (const path of [
      "/healthz",
      "/readyz",
      "/metrics",
      "/openapi.yaml",
      "/docs",
      "/docs/assets/swagger-ui.css",
      "/docs/assets/init.js",
      "/",
      "/dashboard/app.css",
      "/dashboard/app.js",
    ]) {
      await via(strict, 200, "GET", path);
    }
    await via(lenient, 404, "GET", "/docs/assets/nothing.css");
    await via(lenient, 400, "GET", "/healthz?verbose=1");
  });

  it("allows the refusals' answers: 400, 401, 403, 413, 415, 422, 429", async () => {
    const name = ours("refused");
    const invalid = await via(lenient, 400, "POST", `/locks/${name}`, { json: { ttl: 1.5 }, headers: team });
    expect(invalid.json.errors).toEqual([{ field: "ttl", message: "ttl must be a whole number of seconds, got 1.5" }]);
    await via(lenient, 400, "POST", `/semaphores/${name}`, { json: { ttl: 5 }, headers: team });
    await via(lenient, 400, "GET", "/locks?limit=ten", { headers: team });
    await via(lenient, 400, "PUT", `/locks/${name}/renew?ttl=5`, { headers: team });
    await via(lenient, 400, "GET", `/locks/${name}/fence`, { headers: team });
    await via(lenient, 400, "GET", "/events?kind=queue", { headers: team });
    await via(strict, 400, "GET", `/locks/${name}?wait=1`, { headers: team });
    await via(strict, 400, "DELETE", `/locks/${name}`, { headers: team });
    // A key Prism sees (it answers a missing one itself) that the service does not know.
    const unknown = await via(strict, 401, "POST", `/locks/${name}`, { headers: as("not-a-key") });
    expect(unknown.headers.get("www-authenticate")).toMatch(/^Bearer realm="leasehold"/);
    await via(strict, 401, "GET", "/events", { headers: as("not-a-key") });
    await via(strict, 403, "POST", `/locks/not-ours:${name}`, { headers: team });
    await via(strict, 403, "DELETE", `/locks/${name}?force=true`, { headers: team });
    await via(strict, 413, "PUT", `/locks/${name}/state`, {
      json: { lease: "0123456789abcdef", value: "x".repeat(70_000) },
      headers: team,
    });
    await via(lenient, 415, "POST", `/locks/${name}`, {
      body: "ttl 30",
      headers: { ...team, "content-type": "text/plain" },
    });
    const key = { ...team, "idempotency-key": `idem-${name}` };
    const grant = (await via(strict, 201, "POST", `/locks/${name}`, { json: { ttl: 30 }, headers: key })).json;
    await via(strict, 422, "POST", `/locks/${name}`, { json: { ttl: 31 }, headers: key });
    await via(strict, 204, "DELETE", `/locks/${name}?lease=${grant.lease}`, { headers: team });

    // The one stream this instance serves, opened directly: Prism reads an answer to its end,
    // and a stream has none. Its answer's headers are checked here instead.
    const stream = new AbortController();
    const res = await fetch(`${svc.url}/events?prefix=oa:`, { headers: team, signal: stream.signal });
    try {
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
      expectDeclared(doc, "GET", "/events", { status: res.status, headers: res.headers, text: "" });
      const busy = await via(strict, 429, "GET", "/events", { headers: team });
      expect(busy.headers.get("retry-after")).toMatch(/^\d+$/);
    } finally {
      stream.abort();
    }
  });
});

describe("a client generated from openapi.yaml by openapi-typescript, called with openapi-fetch", () => {
  const project = join(ROOT, "test/openapi-client");
  // openapi-typescript needs TypeScript 5's compiler API: the client project has its own.
  const from = createRequire(join(project, "package.json"));
  const tool = (pkg: string, bin: string) => join(dirname(from.resolve(`${pkg}/package.json`)), bin);
  // Both tools load TypeScript's compiler: seconds alone, tens of seconds on a busy machine.

  it("is what openapi-typescript 7.13.0 generates now (run `npm run openapi` after changing routes)", async () => {
    expect(JSON.parse(readFileSync(from.resolve("openapi-typescript/package.json"), "utf8")).version).toBe("7.13.0");
    const dir = mkdtempSync(join(tmpdir(), "leasehold-openapi-ts-"));
    try {
      const out = join(dir, "schema.d.ts");
      // In the client project, as scripts/generate-openapi.ts runs it.
      const run = await node([tool("openapi-typescript", "bin/cli.js"), "../../openapi.yaml", "-o", out], {
        cwd: project,
      });
      expect(run.code, run.stdout + run.stderr).toBe(0);
      expect(readFileSync(join(project, "schema.d.ts"), "utf8")).toBe(readFileSync(out, "utf8"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it("type-checks with the client project's own TypeScript (5.9, strict, nodenext)", async () => {
    expect(JSON.parse(readFileSync(from.resolve("typescript/package.json"), "utf8")).version).toBe("5.9.3");
    const run = await node([tool("typescript", "bin/tsc"), "-p", project]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  }, 90_000);

  it("acquires, checks the fence, renews and releases through Prism", async () => {
    const name = ours("generated");
    const life = await lockLife(strict.url, name, TEAM);
    expect(life.grant).toMatchObject({ name, owner: "openapi-fetch", value: "generated", ttl: 30 });
    expect(life.renewed).toMatchObject({ token: life.grant.token, value: "renewed" });
    expect(life.heldUntil).toBe(life.grant.expiresAt);
    expect(life.releasedStatus).toBe(204);
    expect(life.lost).toBe(true);
  });
});

describe("with etcd gone", () => {
  it("Prism allows the 503s, and every status the contract names was answered through it", async () => {
    await svc.etcd.stop();
    const down = await via(strict, 503, "GET", "/readyz");
    expect(down.headers.get("retry-after")).toMatch(/^\d+$/);
    await via(strict, 503, "POST", `/locks/${ours("down")}`, { json: { ttl: 5 }, headers: team });
    const statuses = new Set([...answered].map((a) => Number(a.split(" ")[1])));
    expect([...statuses].sort()).toEqual([200, 201, 202, 204, 400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 503]);
    for (const op of LINE_OPERATIONS)
      expect(
        [...answered].some((a) => a.startsWith(`${op} `)),
        op,
      ).toBe(true);
  });
});
