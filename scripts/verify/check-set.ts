/**
 * The lock-set invariants (the workload Jepsen ran against etcd's locks): holders of a
 * lock each read a list of integers kept under the lock, append an element of their own
 * and write the list back, then release. Whatever pauses and faults happen, a write that
 * was acknowledged is never lost, and nothing a stale holder wrote is kept.
 *
 * Two histories are checked: what the clients saw (`AppendRecord`s, stamped from the
 * checker's one counter like every other record), and every version of the state that
 * etcd recorded (its watch history under the prefix, with the lock's participant keys,
 * so the checker knows which grants were current at each write's revision).
 */
import { LineKeys } from "../../src/lock/line-keys.js";
import { byLine, type GrantRecord, staleTest, type Violation } from "./check.js";
import { type EtcdEvent, lineOfKey, readValue } from "./check-lines.js";

/** One attempt to write the new list: the first, or a retry after an unknown outcome. */
export interface WriteAttempt {
  sentSeq: number;
  doneSeq: number;
  /** HTTP status (200 for a plain put etcd answered); 0 = the connection failed, -1 = no answer. */
  status: number;
  /** The revision of the write, from a 200. */
  revision?: number;
}

/** One read-append-write of one grant. */
export interface AppendRecord {
  name: string;
  /** The element appended: unique in the run. */
  element: number;
  client: string;
  /** The writer's grant: its token and when it arrived. */
  token: number;
  grantReceivedSeq: number;
  /** The revision of the state the writer read (0: none written yet). */
  readRevision: number;
  attempts: WriteAttempt[];
  /** The writer paused past its TTL between its read and its write. */
  afterPause: boolean;
}

export type Outcome = "acknowledged" | "refused" | "unknown";

/**
 * An append is acknowledged when an attempt was answered 200; refused when every attempt
 * was answered 4xx (the service writes nothing then: 410 lock-lost, or a request it
 * rejected before writing); otherwise unknown (no answer, a connection failure or a 5xx,
 * which may come after etcd applied the write).
 */
export function outcomeOf(a: AppendRecord): Outcome {
  if (a.attempts.some((x) => x.status === 200)) return "acknowledged";
  if (a.attempts.length > 0 && a.attempts.every((x) => x.status >= 400 && x.status < 500)) return "refused";
  return "unknown";
}

export interface SetStats {
  appends: number;
  acknowledged: number;
  refused: number;
  unknown: number;
  /** Unknown appends whose element is in the final state (their write landed). */
  unknownPresent: number;
  /** Appends paused past the TTL between read and write, and those of them refused. */
  afterPause: number;
  afterPauseRefused: number;
  /**
   * Appends with an attempt sent after the checker had received a grant that superseded
   * the writer's (see `staleTest`): refused, acknowledged (a violation) or unknown.
   */
  stale: number;
  staleRefused: number;
  staleAcknowledged: number;
  /** Writes of the state etcd recorded, and those not made by a then-current holder. */
  stateWrites: number;
  staleStateWrites: number;
  /** Writes that dropped elements of the version they replaced, and how many elements were dropped. */
  lostUpdates: number;
  droppedElements: number;
  /** Acknowledged appends missing from the final state. */
  lostAcknowledged: number;
  /** Elements in the final states. */
  finalElements: number;
}

/** A version of a lock's state as etcd recorded it. */
interface Version {
  revision: number;
  token: number;
  /** `undefined`: not a list of integers. */
  list: number[] | undefined;
  /** A participant key of the lock with the writer's token as create revision held at that revision. */
  current: boolean;
}

const few = (xs: readonly number[]) => `${xs.slice(0, 5).join(", ")}${xs.length > 5 ? ", …" : ""}`;

/** The stored state `{value, token}` with `value` a JSON list of integers. */
function decode(raw: string | undefined): { token: number; list: number[] | undefined } | undefined {
  const stored = parse(raw) as { value?: unknown; token?: unknown } | undefined;
  if (typeof stored?.token !== "number" || typeof stored.value !== "string") return undefined;
  return { token: stored.token, list: listOf(stored.value) };
}

/** A state's value as the list of integers it must be; `undefined` when it is not one. */
export function listOf(value: unknown): number[] | undefined {
  const list = typeof value === "string" ? parse(value) : undefined;
  return Array.isArray(list) && list.every((x) => Number.isInteger(x)) ? (list as number[]) : undefined;
}

function parse(text: string | undefined): unknown {
  try {
    return JSON.parse(text ?? "");
  } catch {
    return undefined;
  }
}

