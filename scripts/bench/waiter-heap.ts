/**
 * Live heap per parked waiter in the service as production runs it: heap snapshots
 * (each taken after a full collection) with 0 and with N waiting acquires parked on 10
 * held names, and what grew, per object kind and per suspended async function.
 * A generator's context may be shared (a module's), so its "ctx" is not all its own.
 *
 *   N=2000 T=grpc|http npx tsx scripts/bench/waiter-heap.ts
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLocalEtcd } from "../../src/node/local-etcd.js";
import { readProc, startService } from "./procs.js";

const N = Number(process.env.N ?? 2000);
const transport = (process.env.T ?? "grpc") as "grpc" | "http";
const dataDir = mkdtempSync(join(tmpdir(), "waitheap-"));
const etcd = await startLocalEtcd({ dataDir });
process.env.BENCH_SERVICE_NODE_ARGS = "--heapsnapshot-signal=SIGUSR2";
const root = process.env.ROOT ?? process.cwd();
const svc = await startService({ etcdEndpoint: etcd.endpoint, transport, ...(process.env.ROOT ? { root } : {}) });
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const u = new URL(svc.url);
for (let i = 0; i < 10; i++) {
  const r = await fetch(`${svc.url}/locks/n${i}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"ttl":300}',
  });
  if (r.status !== 201) throw new Error(`holder ${r.status}`);
}
// warm a little
for (let i = 0; i < 300; i++) {
  const r = await fetch(`${svc.url}/locks/w${i % 20}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"ttl":5}',
  });
  const g = (await r.json()) as { lease: string };
  await fetch(`${svc.url}/locks/w${i % 20}/release`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ lease: g.lease }),
  }).then((x) => x.arrayBuffer());
}
async function snapshot(): Promise<string> {
  const before = new Set(readdirSync(root).filter((f) => f.endsWith(".heapsnapshot")));
  process.kill(svc.pid, "SIGUSR2");
  for (;;) {
    await pause(500);
    const f = readdirSync(root).find((x) => x.endsWith(".heapsnapshot") && !before.has(x));
    if (f) {
      const s1 = statSync(join(root, f)).size;
      await pause(1000);
      if (statSync(join(root, f)).size === s1 && s1 > 0) return join(root, f);
    }
  }
}
function summarize(file: string) {
  const snap = JSON.parse(readFileSync(file, "utf8"));
  rmSync(file);
  const f = snap.snapshot.meta.node_fields as string[];
  const types = snap.snapshot.meta.node_types[0] as string[];
  const W = f.length,
    iT = f.indexOf("type"),
    iN = f.indexOf("name"),
    iS = f.indexOf("self_size");
  // Plain reads of the snapshot's flat arrays (every index read is in range by its format).
  const rawNodes = snap.nodes as number[];
  const rawStrings = snap.strings as string[];
  const rawEdges = snap.edges as number[];
  const nodes = { length: rawNodes.length, at: (i: number) => rawNodes[i] as number };
  const str = (i: number) => rawStrings[i] as string;
  const edge = (i: number) => rawEdges[i] as number;
  const agg = new Map<string, { n: number; s: number }>();
  let total = 0;
  for (let i = 0; i < nodes.length; i += W) {
    const t = types[nodes.at(i + iT)];
    const size = nodes.at(i + iS);
    total += size;
    let name = str(nodes.at(i + iN));
    if (t === "string" || t === "concatenated string" || t === "sliced string") name = "";
    if (t === "code" || t === "hidden" || t === "array" || t === "number") name = name.slice(0, 40);
    const k = `${t}:${name.slice(0, 60)}`;
    const a = agg.get(k) ?? { n: 0, s: 0 };
    a.n++;
    a.s += size;
    agg.set(k, a);
  }
  // Generators (suspended async functions): by function name, with their register file sizes.
  const ef = snap.snapshot.meta.edge_fields as string[];
  const EW = ef.length;
  const eTypes = snap.snapshot.meta.edge_types[0] as string[];
  const iEC = f.indexOf("edge_count");
  const gens = new Map<string, { n: number; s: number }>();
  const loc = new Map<number, string>();
  const L = snap.locations as number[];
  const l = (k: number) => L[k] as number;
  for (let k = 0; k < L.length; k += 4) loc.set(l(k) / W, `${l(k + 1)}:${l(k + 2) + 1}:${l(k + 3)}`);
  let e = 0;
  for (let i = 0; i < nodes.length; i += W) {
    const ec = nodes.at(i + iEC);
    if (str(nodes.at(i + iN)) === "Generator" && types[nodes.at(i + iT)] === "object") {
      let fn = "?";
      let regs = 0;
      let ctx = 0;
      for (let j = 0; j < ec; j++) {
        const o = (e + j) * EW;
        const et = eTypes[edge(o)];
        const nameOrIdx = edge(o + 1);
        const to = edge(o + 2);
        const en = et === "element" || et === "hidden" ? String(nameOrIdx) : str(nameOrIdx);
        if (en === "function") {
          fn = str(nodes.at(to + iN));
          if (!fn) fn = `anon@${loc.get(to / W) ?? "?"}`;
        }
        if (en === "parameters_and_registers") regs = nodes.at(to + iS);
        if (en === "context") ctx = nodes.at(to + iS);
      }
      const key = `${fn} (self ${nodes.at(i + iS)} regs ${regs} ctx ${ctx})`;
      const a = gens.get(key) ?? { n: 0, s: 0 };
      a.n++;
      a.s += nodes.at(i + iS) + regs + ctx;
      gens.set(key, a);
    }
    e += ec;
  }
  return { total, agg, gens };
}
const s0 = summarize(await snapshot());
const body = '{"wait":60}';
const socks: net.Socket[] = [];
for (let i = 0; i < N; i++) {
  const s = net.connect(Number(u.port), "127.0.0.1");
  s.on("error", () => {});
  s.write(
    `POST /locks/n${i % 10} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  socks.push(s);
  if (i % 100 === 99) await pause(20);
}
for (;;) {
  const m = await (await fetch(`${svc.url}/metrics`)).text();
  const w = Number(/^leasehold_waiters (\d+)/m.exec(m)?.[1] ?? 0);
  if (w >= N) break;
  await pause(200);
}
await pause(1000);
const rss = (readProc(svc.pid)?.rssBytes ?? 0) / 2 ** 20;
const s1 = summarize(await snapshot());
console.log(
  `N=${N} ${transport}: live heap ${(s0.total / 1e6).toFixed(1)} -> ${(s1.total / 1e6).toFixed(1)} MB, ${((s1.total - s0.total) / N / 1024).toFixed(2)} KB per waiter; RSS now ${rss.toFixed(0)} MB`,
);
const rows = [...s1.agg]
  .map(([k, v]) => {
    const b = s0.agg.get(k) ?? { n: 0, s: 0 };
    return { k, dn: (v.n - b.n) / N, ds: (v.s - b.s) / N };
  })
  .filter((r) => r.ds > 8)
  .sort((a, b) => b.ds - a.ds);
for (const r of rows.slice(0, Number(process.env.TOP ?? 60)))
  console.log(`${r.ds.toFixed(0).padStart(6)} B ${r.dn.toFixed(2).padStart(6)}x  ${r.k}`);
console.log("generators (count per waiter, bytes per waiter incl. registers + context):");
for (const [k, v] of s1.gens) {
  const b = s0.gens.get(k) ?? { n: 0, s: 0 };
  const dn = (v.n - b.n) / N;
  if (dn > 0.05) console.log(`  ${dn.toFixed(2)}x ${((v.s - b.s) / N).toFixed(0)} B ${k}`);
}
for (const s of socks) s.destroy();
await svc.stop();
await etcd.stop();
rmSync(dataDir, { recursive: true, force: true });
