// The PostgreSQL example against a real PostgreSQL server, a real etcd and the service:
// a holder is paused (SIGSTOP) past its TTL between reading a row and writing it, a
// second holder takes the lock and writes, and the first resumes and writes too. With
// the fence in the UPDATE, or the fence check, or guarded state, the stale write is
// refused; without, it overwrites the second holder's (the lost update).
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, repo } from "../cli/run.js";
import { call, uniqueName, until } from "../support/http.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";
import { startTestService, type TestService } from "../support/service.js";

const example = join(repo, "examples", "postgres");

let svc: TestService;
let postgres: TestPostgres;
let db: pg.Client;
const jobs: ChildProcess[] = [];

beforeAll(async () => {
  [svc, postgres] = await Promise.all([startTestService(), startTestPostgres()]);
  db = new pg.Client(postgres.url);
  await db.connect();
  await db.query(readFileSync(join(example, "schema.sql"), "utf8"));
});

afterAll(async () => {
  for (const job of jobs) {
    if (job.exitCode === null && job.signalCode === null && job.pid !== undefined) {
      // A job left stopped by a failed test: resume it, then kill it.
      for (const signal of ["SIGCONT", "SIGKILL"] as const) {
        try {
          process.kill(job.pid, signal);
        } catch {
          // It exited meanwhile.
        }
      }
    }
  }
  await db?.end();
  await svc?.stop();
  await postgres?.destroy();
});

interface Job {
  child: ChildProcess;
  out(): string;
  exited: Promise<number | null>;
  /** Waits for a line of its output matching `re` and returns the match. */
  line(re: RegExp, ms?: number): Promise<RegExpExecArray>;
  /** The fencing token it printed on its grant. */
  token(): Promise<number>;
}

/** Runs examples/postgres/job.mjs as a user would, against the test service and database. */
function startJob(who: string, mode: string, lock: string, report: string, args: string[]): Job {
  const child = spawn(
    process.execPath,
    [join(example, "job.mjs"), who, "--mode", mode, "--lock", lock, "--report", report, ...args],
    { cwd: repo, env: cleanEnv({ LEASEHOLD_URL: svc.url, DATABASE_URL: postgres.url }), stdio: "pipe" },
  );
  jobs.push(child);
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  child.stderr.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  const line = async (re: RegExp, ms = 20_000) => {
    let match: RegExpExecArray | null = null;
    await until(
      () => {
        match = re.exec(out);
        return match !== null || child.exitCode !== null;
      },
      () => `job ${who} to print ${re}; it printed:\n${out}`,
      ms,
    );
    if (!match) throw new Error(`job ${who} exited (${child.exitCode}) without printing ${re}; it printed:\n${out}`);
    return match;
  };
  return {
    child,
    out: () => out,
    exited,
    line,
    token: async () => Number((await line(/acquired \S+ token=(\d+)/))[1]),
  };
}

/**
 * The scenario: A (ttl 2 s) takes the lock and reads, then stalls (SIGSTOP) between its
 * last look at the lock and its write, so it stops renewing. B waits for the lock, which
 * it gets once A's lease has expired, reads and writes. Then A resumes and writes.
 */
async function pausedHolder(mode: string) {
  const lock = uniqueName("report");
  const report = uniqueName("daily");
  const a = startJob("A", mode, lock, report, ["--ttl", "2", "--pause"]);
  await a.line(/^\[A\] paused before writing/m);
  a.child.kill("SIGSTOP");
  const aToken = await a.token();
  expect(a.out()).toContain("[A] read runs=0 last_by=-");

  const b = startJob("B", mode, lock, report, ["--ttl", "10", "--wait", "30"]);
  expect(await b.exited, b.out()).toBe(0);
  const bToken = await b.token();
  expect(bToken).toBeGreaterThan(aToken);
  expect(b.out()).toContain("[B] read runs=0 last_by=-");
  expect(b.out()).toContain(`[B] wrote runs=1 token=${bToken}`);

  a.child.kill("SIGCONT");
  a.child.stdin?.end("\n");
  const aCode = await a.exited;
  return { lock, report, a, aToken, aCode, bToken };
}

async function row(report: string) {
  const { rows } = await db.query("SELECT runs, last_by, fence FROM reports WHERE id = $1", [report]);
  return { runs: rows[0].runs, lastBy: rows[0].last_by, fence: Number(rows[0].fence) };
}

describe("examples/postgres: a job paused past its TTL, against a real PostgreSQL", { timeout: 60_000 }, () => {
  it("fenced: the database refuses the stale holder's UPDATE; the row keeps B's write", async () => {
    const { report, a, aToken, aCode, bToken } = await pausedHolder("fenced");
    expect(a.out()).toContain(
      `[A] refused: token ${aToken} is stale (the report was last written with token ${bToken})`,
    );
    expect(aCode, a.out()).toBe(2);
    expect(await row(report)).toEqual({ runs: 1, lastBy: "B", fence: bToken });
  });

  it("unfenced: the stale holder's plain UPDATE overwrites B's (the lost update)", async () => {
    const { report, a, aCode } = await pausedHolder("unfenced");
    expect(a.out()).toMatch(/^\[A\] wrote runs=1 token=\d+$/m);
    expect(aCode, a.out()).toBe(0);
    // Two runs both wrote, each believing it held the lock: the count says one, signed by A.
    expect(await row(report)).toMatchObject({ runs: 1, lastBy: "A" });
  });
});

describe("examples/postgres: resources that can't compare tokens themselves", { timeout: 60_000 }, () => {
  it("fence check: leasehold answers fence-stale, so the stale holder does not write", async () => {
    const { report, a, aToken, aCode } = await pausedHolder("fence-check");
    // B released at its end: the lock is free, so fence-stale carries no current token.
    expect(a.out()).toContain(`[A] refused: token ${aToken} is stale (the lock's current token: none, it is free)`);
    expect(aCode, a.out()).toBe(2);
    expect(await row(report)).toMatchObject({ runs: 1, lastBy: "B" });
  });

  it("guarded state: leasehold refuses the stale holder's PUT (410); the state keeps B's write", async () => {
    const { lock, a, aToken, aCode, bToken } = await pausedHolder("guarded");
    expect(a.out()).toContain(
      `[A] refused: token ${aToken} is stale (the report was last written with token ${bToken})`,
    );
    expect(aCode, a.out()).toBe(2);
    const state = await call(svc.url, "GET", `/locks/${encodeURIComponent(lock)}/state`);
    expect(state.status, state.text).toBe(200);
    expect(state.json).toMatchObject({ token: bToken });
    expect(JSON.parse(state.json.value)).toEqual({ runs: 1, lastBy: "B" });
  });
});
