/**
 * Summarises V8 .cpuprofile files (node --cpu-prof; for the bench's services, set
 * BENCH_SERVICE_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"): busy time over the run, then
 * the functions with the most self and total time.
 *
 *   npx tsx scripts/bench/cpuprofile.ts DIR/*.cpuprofile [--top=30] [--from=ms] [--to=ms]
 *     [--between=fn] [--busiest=ms] [--tail=ms] [--timeline=ms] [--per=N]
 *
 * --from / --to keep the samples in that window (ms from the profile's start);
 * --between=F the window between the last two runs of samples in function F (the
 * bench reads the services' /metrics, prom-client's `metrics`, just before and after a
 * case's measured phase: --between=metrics); --busiest=W keeps the W ms window with the most busy time; --tail=W the W ms up to
 * the end of the last busy quarter second (a case's last phase: the handoffs of
 * `waiters`, at 1000 / handoffs-per-second s); --per=N also prints every figure divided
 * by N (e.g. the round's handoffs), in ms.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const IDLE = new Set(["(idle)", "(program)", "(garbage collector)", "(root)"]);

function flag(name: string): number | undefined {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? undefined : Number(arg.slice(name.length + 3));
}

function keyOf(f: CallFrame): string {
  if (IDLE.has(f.functionName)) return f.functionName;
  const file = f.url === "" ? "" : f.url.replace(/^file:\/\//, "").replace(/^.*node_modules\//, "~/");
  const short = file.length > 60 ? `…${file.slice(-59)}` : file;
  return `${f.functionName || "(anonymous)"} ${short}:${f.lineNumber + 1}`;
}

function summarise(path: string): void {
  const p = JSON.parse(readFileSync(path, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Each node's distinct function keys up to the root, so recursion counts once in totals.
  const chains = new Map<number, string[]>();
  const chainOf = (id: number): string[] => {
    let chain = chains.get(id);
    if (chain) return chain;
    const node = byId.get(id);
    const up = parent.get(id);
    const rest = up === undefined ? [] : chainOf(up);
    const key = node ? keyOf(node.callFrame) : "?";
    chain = rest.includes(key) ? rest : [...rest, key];
    chains.set(id, chain);
    return chain;
  };

  // Sample i's time: the delta to the next sample (the last one gets the mean).
  const times: number[] = [];
  let t = 0;
  const at: number[] = [];
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    at.push(t / 1000);
  }
  for (let i = 0; i < p.samples.length; i++) {
    times.push(i + 1 < p.samples.length ? (at[i + 1] ?? 0) - (at[i] ?? 0) : 0);
  }
  const busyAt = (i: number) => !IDLE.has(byId.get(p.samples[i] ?? -1)?.callFrame.functionName ?? "(idle)");

  let from = flag("from") ?? 0;
  let to = flag("to") ?? Number.POSITIVE_INFINITY;
  const busiest = flag("busiest");
  if (busiest !== undefined) {
    // Sliding window over the samples: the one with the most busy (non-idle) time.
    let best = 0;
    let sum = 0;
    let lo = 0;
    for (let hi = 0; hi < p.samples.length; hi++) {
      if (busyAt(hi)) sum += times[hi] ?? 0;
      while ((at[hi] ?? 0) - (at[lo] ?? 0) > busiest) {
        if (busyAt(lo)) sum -= times[lo] ?? 0;
        lo++;
      }
      if (sum > best) {
        best = sum;
        from = at[lo] ?? 0;
        to = at[hi] ?? 0;
      }
    }
  }

  const tail = flag("tail");
  if (tail !== undefined) {
    // The last phase of a run: the W ms up to the end of the last busy 250 ms.
    let end = 0;
    const slot = new Map<number, number>();
    for (let i = 0; i < p.samples.length; i++) {
      if (!busyAt(i)) continue;
      const b = Math.floor((at[i] ?? 0) / 250);
      slot.set(b, (slot.get(b) ?? 0) + (times[i] ?? 0));
    }
    for (const [b, ms] of slot) if (ms > 50 && (b + 1) * 250 > end) end = (b + 1) * 250;
    from = end - tail;
    to = end;
  }
  const between = process.argv.find((a) => a.startsWith("--between="))?.slice(10);
  if (between !== undefined) {
    // Runs of samples in `between` (gaps over 100 ms split them): the window between the
    // last two. The bench scrapes the service's /metrics (prom-client's `metrics`) just
    // before a case's measured phase and just after it.
    const runs: [number, number][] = [];
    for (let i = 0; i < p.samples.length; i++) {
      if (!chainOf(p.samples[i] ?? -1).some((k) => k.startsWith(`${between} `))) continue;
      const t = at[i] ?? 0;
      const last = runs.at(-1);
      if (last && t - last[1] < 100) last[1] = t;
      else runs.push([t, t]);
    }
    console.log(`runs of ${between}: ${runs.map(([a, b]) => `${a.toFixed(0)}–${b.toFixed(0)}`).join(", ")}`);
    const [first, second] = runs.slice(-2);
    if (first && second) {
      from = first[1];
      to = second[0];
    }
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busy = 0;
  let window = 0;
  const bucketMs = flag("timeline");
  const buckets: number[] = [];
  for (let i = 0; i < p.samples.length; i++) {
    const ms = times[i] ?? 0;
    const id = p.samples[i] ?? -1;
    const node = byId.get(id);
    const name = node?.callFrame.functionName ?? "?";
    if (bucketMs !== undefined && !IDLE.has(name)) {
      const b = Math.floor((at[i] ?? 0) / bucketMs);
      buckets[b] = (buckets[b] ?? 0) + ms;
    }
    if ((at[i] ?? 0) < from || (at[i] ?? 0) > to) continue;
    window += ms;
    const key = node ? keyOf(node.callFrame) : "?";
    self.set(key, (self.get(key) ?? 0) + ms);
    if (name === "(idle)") continue;
    if (name !== "(program)" && name !== "(garbage collector)") busy += ms;
    else total.set(name, (total.get(name) ?? 0) + ms);
    for (const k of chainOf(id)) total.set(k, (total.get(k) ?? 0) + ms);
  }
  const gc = self.get("(garbage collector)") ?? 0;
  const program = self.get("(program)") ?? 0;
  const per = flag("per");
  const fmt = (ms: number) =>
    per === undefined ? `${ms.toFixed(1).padStart(8)} ms` : `${ms.toFixed(1).padStart(8)} ms ${(ms / per).toFixed(4)}`;
  console.log(`\n== ${basename(path)}`);
  console.log(
    `window ${from.toFixed(0)}–${Math.min(to, at.at(-1) ?? 0).toFixed(0)} ms (${window.toFixed(0)} ms): ` +
      `JS ${busy.toFixed(0)} ms, GC ${gc.toFixed(0)} ms, program ${program.toFixed(0)} ms` +
      (per === undefined
        ? ""
        : `; per ${per}: JS ${(busy / per).toFixed(3)} ms, all ${((busy + gc + program) / per).toFixed(3)} ms`),
  );
  if (bucketMs !== undefined) {
    console.log(`busy ms per ${bucketMs} ms: ${Array.from(buckets, (b) => Math.round(b ?? 0)).join(" ")}`);
  }
  const top = flag("top") ?? 30;
  const show = (title: string, m: Map<string, number>) => {
    console.log(`-- ${title}`);
    for (const [k, v] of [...m]
      .filter(([k]) => k !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)) {
      console.log(`${fmt(v)}  ${k}`);
    }
  };
  show("self", self);
  show("total", total);
}

for (const path of process.argv.slice(2).filter((a) => !a.startsWith("--"))) summarise(path);
