// A job that updates a PostgreSQL row under a leasehold lock, and writes only with its
// fencing token. Read README.md in this folder for how to run it and why it is safe.
//
//   LEASEHOLD_URL=http://127.0.0.1:8080 DATABASE_URL=postgres://… \
//     node examples/postgres/job.mjs A [--mode fenced] [--pause]
//
// Each run reads the report's row, adds one to `runs` and signs it as `last_by`: a
// read-modify-write, the kind of update a stale holder silently undoes. --mode says how
// the write is guarded:
//   fenced       UPDATE … WHERE fence <= $token: the database refuses a stale token.
//   unfenced     a plain UPDATE: what goes wrong without a fence (the lost update).
//   fence-check  asks leasehold whether the token is still current just before a plain
//                UPDATE: for resources that can't store and compare a token themselves.
//   guarded      keeps the report in leasehold's guarded state instead of PostgreSQL:
//                leasehold writes it only while this job's grant is the current one.
// --pause waits for a line on stdin between the job's last look at its lock and its
// write: the moment a GC pause, a swapped-out VM or Ctrl-Z hurts most.
//
// Prints one line per step ("[A] acquired report:daily token=12", "[A] wrote runs=1
// token=12", "[A] refused: …"); exits 0 when it wrote, 2 when its write was refused as
// stale (or it saw its lock lost before writing), 1 on any other failure.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { createClient } from "leasehold/client";
import pg from "pg";

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    mode: { type: "string", default: "fenced" },
    lock: { type: "string", default: "report:daily" },
    report: { type: "string", default: "daily" },
    ttl: { type: "string", default: "10" },
    wait: { type: "string", default: "30" },
    pause: { type: "boolean", default: false },
  },
});
const who = positionals[0] ?? `job-${process.pid}`;
const modes = ["fenced", "unfenced", "fence-check", "guarded"];
if (!modes.includes(opts.mode)) {
  console.error(`--mode must be one of ${modes.join(", ")}; got ${JSON.stringify(opts.mode)}`);
  process.exit(1);
}
const say = (line) => console.log(`[${who}] ${line}`);

// The fence check and guarded state are plain HTTP calls on the lock's URL.
const base = (process.env.LEASEHOLD_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const lockUrl = `${base}/locks/${encodeURIComponent(opts.lock)}`;
const auth = process.env.LEASEHOLD_API_KEY ? { authorization: `Bearer ${process.env.LEASEHOLD_API_KEY}` } : {};

/** The report as stored in PostgreSQL: the row is created on first use. */
const table = {
  async read(db) {
    await db.query("INSERT INTO reports (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", [opts.report]);
    const { rows } = await db.query("SELECT runs, last_by, fence FROM reports WHERE id = $1", [opts.report]);
    return { runs: rows[0].runs, lastBy: rows[0].last_by, fence: Number(rows[0].fence) };
  },
  /** One statement checks the token and writes, so nothing can come between the two. */
  async fencedWrite(db, next, token) {
    const { rowCount } = await db.query(
      "UPDATE reports SET runs = $2, last_by = $3, fence = $4 WHERE id = $1 AND fence <= $4",
      [opts.report, next.runs, next.lastBy, token],
    );
    return rowCount === 1;
  },
  async plainWrite(db, next) {
    await db.query("UPDATE reports SET runs = $2, last_by = $3 WHERE id = $1", [opts.report, next.runs, next.lastBy]);
  },
};

/** The report as leasehold's guarded state of the lock: `{runs, lastBy}` as JSON. */
const state = {
  async read() {
    const res = await fetch(`${lockUrl}/state`, { headers: auth });
    if (res.status === 404) return { runs: 0, lastBy: null };
    if (!res.ok) throw new Error(`GET ${lockUrl}/state: ${res.status} ${await res.text()}`);
    const { value, token } = await res.json();
    return { ...JSON.parse(value), fence: token };
  },
  /** true when written; false when leasehold refused it (this grant is no longer current). */
  async write(lease, next) {
    const res = await fetch(`${lockUrl}/state`, {
      method: "PUT",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ lease, value: JSON.stringify(next) }),
    });
    if (res.ok) return true;
    if (res.status === 410) return false;
    throw new Error(`PUT ${lockUrl}/state: ${res.status} ${await res.text()}`);
  },
};

/** Whether `token` is the current holder's: `{current: true}`, or the current token (absent when free). */
async function fenceCheck(token) {
  const res = await fetch(`${lockUrl}/fence?token=${token}`, { headers: auth });
  const body = await res.json();
  if (res.status === 200 && body.current === true) return { current: true };
  if (res.status === 409 && body.code === "fence-stale") return { current: false, now: body.current };
  throw new Error(`GET ${lockUrl}/fence: ${res.status} ${JSON.stringify(body)}`);
}

function nextLineOnStdin() {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.once("line", () => {
      lines.close();
      resolve();
    });
    lines.once("close", resolve);
  });
}

/** Writes `next` the way --mode says; true when written. */
async function write(db, lock, next) {
  switch (opts.mode) {
    case "fenced":
      return table.fencedWrite(db, next, lock.token);
    case "unfenced":
      await table.plainWrite(db, next);
      return true;
    case "fence-check": {
      // Narrows the window to the time between this answer and the write; it can't
      // close it. Keep that step short, or store the token where the resource allows.
      const fence = await fenceCheck(lock.token);
      if (!fence.current) return false;
      await table.plainWrite(db, next);
      return true;
    }
    case "guarded":
      return state.write(lock.lease, next);
  }
}

async function refusal(db, lock) {
  if (opts.mode === "fence-check") {
    const { now } = await fenceCheck(lock.token);
    return `token ${lock.token} is stale (the lock's current token: ${now ?? "none, it is free"})`;
  }
  const now = opts.mode === "guarded" ? await state.read() : await table.read(db);
  return `token ${lock.token} is stale (the report was last written with token ${now.fence})`;
}

const client = createClient();
const db = opts.mode === "guarded" ? undefined : new pg.Client(process.env.DATABASE_URL);
await db?.connect();
try {
  const wrote = await client.withLock(
    opts.lock,
    async (lock) => {
      say(`acquired ${opts.lock} token=${lock.token}`);
      const before = opts.mode === "guarded" ? await state.read() : await table.read(db);
      say(`read runs=${before.runs} last_by=${before.lastBy ?? "-"}`);
      const next = { runs: before.runs + 1, lastBy: who };
      // The last look at the lock before writing. It is worth having, and not enough:
      // the job can stall right after it, as --pause shows.
      if (lock.signal.aborted) {
        say(`refused: lost the lock before writing (${lock.signal.reason?.message ?? lock.signal.reason})`);
        return false;
      }
      if (opts.pause) {
        say("paused before writing: press Enter to write");
        await nextLineOnStdin();
      }
      if (await write(db, lock, next)) {
        say(`wrote runs=${next.runs} token=${lock.token}`);
        return true;
      }
      say(`refused: ${await refusal(db, lock)}`);
      return false;
    },
    { ttl: Number(opts.ttl), wait: Number(opts.wait), owner: who },
  );
  process.exitCode = wrote ? 0 : 2;
} catch (err) {
  console.error(`[${who}] failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  await db?.end();
}
