/**
 * A control experiment with no leasehold in it: does etcd alone revoke leases that are
 * kept alive, when its leader is paused past their TTL and wakes up?
 *
 * A 3-member cluster; each round grants `leases` leases of `ttl` seconds through the
 * followers, binds a key to each, and keeps every lease alive every `keepAliveMs`
 * through the followers only (the JSON gateway's one-shot keep-alive, alternating
 * between the two), so the leader's own lessor never hears of a keep-alive once it
 * stops. The leader is SIGSTOPped for `pauseMs` (longer than the TTL: the followers
 * elect a new one meanwhile, and the keep-alives go there), then SIGCONTed. A lease is
 * revoked early when its revocation (the first of: its key's delete seen on a watch
 * through a follower, or a keep-alive answered TTL 0) was observed before its last
 * keep-alive answered with a TTL could have run out: sent at `s` with TTL `t`, the lease
 * lives at least until `s + t` (less `LIVE_MARGIN_MS`, the checker's slack for timers).
 * A correct etcd revokes none; each early revocation is timed from the SIGCONT.
 */
import { prefixEnd } from "../../../src/etcd/types.js";
import { LIVE_MARGIN_MS } from "../check.js";
import { type EtcdCluster, etcdPost, ndjsonLines, startEtcdCluster } from "../etcd-cluster.js";
import { table } from "../report.js";
import { sleep } from "../run.js";
import { CONTROL_TITLE, etcdVersion, leaseDefectAffects } from "./etcd-defect.js";

export interface ControlOptions {
  leases: number;
  rounds: number;
  /** How long the leader stays stopped (ms). */
  pauseMs: number;
  /** Lease TTL (s). */
  ttl: number;
  keepAliveMs: number;
  /** How long revocations are watched for after the SIGCONT (ms). */
  observeMs: number;
  log?: (line: string) => void;
}

export const CONTROL_LONG: ControlOptions = {
  leases: 20,
  rounds: 5,
  pauseMs: 3_000,
  ttl: 2,
  keepAliveMs: 250,
  observeMs: 3_000,
};
export const CONTROL_SHORT: ControlOptions = { ...CONTROL_LONG, leases: 10, rounds: 2 };

/** One lease revoked while it was provably live. */
export interface EarlyRevocation {
  round: number;
  /** From the leader's SIGCONT to the revocation's observation (ms; negative: before it). */
  afterWakeMs: number;
  /** How long before the lease could have expired it was observed revoked (ms). */
  aheadMs: number;
  /** How it was observed. */
  seenBy: "watch" | "keep-alive";
}

export interface ControlRound {
  round: number;
  /** The paused leader (member index). */
  leader: number;
  granted: number;
  /** Keep-alives answered with a TTL > 0 (before and after the pause). */
  keepAlives: number;
  /** Keep-alives with no answer within 1 s (the election), or an error. */
  keepAliveFailures: number;
  pausedMs: number;
  /** Leases revoked at all while watched (early or not). */
  revoked: number;
  early: EarlyRevocation[];
}

export interface ControlResult {
  /** etcd's version, as a member's `/version` reports it. */
  version: string;
  options: Omit<ControlOptions, "log">;
  rounds: ControlRound[];
  seconds: number;
}

interface Lease {
  id: string;
  key: string;
  /** Keep-alives answered with a TTL: sent at, TTL (s). */
  alive: { sentAt: number; doneAt: number; ttl: number }[];
  /** First keep-alive answered TTL 0 (the lease is gone). */
  goneAt?: number;
  /** Its key's delete seen on the watch. */
  deletedAt?: number;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => Buffer.from(s ?? "", "base64").toString();
const now = () => performance.now();

/** Waits for a leader every live member agrees on; its index. */
async function agreedLeader(c: EtcdCluster): Promise<number> {
  const until = now() + 20_000;
  while (now() < until) {
    const views = await Promise.all(
      c.endpoints.map((e) =>
        etcdPost(e, "/v3/maintenance/status").then(
          (s) => String(s.leader),
          () => "",
        ),
      ),
    );
    const leader = await c.leader();
    if (leader !== undefined && views.every((v) => v !== "" && v === views[0])) return leader;
    await sleep(100);
  }
  throw new Error("etcd's members did not agree on a leader within 20 s");
}

/**
 * A watch on `prefix` through `endpoint` that records when each key's delete arrived;
 * resolves once etcd confirmed the watch was created.
 */
async function watchDeletes(endpoint: string, prefix: string, deleted: (key: string, at: number) => void) {
  const abort = new AbortController();
  const res = await fetch(`${endpoint}/v3/watch`, {
    method: "POST",
    body: JSON.stringify({ create_request: { key: b64(prefix), range_end: b64(prefixEnd(prefix)) } }),
    signal: abort.signal,
  });
  if (!res.ok || !res.body) throw new Error(`etcd watch: HTTP ${res.status}`);
  let created: () => void = () => {};
  const ready = new Promise<void>((r) => {
    created = r;
  });
  type Msg = { result?: { created?: boolean; events?: { type?: string; kv: { key: string } }[] } };
  const reading = (async () => {
    for await (const line of ndjsonLines(res.body as AsyncIterable<Uint8Array>)) {
      const msg = JSON.parse(line) as Msg;
      if (msg.result?.created) created();
      for (const e of msg.result?.events ?? []) if (e.type === "DELETE") deleted(unb64(e.kv.key), now());
    }
  })().catch(() => {});
  await Promise.race([ready, sleep(10_000).then(() => Promise.reject(new Error("etcd did not create the watch")))]);
  return {
    async close() {
      abort.abort();
      await reading;
    },
  };
}

/** One keep-alive through the JSON gateway: the TTL it answered (0: the lease is gone). */
async function keepAliveOnce(endpoint: string, id: string): Promise<number> {
  const res = await fetch(`${endpoint}/v3/lease/keepalive`, {
    method: "POST",
    body: JSON.stringify({ ID: id }),
    signal: AbortSignal.timeout(1_000),
  });
  if (!res.ok || !res.body) throw new Error(`etcd keep-alive: HTTP ${res.status}`);
  for await (const line of ndjsonLines(res.body as AsyncIterable<Uint8Array>)) {
    const msg = JSON.parse(line) as { result?: { TTL?: string }; error?: unknown };
    if (msg.error) throw new Error(`etcd keep-alive: ${line}`);
    return Number(msg.result?.TTL ?? 0);
  }
  throw new Error("etcd keep-alive: no answer");
}

/** A call that sets a round up, tried up to 5 times (each has a 1 s deadline, short on a loaded machine). */
async function setup<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= 5) throw err;
      await sleep(200);
    }
  }
}

