/**
 * Leaders and change feeds: campaigners elect a leader for a few names (acquire with
 * `wait` and `value`, proclaim by renewing with a new `value`, resign or vanish) while
 * observers follow `GET /events` (SSE), resuming with Last-Event-ID after every drop.
 * `checkObservers` compares what each observer committed with etcd's history.
 */
import type { Violation } from "./check.js";
import { lineOfKey } from "./check-lines.js";
import type { HistoryEvent } from "./etcd-cluster.js";
import { type Client, pick, type Run, sleep, uniform } from "./run.js";
import { pause } from "./workload.js";

/** One feed event as an observer received it (or as etcd's history implies it). */
export type FeedEvent =
  | { event: "held"; name: string; token: number; value?: string }
  | { event: "free"; name: string; token: number }
  | { event: "reset"; index: number; reason: string };

/** The events of one revision, committed once the SSE `id` closing them arrived. */
export interface ObservedBatch {
  revision: number;
  events: FeedEvent[];
  /** Received on a stream opened with Last-Event-ID. */
  resumed?: boolean;
}

export interface ObserverRecord {
  id: string;
  batches: ObservedBatch[];
  /** Streams opened, and how many ended other than by the observer stopping. */
  connections: number;
  drops: number;
}

type Holders = Map<string, { token: number; value?: string }>;

const describe = (e: FeedEvent) =>
  e.event === "reset"
    ? `reset@${e.index}`
    : `${e.event} ${e.name}#${e.token}${e.event === "held" && e.value !== undefined ? `=${e.value}` : ""}`;
const same = (a: readonly FeedEvent[], b: readonly FeedEvent[]) =>
  a.length === b.length && a.every((e, i) => describe(e) === describe(b[i] as FeedEvent));

/**
 * The feed etcd's history implies for the locks named `names*` under `prefix`, per
 * revision: a put that makes a key hold, or changes a holder's value, is `held`; a
 * delete of a key that held is `free` (what the service derives, from the source).
 */
export function expectedFeed(history: readonly HistoryEvent[], prefix: string, names: string): ObservedBatch[] {
  const keys = new Map<string, { holds: boolean; value?: string; create: number }>();
  const out: ObservedBatch[] = [];
  for (const e of history) {
    const line = lineOfKey(prefix, e.key);
    if (line?.kind !== "lock" || !line.name.startsWith(names)) continue;
    const before = keys.get(e.key);
    let event: FeedEvent | undefined;
    if (e.type === "put") {
      let v: { h?: unknown; val?: unknown } = {};
      try {
        v = JSON.parse(e.value ?? "");
      } catch {}
      const now = {
        holds: v.h === 1,
        ...(typeof v.val === "string" ? { value: v.val } : {}),
        create: e.createRevision ?? e.revision,
      };
      keys.set(e.key, now);
      if (now.holds && !(before?.holds && before.value === now.value)) {
        event = {
          event: "held",
          name: line.name,
          token: now.create,
          ...(now.value !== undefined ? { value: now.value } : {}),
        };
      }
    } else {
      keys.delete(e.key);
      if (before?.holds) event = { event: "free", name: line.name, token: before.create };
    }
    if (!event) continue;
    const last = out.at(-1);
    if (last?.revision === e.revision) last.events.push(event);
    else out.push({ revision: e.revision, events: [event] });
  }
  return out;
}

/** Applies `held`/`free` events to a view of the holders (by name and token). */
function apply(view: Holders, events: readonly FeedEvent[]) {
  for (const e of events) {
    if (e.event === "held")
      view.set(`${e.name}#${e.token}`, e.value !== undefined ? { token: e.token, value: e.value } : { token: e.token });
    else if (e.event === "free") view.delete(`${e.name}#${e.token}`);
  }
}

