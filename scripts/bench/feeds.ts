/**
 * Change-feed cases, on one leasehold instance (not the lock baselines, which have no feed):
 * - `sse1k`: `subscribers` streams on `GET /events?prefix=P`, while a driver acquires and
 *   releases locks under P at a modest rate (one change every `gapMs`).
 * - `blocking1k`: `subscribers` readers looping `GET /locks/{name}?index=<last>&wait=S` on
 *   one name, while the driver acquires and releases that name.
 * The latency of a delivery is its arrival at a subscriber minus the arrival of the HTTP
 * answer (201 or 204) of the change that caused it, both on this process's clock. The two
 * race back over separate connections, so an event can land first; that counts as 0.
 * Subscribers run in this process, so their figures include its own event-loop delays.
 */
import http from "node:http";
import { performance } from "node:perf_hooks";
import { readProc, rssSampler } from "./procs.js";
import { percentile } from "./stats.js";
import type { System } from "./systems.js";

export type FeedCaseId = "sse1k" | "blocking1k";

export const FEED_CASE_IDS: readonly FeedCaseId[] = ["sse1k", "blocking1k"];

export const isFeedCase = (c: string): c is FeedCaseId => (FEED_CASE_IDS as readonly string[]).includes(c);

export interface FeedResult {
  system: string;
  case: FeedCaseId;
  subscribers: number;
  /** Changes the driver made (each acquire and each release is one). */
  changes: number;
  delivered: number;
  expected: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  /** Service RSS just before the subscribers connected, and its peak while they were. */
  serviceRssIdleMb: number;
  serviceRssMb: number;
  /** etcd's open watches (all of etcd's clients) before the subscribers came, and with all of them waiting. */
  etcdWatchesBefore: number;
  etcdWatches: number;
  seconds: number;
  /** CPU while the driver made changes, % of one core: the service, and this process (the subscribers and the driver). */
  serviceCpuPct: number;
  loadCpuPct: number;
  errors: number;
  firstError?: string;
}

/** etcd's watcher gauge: every watch open on the server. */
async function openWatches(endpoint: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const gauge = /^etcd_debugging_mvcc_watcher_total (\S+)$/m.exec(text);
  if (!gauge) throw new Error(`${endpoint}/metrics has no etcd_debugging_mvcc_watcher_total`);
  return Number(gauge[1]);
}

/**
 * etcd's open watches once they stop rising: a stream answers before its watch is open in
 * etcd (the watch starts after the first read, from its revision), so wait for `target`,
 * or for no rise in a second, lest the first changes measure watch creation.
 */
async function settledWatches(endpoint: string, target: number): Promise<number> {
  const deadline = performance.now() + 15_000;
  let last = await openWatches(endpoint);
  let since = performance.now();
  while (last < target && performance.now() - since < 1_000 && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await openWatches(endpoint);
    if (now > last) since = performance.now();
    last = now;
  }
  return last;
}

async function gauge(serviceUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${serviceUrl}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
}

async function untilTrue(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean) {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU of the service and of this process from now until the returned function is called. */
function cpuWindow(pid: number) {
  const t0 = performance.now();
  const svc0 = readProc(pid)?.cpuSeconds ?? 0;
  const self0 = process.cpuUsage();
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    const self = process.cpuUsage(self0);
    return {
      seconds: ms(seconds),
      serviceCpuPct: Math.round((100 * ((readProc(pid)?.cpuSeconds ?? 0) - svc0)) / seconds),
      loadCpuPct: Math.round((100 * (self.user + self.system)) / 1e6 / seconds),
    };
  };
}

const ms = (n: number) => Math.round(n * 1000) / 1000;
const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

/** The driver: acquire, pause, release, pause, for `durationMs`; calls `changed` with each answer's arrival. */
async function drive(
  url: string,
  names: (i: number) => string,
  o: { durationMs: number; gapMs: number },
  changed: (c: { kind: "held" | "free"; name: string; token: number; at: number }) => void,
): Promise<number> {
  let changes = 0;
  const deadline = performance.now() + o.durationMs;
  for (let i = 0; performance.now() < deadline; i++) {
    const name = names(i);
    const path = `${url}/locks/${encodeURIComponent(name)}`;
    const res = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`POST ${path} → ${res.status} ${text.slice(0, 200)}`);
    const at = performance.now();
    const grant = JSON.parse(text) as { token: number; lease: string };
    changed({ kind: "held", name, token: grant.token, at });
    changes++;
    await new Promise((r) => setTimeout(r, o.gapMs));
    const del = await fetch(path, {
      method: "DELETE",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lease: grant.lease }),
    });
    const body = await del.text();
    if (del.status !== 204) throw new Error(`DELETE ${path} → ${del.status} ${body.slice(0, 200)}`);
    changed({ kind: "free", name, token: grant.token, at: performance.now() });
    changes++;
    await new Promise((r) => setTimeout(r, o.gapMs));
  }
  return changes;
}