async function round(c: EtcdCluster, n: number, o: ControlOptions): Promise<ControlRound> {
  const leader = await agreedLeader(c);
  const followers = c.endpoints.filter((_, i) => i !== leader);
  const via = (k: number) => followers[k % followers.length] as string;
  const prefix = `control/${n}/`;
  const leases: Lease[] = [];
  const byKey = new Map<string, Lease>();
  const watch = await watchDeletes(via(0), prefix, (key, at) => {
    const l = byKey.get(key);
    if (l && l.deletedAt === undefined) l.deletedAt = at;
  });
  let failures = 0;
  let stop = false;
  const loops: Promise<void>[] = [];
  try {
    for (let i = 0; i < o.leases; i++) {
      // A grant retried after a lost answer leaves a lease nobody keeps alive: it expires.
      const granted = await setup(() => etcdPost(via(i), "/v3/lease/grant", { TTL: String(o.ttl) }));
      const l: Lease = { id: String(granted.ID), key: `${prefix}${i}`, alive: [] };
      await setup(() => etcdPost(via(i), "/v3/kv/put", { key: b64(l.key), value: b64("x"), lease: l.id }));
      leases.push(l);
      byKey.set(l.key, l);
    }
    // Each lease's keep-alives, one at a time, every `keepAliveMs`, alternating followers.
    for (const [i, l] of leases.entries()) {
      loops.push(
        (async () => {
          for (let k = i; !stop && l.goneAt === undefined && l.deletedAt === undefined; k++) {
            const sentAt = now();
            try {
              const ttl = await keepAliveOnce(via(k), l.id);
              if (ttl > 0) l.alive.push({ sentAt, doneAt: now(), ttl });
              else l.goneAt ??= now();
            } catch {
              failures++;
            }
            await sleep(sentAt + o.keepAliveMs - now());
          }
        })(),
      );
    }
    // Every lease kept alive twice before the pause.
    const warm = now() + 10_000;
    while (leases.some((l) => l.alive.length < 2) && now() < warm) await sleep(50);
    if (leases.some((l) => l.alive.length < 2)) throw new Error("the leases were not kept alive before the pause");
    const pid = c.pid(leader);
    if (pid === undefined) throw new Error(`etcd member ${leader} has no process to pause`);
    const stoppedAt = now();
    process.kill(pid, "SIGSTOP");
    let wokeAt: number;
    try {
      // A timer may fire up to a millisecond early by this clock: the pause lasts pauseMs.
      while (now() - stoppedAt < o.pauseMs) await sleep(stoppedAt + o.pauseMs - now() + 1);
    } finally {
      process.kill(pid, "SIGCONT");
      wokeAt = now();
    }
    await sleep(o.observeMs);
    stop = true;
    await Promise.all(loops);

    const early: EarlyRevocation[] = [];
    let revoked = 0;
    for (const l of leases) {
      const seen = [l.deletedAt, l.goneAt].filter((t): t is number => t !== undefined);
      if (seen.length === 0) continue;
      revoked++;
      const at = Math.min(...seen);
      const last = l.alive.filter((a) => a.doneAt < at).at(-1);
      if (!last) continue;
      const until = last.sentAt + last.ttl * 1_000 - LIVE_MARGIN_MS;
      if (at < until) {
        early.push({
          round: n,
          afterWakeMs: at - wokeAt,
          aheadMs: until - at,
          seenBy: at === l.deletedAt ? "watch" : "keep-alive",
        });
      }
    }
    const keepAlives = leases.reduce((k, l) => k + l.alive.length, 0);
    const r = { round: n, leader, granted: leases.length, keepAlives, keepAliveFailures: failures, revoked, early };
    return { ...r, pausedMs: wokeAt - stoppedAt };
  } finally {
    stop = true;
    await Promise.all(loops);
    await watch.close();
    // What is left goes now, not at the TTL, so the next round starts clean.
    for (const l of leases) await etcdPost(via(0), "/v3/lease/revoke", { ID: l.id }).catch(() => {});
  }
}