/** Every version of each lock's state in etcd's history, with whether its writer's grant was current. */
function versionsOf(
  events: readonly EtcdEvent[],
  prefix: string,
): { versions: Map<string, Version[]>; odd: Violation[] } {
  const stateDir = new LineKeys(prefix).state({ kind: "lock", name: "" });
  const participants = new Map<string, Map<string, { create: number; holds: boolean }>>();
  const versions = new Map<string, Version[]>();
  const odd: Violation[] = [];
  // A txn's events share its revision; a guarded write's txn changes nothing but the state.
  const sorted = [...events].sort((a, b) => a.revision - b.revision);
  for (const e of sorted) {
    const line = lineOfKey(prefix, e.key);
    if (line?.kind === "lock") {
      const keys = participants.get(line.name) ?? new Map();
      participants.set(line.name, keys);
      if (e.type === "delete") keys.delete(e.key);
      else keys.set(e.key, { create: e.createRevision ?? e.revision, holds: readValue(e.value).holds });
      continue;
    }
    if (!e.key.startsWith(stateDir)) continue;
    const name = e.key.slice(stateDir.length);
    if (e.type === "delete") {
      odd.push({ invariant: "lost-update", detail: `${name}: the state was deleted at revision ${e.revision}` });
      continue;
    }
    const stored = decode(e.value);
    if (!stored) {
      odd.push({
        invariant: "lost-update",
        detail: `${name}: the state at revision ${e.revision} is not a stored state`,
      });
      continue;
    }
    const holders = [...(participants.get(name)?.values() ?? [])];
    const current = holders.some((k) => k.create === stored.token && k.holds);
    const list = versions.get(name) ?? [];
    list.push({ revision: e.revision, token: stored.token, list: stored.list, current });
    versions.set(name, list);
  }
  return { versions, odd };
}

/**
 * Over etcd's versions of each lock's state, in revision order:
 * - stale-state-write: each write was made while its token was a current holder's (a
 *   participant key of the lock created at that revision held at the write's revision);
 * - state-token-order: tokens never go backwards from one write to the next;
 * - lost-update: each write keeps every element of the version it replaced (and is a
 *   list of integers);
 * - duplicate-element: no element twice in a version;
 * - phantom-element: each element first appears in a write made with the token of the
 *   grant that appended it;
 * - refused-append-present: no version holds the element of a refused append.
 * Over the clients' records and the final versions:
 * - lost-append: every acknowledged append is in the final state, and etcd recorded the
 *   acknowledged write (a version at its revision holding its element);
 * - stale-write-acknowledged: no attempt sent after the writer's grant was superseded
 *   (see `staleTest`) is acknowledged.
 */