const show = (view: Holders) =>
  [...view]
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k}${v.value !== undefined ? `=${v.value}` : ""}`)
    .join(", ") || "none";

/**
 * Each observer, against the feed etcd's history implies (`expected`, from `expectedFeed`):
 * - observer-reset: a `reset` and the `held` events after it are etcd's holders at its
 *   index, and a stream resumed with Last-Event-ID never starts over (reason `start`);
 * - observer-gap: after its first reset, every revision with a change reaches it, in
 *   order, each with exactly etcd's changes of that revision, up to the last change;
 * - observer-duplicate: no revision twice (nor one at or before where it already was);
 * - observer-older-token: a `held` never names a holder whose token is older than one
 *   it already saw for that name.
 */
export function checkObservers(expected: readonly ObservedBatch[], observers: readonly ObserverRecord[]): Violation[] {
  const out: Violation[] = [];
  const lastRevision = expected.at(-1)?.revision ?? 0;
  /** Holders after each revision with a change, to compare a reset with. */
  const states: { revision: number; view: Holders }[] = [];
  const running: Holders = new Map();
  for (const b of expected) {
    apply(running, b.events);
    states.push({ revision: b.revision, view: new Map(running) });
  }
  const stateAt = (revision: number): Holders => {
    let view: Holders = new Map();
    for (const s of states) {
      if (s.revision > revision) break;
      view = s.view;
    }
    return view;
  };
  for (const o of observers) {
    const bad = (invariant: Violation["invariant"], detail: string) => {
      if (out.filter((v) => v.detail.startsWith(`${o.id}:`)).length < 10)
        out.push({ invariant, detail: `${o.id}: ${detail}` });
    };
    let at: number | undefined;
    const view: Holders = new Map();
    const newest = new Map<string, number>();
    let next = 0; // index into `expected` of the first change after `at`
    for (const b of o.batches) {
      for (const e of b.events) {
        if (e.event !== "held") continue;
        const seen = newest.get(e.name) ?? 0;
        if (e.token < seen)
          bad(
            "observer-older-token",
            `at revision ${b.revision} named ${describe(e)} after it had seen token ${seen} for ${e.name}`,
          );
        newest.set(e.name, Math.max(seen, e.token));
      }
      const reset = b.events[0]?.event === "reset" ? (b.events[0] as FeedEvent & { event: "reset" }) : undefined;
      if (reset) {
        // Only a compaction (or an id from the future) may answer a resumption with a reset.
        if (b.resumed && reset.reason === "start")
          bad("observer-reset", `a stream resumed after revision ${at} started over (reset at ${reset.index})`);
        view.clear();
        apply(view, b.events.slice(1));
        const etcd = stateAt(reset.index);
        if (show(view) !== show(etcd))
          bad(
            "observer-reset",
            `reset (${reset.reason}) at revision ${reset.index} showed ${show(view)}; etcd held ${show(etcd)}`,
          );
        at = reset.index;
        while (next < expected.length && (expected[next] as ObservedBatch).revision <= at) next++;
        continue;
      }
      if (at === undefined) {
        bad("observer-gap", `events at revision ${b.revision} before any reset`);
        continue;
      }
      if (b.revision <= at) {
        bad(
          "observer-duplicate",
          `revision ${b.revision} (${b.events.map(describe).join(", ")}) arrived after it was already at ${at}`,
        );
        continue;
      }
      const skipped: ObservedBatch[] = [];
      while (next < expected.length && (expected[next] as ObservedBatch).revision < b.revision) {
        skipped.push(expected[next] as ObservedBatch);
        next++;
      }
      if (skipped.length > 0)
        bad(
          "observer-gap",
          `went from revision ${at} to ${b.revision}, missing ${skipped.map((s) => `${s.revision} (${s.events.map(describe).join(", ")})`).join("; ")}`,
        );
      const want = expected[next]?.revision === b.revision ? (expected[next] as ObservedBatch) : undefined;
      if (want) next++;
      if (!want || !same(want.events, b.events)) {
        const got = b.events.map(describe).join(", ");
        const etcd = want ? want.events.map(describe).join(", ") : "no change";
        const repeated = new Set(b.events.map(describe)).size < b.events.length;
        bad(
          repeated ? "observer-duplicate" : "observer-gap",
          `at revision ${b.revision} got ${got}; etcd's history has ${etcd}`,
        );
      }
      apply(view, b.events);
      at = b.revision;
    }
    if (at === undefined) bad("observer-gap", "never got a reset");
    else if (at < lastRevision) {
      const missing = expected.filter((x) => x.revision > (at as number));
      bad(
        "observer-gap",
        `stopped at revision ${at}; etcd's history has ${missing.length} more revisions with changes, up to ${lastRevision}`,
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------- workload

/** Parses an SSE body into batches; a batch is committed only when its closing `id` arrives. */
export async function readStream(body: ReadableStream<Uint8Array>, onBatch: (b: ObservedBatch) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = "";
  let pending: FeedEvent[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event: string | undefined;
      let data = "";
      let id: string | undefined;
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
        else if (line.startsWith("id: ")) id = line.slice(4);
      }
      if (event) pending.push({ event, ...JSON.parse(data) } as FeedEvent);
      if (id !== undefined) {
        onBatch({ revision: Number(id), events: pending });
        pending = [];
      }
    }
  }
}