/** Runs the control experiment on a cluster of its own. */
export async function runEtcdControl(o: ControlOptions): Promise<ControlResult> {
  const started = now();
  const c = await startEtcdCluster(3);
  try {
    const version = await etcdVersion(c.endpoints);
    const rounds: ControlRound[] = [];
    for (let n = 0; n < o.rounds; n++) {
      const r = await round(c, n, o);
      o.log?.(
        `etcd control: round ${n + 1}/${o.rounds}: leader m${r.leader} paused ${Math.round(r.pausedMs)} ms; ${r.early.length} of ${r.granted} live leases revoked early (${r.early.map((e) => `${Math.round(e.afterWakeMs)} ms`).join(", ") || "none"} after its SIGCONT); ${r.keepAlives} keep-alives answered, ${r.keepAliveFailures} failed`,
      );
      rounds.push(r);
    }
    const { log: _, ...options } = o;
    return { version, options, rounds, seconds: (now() - started) / 1000 };
  } finally {
    await c.destroy();
  }
}

/** The early revocations' totals and spread, for the doc and the attribution's notes. */
export function controlSummary(r: ControlResult) {
  const early = r.rounds.flatMap((x) => x.early);
  const after = early.map((e) => e.afterWakeMs);
  const leases = r.rounds.reduce((k, x) => k + x.granted, 0);
  return {
    early: early.length,
    leases,
    minAfterMs: after.length ? Math.min(...after) : undefined,
    maxAfterMs: after.length ? Math.max(...after) : undefined,
  };
}

/** The control experiment's section of docs/verification.md. */
export function controlSection(r: ControlResult): string {
  const o = r.options;
  const s = controlSummary(r);
  const ms = (v: number) => `${Math.round(v)} ms`;
  const spread = (xs: number[]) => (xs.length ? `${ms(Math.min(...xs))} … ${ms(Math.max(...xs))}` : "–");
  const rows = r.rounds.map((x) => [
    String(x.round + 1),
    `m${x.leader}`,
    ms(x.pausedMs),
    String(x.granted),
    String(x.keepAlives),
    String(x.keepAliveFailures),
    String(x.revoked),
    String(x.early.length),
    spread(x.early.map((e) => e.afterWakeMs)),
    spread(x.early.map((e) => e.aheadMs)),
  ]);
  const verdict = leaseDefectAffects(r.version)
    ? "a version that lets a deposed leader revoke leases"
    : "a version that ignores a deposed leader's revocations";
  return [
    CONTROL_TITLE,
    "",
    `No leasehold: the checker alone against a 3-member etcd ${r.version} cluster (${verdict}). Each round grants ${o.leases} leases of ${o.ttl} s through the followers, binds a key to each, and keeps each alive every ${o.keepAliveMs} ms through the followers only (the JSON gateway's keep-alive, alternating between the two); once each was kept alive twice, the leader is SIGSTOPped for ${o.pauseMs / 1000} s (longer than the TTL: the followers elect a new leader, and the keep-alives go there), then SIGCONTed, and revocations are watched for ${o.observeMs / 1000} s more (a watch on the keys through a follower, and the keep-alives' answers). A lease is **revoked early** when its revocation was observed before its last keep-alive answered with a TTL could have run out (from that keep-alive's send, less ${LIVE_MARGIN_MS} ms). A correct etcd revokes none. \`npm run verify -- --etcd-control\` runs it (CI: \`test/verify/etcd-control.test.ts\`, which only checks that it ran).`,
    "",
    table(
      [
        "round",
        "paused leader",
        "paused",
        "leases",
        "keep-alives answered",
        "keep-alives failed",
        "revoked",
        "revoked early",
        "seen after SIGCONT",
        "before it could expire",
      ],
      rows,
    ),
    "",
    s.early === 0
      ? `etcd ${r.version} alone: none of ${s.leases} live leases revoked (${Math.round(r.seconds)} s).`
      : `etcd ${r.version} alone: **${s.early} of ${s.leases} live leases revoked** within ${ms(s.maxAfterMs as number)} of the deposed leader's SIGCONT (the first ${ms(s.minAfterMs as number)} after it; ${Math.round(r.seconds)} s).`,
  ].join("\n");
}