export function checkSet(
  appends: readonly AppendRecord[],
  events: readonly EtcdEvent[],
  o: { prefix: string; grants: readonly GrantRecord[] },
): { violations: Violation[]; stats: SetStats } {
  const { versions, odd } = versionsOf(events, o.prefix);
  const out: Violation[] = [...odd];
  const stats: SetStats = {
    appends: appends.length,
    acknowledged: 0,
    refused: 0,
    unknown: 0,
    unknownPresent: 0,
    afterPause: 0,
    afterPauseRefused: 0,
    stale: 0,
    staleRefused: 0,
    staleAcknowledged: 0,
    stateWrites: 0,
    staleStateWrites: 0,
    lostUpdates: 0,
    droppedElements: 0,
    lostAcknowledged: 0,
    finalElements: 0,
  };
  const byElement = new Map<number, AppendRecord>();
  for (const a of appends) byElement.set(a.element, a);
  const who = (x: number) => {
    const a = byElement.get(x);
    return a
      ? `${a.client}, token ${a.token}, ${outcomeOf(a)}${a.afterPause ? ", after a pause" : ""}`
      : "appended by nobody";
  };
  const grantsByName = byLine(o.grants.filter((g) => g.kind === undefined));
  const appendsByName = byLine(appends);
  const names = new Set([...versions.keys(), ...appendsByName.keys()]);

  for (const name of [...names].sort()) {
    const list = versions.get(name) ?? [];
    stats.stateWrites += list.length;
    const seen = new Set<number>();
    const reported = new Set<string>();
    const once = (v: Violation, key: string) => {
      if (reported.has(key)) return;
      reported.add(key);
      out.push(v);
    };
    let prev: Version | undefined;
    for (const v of list) {
      if (!v.current) {
        stats.staleStateWrites++;
        out.push({
          invariant: "stale-state-write",
          detail: `${name}: the state written at revision ${v.revision} carries token ${v.token}, which no current holder had at that revision`,
        });
      }
      if (prev && v.token < prev.token) {
        out.push({
          invariant: "state-token-order",
          detail: `${name}: the state written at revision ${v.revision} carries token ${v.token}, after token ${prev.token} wrote it at revision ${prev.revision}`,
        });
      }
      if (!v.list) {
        out.push({
          invariant: "lost-update",
          detail: `${name}: the state at revision ${v.revision} (token ${v.token}) is not a list of integers`,
        });
        prev = v;
        continue;
      }
      const here = new Set<number>();
      for (const x of v.list) {
        if (here.has(x)) {
          once(
            {
              invariant: "duplicate-element",
              detail: `${name}: element ${x} (${who(x)}) appears twice at revision ${v.revision}`,
            },
            `dup ${x}`,
          );
        }
        here.add(x);
        const a = byElement.get(x);
        if (a && outcomeOf(a) === "refused") {
          once(
            {
              invariant: "refused-append-present",
              detail: `${name}: element ${x} of a refused append (${who(x)}; answered ${a.attempts.map((t) => t.status).join(", ")}) is in the state at revision ${v.revision}`,
            },
            `refused ${x}`,
          );
        }
        if (seen.has(x)) continue;
        seen.add(x);
        if (!a || a.name !== name || a.token !== v.token) {
          once(
            {
              invariant: "phantom-element",
              detail: `${name}: element ${x} (${who(x)}) first appears at revision ${v.revision}, in a write with token ${v.token}`,
            },
            `phantom ${x}`,
          );
        }
      }
      const dropped = prev?.list?.filter((x) => !here.has(x)) ?? [];
      if (prev && dropped.length > 0) {
        stats.lostUpdates++;
        stats.droppedElements += dropped.length;
        const acked = dropped.filter((x) => {
          const a = byElement.get(x);
          return a !== undefined && outcomeOf(a) === "acknowledged";
        });
        const added = v.list.filter((x) => !prev?.list?.includes(x)).map((x) => `${x} (${who(x)})`);
        out.push({
          invariant: "lost-update",
          detail: `${name}: the write at revision ${v.revision} (token ${v.token}${v.current ? "" : ", not current"}; adding ${added.join(", ") || "nothing"}) dropped ${dropped.length} element(s) of revision ${prev.revision}, ${acked.length} of them acknowledged: ${few(dropped)}`,
        });
      }
      prev = v;
    }

    const last = list.at(-1)?.list ?? [];
    const final = new Set(last);
    stats.finalElements += final.size;
    const isStale = staleTest([...(grantsByName.get(name) ?? [])].sort((a, b) => a.receivedSeq - b.receivedSeq));
    for (const a of appendsByName.get(name) ?? []) {
      const outcome = outcomeOf(a);
      stats[outcome]++;
      if (a.afterPause) stats.afterPause++;
      if (a.afterPause && outcome === "refused") stats.afterPauseRefused++;
      if (outcome === "unknown" && final.has(a.element)) stats.unknownPresent++;
      const stale = a.attempts.filter((t) =>
        isStale({ seq: t.sentSeq, token: a.token, grantReceivedSeq: a.grantReceivedSeq }),
      );
      if (stale.length > 0) {
        stats.stale++;
        if (outcome === "refused") stats.staleRefused++;
        const acked = stale.find((t) => t.status === 200);
        if (acked) {
          stats.staleAcknowledged++;
          out.push({
            invariant: "stale-write-acknowledged",
            detail: `${name}: ${a.client} wrote element ${a.element} with token ${a.token}${a.afterPause ? " after a pause" : ""} after a later grant had been received, and the write was acknowledged (revision ${acked.revision ?? "?"})`,
          });
        }
      }
      if (outcome !== "acknowledged") continue;
      const ack = a.attempts.find((t) => t.status === 200);
      const recorded = list.find((v) => v.revision === ack?.revision);
      if (!recorded?.list?.includes(a.element)) {
        stats.lostAcknowledged++;
        out.push({
          invariant: "lost-append",
          detail: `${name}: ${a.client}'s append of ${a.element} (token ${a.token}) was acknowledged at revision ${ack?.revision ?? "?"}, but etcd recorded no write there holding it`,
        });
      } else if (!final.has(a.element)) {
        stats.lostAcknowledged++;
        const gone = list.find((v) => v.revision > recorded.revision && !v.list?.includes(a.element));
        out.push({
          invariant: "lost-append",
          detail: `${name}: ${a.client}'s append of ${a.element} (token ${a.token}) was acknowledged at revision ${recorded.revision} and is not in the final state${gone ? `: the write at revision ${gone.revision} (token ${gone.token}${gone.current ? "" : ", not current"}) dropped it` : ""}`,
        });
      }
    }
  }
  return { violations: out, stats };
}
