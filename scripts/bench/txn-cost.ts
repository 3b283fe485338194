/**
 * etcd's CPU per txn through its HTTP/JSON gateway, for the service's two busiest txn
 * shapes (a batch of joins; a batch of releases' deletes), with and without a failure
 * branch reading what they compare. Every txn sent applies, as nearly every txn of the
 * service does: what is measured is what carrying an unused failure branch costs etcd
 * (the whole txn goes into its raft log and is decoded by the gateway and each apply).
 * The reason src/etcd/pinned-reads.ts reads after a failure instead.
 *
 *   npx tsx scripts/bench/txn-cost.ts [--txns=N]   (alternating rounds, one local etcd)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import type { Json } from "../../src/etcd/gateway/codec.js";
import {
  encodeCreateAll,
  encodeDeleteAll,
  encodeJoinAll,
  encodeJoinReads,
  encodeKeyReads,
} from "../../src/etcd/gateway/requests.js";
import type { JoinItem } from "../../src/etcd/types.js";
import { startLocalEtcd } from "../../src/node/local-etcd.js";
import { readProc } from "./procs.js";

const txns = Number(/^--txns=(\d+)$/.exec(process.argv[2] ?? "")?.[1] ?? 1500);
const CONCURRENCY = 4;
const ROUNDS = 4;

const dataDir = mkdtempSync(join(tmpdir(), "leasehold-txn-cost-"));
const etcd = await startLocalEtcd({ dataDir });
const agent = new Agent({ connections: CONCURRENCY });
let seq = 0;

async function txn(body: Json): Promise<void> {
  const r = await request(`${etcd.endpoint}/v3/kv/txn`, {
    method: "POST",
    body: JSON.stringify(body),
    dispatcher: agent,
  });
  const text = await r.body.text();
  if (r.statusCode !== 200 || !text.includes('"succeeded":true')) throw new Error(`txn: ${text.slice(0, 300)}`);
}

async function post(path: string, body: Json): Promise<Json> {
  const r = await request(`${etcd.endpoint}${path}`, { method: "POST", body: JSON.stringify(body), dispatcher: agent });
  const json = (await r.body.json()) as Json;
  if (r.statusCode !== 200) throw new Error(`${path}: ${JSON.stringify(json).slice(0, 300)}`);
  return json;
}

/**
 * etcd CPU ms per txn while `bodies` are sent, CONCURRENCY at a time. Afterwards (not
 * measured) every key goes and the history is compacted, so that each measurement
 * starts from the same small store: a growing one costs etcd more per txn.
 */
async function etcdMsPerTxn(bodies: Json[]): Promise<number> {
  const before = readProc(etcd.pid)?.cpuSeconds ?? 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length) await txn(bodies[next++] as Json);
    }),
  );
  const ms = (((readProc(etcd.pid)?.cpuSeconds ?? 0) - before) * 1000) / bodies.length;
  const all = Buffer.from("\0").toString("base64");
  const del = await post("/v3/kv/deleterange", { key: all, range_end: all });
  await post("/v3/kv/compaction", { revision: (del.header as Json).revision, physical: true });
  return ms;
}

/** 42 joins into empty lines, each with the lock-delay marker's compare, as a c=256 acquire batch. */
function joins(): JoinItem[] {
  const value = JSON.stringify({ h: 1, ttl: 30, at: Date.now(), nh: "ab571c07a4a43af02be37aca0fb2beb4" });
  return Array.from({ length: 42 }, () => {
    const name = `txn-cost-${seq++}`;
    const line = `leasehold/lock/${name}#`;
    return {
      start: line,
      end: `leasehold/lock/${name}$`,
      maxCreateRevision: 0,
      key: `${line}34d865fe8f37e748`,
      value,
      lease: 0n,
      readLimit: 2,
      absent: `leasehold/delay/lock/${name}`,
    };
  });
}

const shapes = {
  "42 joins": async (withFailure: boolean) => {
    const bodies = Array.from({ length: txns }, () => {
      const items = joins();
      const body = encodeJoinAll(items);
      return withFailure ? { ...body, failure: encodeJoinReads(items, undefined).success } : body;
    });
    return etcdMsPerTxn(bodies);
  },
  "64 deletes": async (withFailure: boolean) => {
    // The keys exist first (not measured); then each txn deletes 64 if unchanged.
    const batches = Array.from({ length: txns }, () => Array.from({ length: 64 }, () => `leasehold/lock/d${seq++}#1`));
    const value = "x".repeat(100);
    const revisions: number[] = [];
    for (const keys of batches) {
      const r = await post("/v3/kv/txn", encodeCreateAll(keys.map((key) => ({ key, value, lease: 0n }))));
      revisions.push(Number((r.header as Json).revision));
    }
    const bodies = batches.map((keys, n) => {
      const body = encodeDeleteAll(keys.map((key) => ({ key, modRevision: revisions[n] as number })));
      return withFailure ? { ...body, failure: encodeKeyReads(keys, undefined).success } : body;
    });
    return etcdMsPerTxn(bodies);
  },
};

try {
  const rows = Object.fromEntries(
    Object.keys(shapes).map((shape) => [shape, { with: [] as number[], without: [] as number[] }]),
  );
  for (let round = 0; round < ROUNDS; round++) {
    for (const [shape, run] of Object.entries(shapes)) {
      const row = rows[shape] as { with: number[]; without: number[] };
      // Alternating which goes first.
      for (const withFailure of round % 2 === 0 ? [true, false] : [false, true]) {
        (withFailure ? row.with : row.without).push(await run(withFailure));
      }
    }
  }
  console.log(
    `etcd CPU ms per txn through the gateway (${txns} txns a round, ${CONCURRENCY} at a time, ${ROUNDS} rounds)`,
  );
  console.log("| txn | with a failure branch | without |\n|---|--:|--:|");
  for (const [shape, r] of Object.entries(rows)) {
    const f = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(" / ");
    console.log(`| ${shape} | ${f(r.with)} | ${f(r.without)} |`);
  }
} finally {
  await agent.close();
  await etcd.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