interface Tally {
  /** Arrival of each change's answer, by `kind:name:token`. */
  answers: Map<string, number>;
  /** Arrivals at subscribers, by the same key, to match once the driver is done. */
  arrivals: { key: string; at: number }[];
}

function figures(t: Tally) {
  const lat: number[] = [];
  const seen = new Set<string>();
  for (const a of t.arrivals) {
    const answered = t.answers.get(a.key);
    if (answered === undefined) continue;
    lat.push(Math.max(0, a.at - answered));
    seen.add(a.key);
  }
  lat.sort((a, b) => a - b);
  return {
    delivered: lat.length,
    ...(lat.length
      ? { p50Ms: ms(percentile(lat, 50)), p99Ms: ms(percentile(lat, 99)), maxMs: ms(lat.at(-1) ?? 0) }
      : {}),
  };
}

/** One SSE stream: calls `onEvent` per event with its arrival time; resolves once the stream started (`reset`). */
function subscribe(
  url: string,
  prefix: string,
  onEvent: (event: string, data: string, at: number) => void,
  onError: (err: Error) => void,
): Promise<http.ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/events?prefix=${encodeURIComponent(prefix)}&kind=lock`, { agent: false }, (res) => {
      if (res.statusCode !== 200) {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => reject(new Error(`GET /events → ${res.statusCode} ${body.slice(0, 300)}`)));
        return;
      }
      res.setEncoding("utf8");
      let buf = "";
      let started = false;
      res.on("data", (chunk: string) => {
        const at = performance.now();
        buf += chunk;
        for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data = line.slice(6);
          }
          if (event === "reset" && !started) {
            started = true;
            resolve(req);
          }
          onEvent(event, data, at);
        }
      });
      res.on("error", onError);
    });
    req.on("error", (err) => {
      reject(err);
      onError(err);
    });
  });
}

interface FeedOptions {
  subscribers: number;
  durationMs: number;
  gapMs: number;
  names: string;
  etcdEndpoint: string;
}

function errorCount() {
  let errors = 0;
  let firstError: string | undefined;
  return {
    add(err: unknown) {
      errors++;
      firstError ??= err instanceof Error ? err.message : String(err);
    },
    summary: () => ({ errors, ...(firstError !== undefined ? { firstError } : {}) }),
  };
}

export async function runSse(system: System, o: FeedOptions): Promise<FeedResult> {
  const svc = system.services[0];
  if (!svc) throw new Error(`${system.id} has no service to stream from`);
  const prefix = `${o.names}:`;
  const errs = errorCount();
  const tally: Tally = { answers: new Map(), arrivals: [] };
  const idle = readProc(svc.pid)?.rssBytes ?? 0;
  const watchesBefore = await openWatches(o.etcdEndpoint);
  const rss = rssSampler([svc.pid], 50);
  const reqs: http.ClientRequest[] = [];
  try {
    for (let i = 0; i < o.subscribers; i += 100) {
      const batch = Array.from({ length: Math.min(100, o.subscribers - i) }, () =>
        subscribe(
          svc.url,
          prefix,
          (event, data, at) => {
            if (event !== "held" && event !== "free") return;
            const d = JSON.parse(data) as { name: string; token: number };
            tally.arrivals.push({ key: `${event}:${d.name}:${d.token}`, at });
          },
          (err) => errs.add(err),
        ),
      );
      reqs.push(...(await Promise.all(batch)));
    }
    await untilTrue(`${o.subscribers} event streams`, 30_000, async () => {
      return (await gauge(svc.url, "leasehold_event_streams")) >= o.subscribers;
    });
    const watches = await settledWatches(o.etcdEndpoint, watchesBefore + o.subscribers);
    const cpu = cpuWindow(svc.pid);
    const changes = await drive(
      svc.url,
      (i) => `${prefix}n${i % 4}`,
      o,
      (c) => tally.answers.set(`${c.kind}:${c.name}:${c.token}`, c.at),
    );
    const usage = cpu();
    // Deliveries still on their way: wait until they stop growing (or all arrived).
    const expected = changes * o.subscribers;
    let last = -1;
    await untilTrue("the last events", 10_000, async () => {
      const n = tally.arrivals.length;
      const done = n >= expected || n === last;
      last = n;
      if (!done) await new Promise((r) => setTimeout(r, 200));
      return done;
    }).catch((err) => errs.add(err));
    return {
      system: system.id,
      case: "sse1k",
      subscribers: o.subscribers,
      changes,
      expected,
      ...figures(tally),
      serviceRssIdleMb: mb(idle),
      serviceRssMb: mb(rss.peak()),
      etcdWatchesBefore: watchesBefore,
      etcdWatches: watches,
      ...usage,
      ...errs.summary(),
    };
  } finally {
    rss.stop();
    for (const r of reqs) r.destroy();
  }
}

export async function runBlocking(system: System, o: FeedOptions): Promise<FeedResult> {
  const svc = system.services[0];
  if (!svc) throw new Error(`${system.id} has no service to read from`);
  const name = `${o.names}-one`;
  const path = `/locks/${encodeURIComponent(name)}`;
  const errs = errorCount();
  const tally: Tally = { answers: new Map(), arrivals: [] };
  const idle = readProc(svc.pid)?.rssBytes ?? 0;
  const watchesBefore = await openWatches(o.etcdEndpoint);
  const rss = rssSampler([svc.pid], 50);
  const agent = new http.Agent({ keepAlive: true });
  const get = (query: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.get(`${svc.url}${path}${query}`, { agent }, (res) => {
        res.setEncoding("utf8");
        let body = "";
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      });
      req.on("error", reject);
    });
  let stop = false;
  try {
    const readers = Array.from({ length: o.subscribers }, async () => {
      // The state last seen: a holder's token, or "free" after the holder with `token` left.
      let token: number | undefined;
      let index: number | undefined;
      while (!stop) {
        try {
          const res = await get(index === undefined ? "" : `?index=${index}&wait=5`);
          const at = performance.now();
          const body = JSON.parse(res.body) as { index: number; token?: number };
          index = body.index;
          if (res.status === 200 && body.token !== undefined && body.token !== token) {
            tally.arrivals.push({ key: `held:${name}:${body.token}`, at });
            token = body.token;
          } else if (res.status === 404 && token !== undefined) {
            tally.arrivals.push({ key: `free:${name}:${token}`, at });
            token = undefined;
          } else if (res.status !== 200 && res.status !== 404) {
            throw new Error(`GET ${path} → ${res.status} ${res.body.slice(0, 200)}`);
          }
        } catch (err) {
          errs.add(err);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    await untilTrue(`${o.subscribers} blocked reads`, 30_000, async () => {
      return (await gauge(svc.url, "leasehold_blocked_reads")) >= o.subscribers;
    });
    const watches = await settledWatches(o.etcdEndpoint, watchesBefore + 1);
    const cpu = cpuWindow(svc.pid);
    const changes = await drive(
      svc.url,
      () => name,
      o,
      (c) => tally.answers.set(`${c.kind}:${c.name}:${c.token}`, c.at),
    );
    const usage = cpu();
    const expected = changes * o.subscribers;
    // Every reader re-arms after an answer; the last change is a release, so all are done
    // once all of them are blocked again (or give up after a while).
    await untilTrue("the readers to settle", 10_000, async () => {
      return (await gauge(svc.url, "leasehold_blocked_reads")) >= o.subscribers;
    }).catch((err) => errs.add(err));
    stop = true;
    const result: FeedResult = {
      system: system.id,
      case: "blocking1k",
      subscribers: o.subscribers,
      changes,
      expected,
      ...figures(tally),
      serviceRssIdleMb: mb(idle),
      serviceRssMb: mb(rss.peak()),
      etcdWatchesBefore: watchesBefore,
      etcdWatches: watches,
      ...usage,
      ...errs.summary(),
    };
    // The readers end on their own within `wait`; close their connections now instead.
    agent.destroy();
    await Promise.race([Promise.all(readers), new Promise((r) => setTimeout(r, 6_000))]);
    return result;
  } finally {
    stop = true;
    rss.stop();
    agent.destroy();
  }
}

/** A table of the feed cases' figures (markdown). */
export function feedTable(results: FeedResult[]): string {
  const head =
    "| case | system | subscribers | changes | delivered/expected | p50 ms | p99 ms | max ms | RSS idle → with subscribers MB | etcd watches before → with | svc CPU % | load CPU % |";
  const rows = results.map(
    (r) =>
      `| ${r.case} | ${r.system} | ${r.subscribers} | ${r.changes} | ${r.delivered}/${r.expected} | ` +
      `${r.p50Ms?.toFixed(2) ?? "–"} | ${r.p99Ms?.toFixed(2) ?? "–"} | ${r.maxMs?.toFixed(2) ?? "–"} | ` +
      `${r.serviceRssIdleMb} → ${r.serviceRssMb} | ${r.etcdWatchesBefore} → ${r.etcdWatches} | ${r.serviceCpuPct} | ${r.loadCpuPct} |`,
  );
  return [head, `|${"---|".repeat(12)}`, ...rows].join("\n");
}