export interface ObserverOptions {
  /** Name prefix the stream covers. */
  names: string;
  /** The instance it reads through; `failover`: moves to the next one after every drop. */
  home: number;
  failover: boolean;
  /**
   * Hangs up on its own after this long (ms range), then resumes: drops besides the
   * faults. Without it only faults end a stream, so one that stalls shows as a gap.
   */
  hangUpMs?: [number, number];
  stop: AbortSignal;
}

/** Follows the event stream until `stop`, resuming with Last-Event-ID after every drop, into `record`. */
export async function observer(run: Run, record: ObserverRecord, o: ObserverOptions): Promise<void> {
  const id = record.id;
  let instance = o.home % run.instances.length;
  let last: number | undefined;
  while (!o.stop.aborted) {
    const mine = new AbortController();
    const timer = o.hangUpMs && setTimeout(() => mine.abort(), uniform(...o.hangUpMs));
    const signal = AbortSignal.any([mine.signal, o.stop]);
    try {
      const res = await fetch(`${run.instances[instance]}/events?prefix=${encodeURIComponent(o.names)}&kind=lock`, {
        headers: last !== undefined ? { "last-event-id": String(last) } : {},
        signal,
      });
      if (res.status !== 200 || !res.body) {
        if (res.status !== 503 && res.status !== 429)
          run.fail(`${id}: GET /events answered ${res.status} ${await res.text()}`);
        else await res.body?.cancel();
      } else {
        record.connections++;
        const resumed = last !== undefined;
        await readStream(res.body, (b) => {
          record.batches.push(resumed ? { ...b, resumed } : b);
          last = b.revision;
        });
      }
    } catch {}
    clearTimeout(timer);
    if (o.stop.aborted) break;
    record.drops++;
    if (o.failover) instance = (instance + 1) % run.instances.length;
    await sleep(mine.signal.aborted ? 0 : uniform(50, 200));
  }
}

export interface CampaignOptions {
  names: readonly string[];
  ttl: number;
  until: number;
  /** Share of leaders that vanish (no renew, no resign). */
  vanishRate: number;
  counts: Record<string, number>;
}

const bump = (counts: Record<string, number>, what: string) => {
  counts[what] = (counts[what] ?? 0) + 1;
};

/**
 * A campaigner: campaigns for one of the names (acquire with `wait` and a `value`); as
 * leader proclaims a new value by renewing 1–3 times, then resigns (release), or vanishes.
 */
export async function campaigner(client: Client, o: CampaignOptions): Promise<void> {
  const run = client.run;
  let epoch = 0;
  while (run.now() < o.until) {
    const name = pick(o.names);
    const got = await client.acquire(name, {
      ttl: o.ttl,
      wait: Math.round(uniform(0.5, 2.5) * 10) / 10,
      retryMs: 2_000,
      value: `${client.id}/${++epoch}`,
    });
    if (!("record" in got)) {
      bump(o.counts, `campaigns answered ${got.status}`);
      if (got.status === 503 || got.status <= 0) await sleep(uniform(100, 300));
      continue;
    }
    bump(o.counts, "leaders elected");
    if (Math.random() < o.vanishRate) {
      bump(o.counts, "leaders vanished");
      await pause(o.ttl * 1_000 + 200, () => run.now() >= o.until);
      continue;
    }
    let lost = false;
    for (let i = Math.floor(uniform(1, 4)); i > 0 && !lost; i--) {
      await sleep(uniform(100, (o.ttl * 1_000) / 3));
      const ok = await client.renew(got, `${client.id}/${epoch}.${i}`);
      if (ok) bump(o.counts, "proclamations");
      lost = ok === false;
    }
    if (lost) bump(o.counts, "leaders lost their lock");
    else if ((await client.release(got, 2_000)) === 204) bump(o.counts, "leaders resigned");
  }
}
