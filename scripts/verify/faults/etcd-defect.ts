/**
 * etcd's own lease defect, told apart from leasehold's violations.
 *
 * etcd before 3.4.31 (and 3.5.0–3.5.12) lets a leader that was paused, and deposed while
 * it slept, revoke leases when it wakes up: its lessor still counts every lease down
 * from before the pause (the keep-alives went to the new leader meanwhile), finds them
 * expired and proposes their revocation, which raft forwards to the new leader and the
 * cluster applies. A lease the service keeps alive then ends before its TTL, and the
 * checker sees a holder's renew answered 410, or another client granted its lock, while
 * the grant was provably live (`lost-while-live`, and the model check's
 * `linearizability` for the same grant). The control experiment (etcd-lease-control.ts)
 * shows etcd doing it with no leasehold in the loop.
 *
 * The attribution is narrow: only in the scenario that pauses the leader, only on a
 * version with the defect, and only when the span in which the grant must have ended
 * (after its last proof of life, before the answer that showed it gone) overlaps the
 * first `WAKE_REVOKE_MS` after a paused leader's SIGCONT. Everything else counts.
 */
import type { Violation } from "../check.js";
import type { OpEvent } from "../history.js";
import { checkModel } from "../model.js";

/** The control experiment's section title in docs/verification.md (see etcd-lease-control.ts). */
export const CONTROL_TITLE = "### etcd alone: live leases and a paused leader (control experiment)";

/** What the scenario table calls the violations attributed to etcd. */
export const DEFECT_LABEL = "revoked by etcd (issue 15247)";

/**
 * How long after a deposed leader's SIGCONT its revocations may land (ms). Its lessor
 * looks for expired leases every 500 ms, and a timer that fell due while it slept fires
 * at once on waking: either that check runs before the new leader's first message
 * demotes it, and it revokes then, or it does not revoke at all. The control experiment
 * saw every early revocation 4–83 ms after the SIGCONT (6 runs, 115 of 284 leases, at a
 * load average of 6–10 on 2 CPUs; docs/verification.md). 1 s covers one more check of
 * the lessor and a slow apply on a loaded machine, and is half the scenarios' 2 s TTL.
 */
export const WAKE_REVOKE_MS = 1_000;

/** A paused etcd member's SIGCONT (run clock, ms). */
export interface Wake {
  at: number;
  /** Which member, for the report. */
  member: string;
  /** Whether it was the leader when paused: only a leader wakes up deposed, with leases to revoke. */
  leader: boolean;
}

/** A violation attributed to etcd's defect, and why. */
export interface Attribution {
  violation: Violation;
  why: string;
}

/**
 * Whether etcd `version` ("3.4.23", "v3.5.9"...) has the defect: 3.4.30 and earlier,
 * 3.5.0–3.5.12. Releases before 3.4 were never fixed; 3.6 has the fix. An unknown
 * version is taken as fixed, so nothing is attributed on it.
 */
export function leaseDefectAffects(version: string): boolean {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (major !== 3) return major < 3;
  if (minor < 4) return true;
  if (minor === 4) return patch < 31;
  if (minor === 5) return patch < 13;
  return false;
}

/** etcd's server version, as the first member that answers its `/version` reports it. */
export async function etcdVersion(endpoints: readonly string[]): Promise<string> {
  let last: unknown;
  for (const endpoint of endpoints) {
    try {
      const res = await fetch(`${endpoint}/version`, { signal: AbortSignal.timeout(1_000) });
      const body = (await res.json()) as { etcdserver?: string };
      if (body.etcdserver) return body.etcdserver;
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no etcd member answered /version: ${String(last)}`);
}

const secs = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

/** The wake-up a `lost-while-live` violation may be etcd's doing at, on `version`; undefined: it counts. */
export function wakeBehind(v: Violation, version: string, wakes: readonly Wake[]): Wake | undefined {
  const ended = v.ended;
  if (v.invariant !== "lost-while-live" || !ended || !leaseDefectAffects(version)) return undefined;
  return wakes.find((w) => w.leader && ended.before >= w.at && ended.after <= w.at + WAKE_REVOKE_MS);
}

/**
 * Splits a run's violations into those that count and those attributed to etcd's defect:
 * each `lost-while-live` whose grant's end can lie within `WAKE_REVOKE_MS` after a paused
 * leader's SIGCONT (on a version with the defect), and each `linearizability` violation
 * of the model whose line fits the model once exactly those grants may have ended from
 * that SIGCONT on (the model checked again with that one allowance: it then places the
 * end where the records first show it, as it does an expiry; when it can lie is the
 * rule above's to decide, on the same records).
 */
export function attributeToEtcd(
  violations: readonly Violation[],
  o: { version: string; wakes: readonly Wake[]; events: readonly OpEvent[] },
): { counted: Violation[]; attributed: Attribution[] } {
  const counted: Violation[] = [];
  const attributed: Attribution[] = [];
  const mayEndFrom = new Map<string, number>();
  for (const v of violations) {
    const wake = wakeBehind(v, o.version, o.wakes);
    if (!wake || !v.ended) continue;
    mayEndFrom.set(v.ended.grant, Math.min(wake.at, mayEndFrom.get(v.ended.grant) ?? wake.at));
    attributed.push({
      violation: v,
      why: `the grant ended after ${secs(v.ended.after)} (its last proof of life) and before ${secs(v.ended.before)}, a span that overlaps the first ${WAKE_REVOKE_MS} ms after the SIGCONT of the paused leader ${wake.member} at ${secs(wake.at)}; etcd ${o.version} has the defect`,
    });
  }
  const models = violations.filter((v) => v.invariant === "linearizability" && v.line !== undefined);
  const stillFailing =
    mayEndFrom.size > 0 && models.length > 0
      ? new Set(checkModel(o.events, { mayEndFrom }).violations.map((v) => v.line))
      : undefined;
  for (const v of violations) {
    if (attributed.some((a) => a.violation === v)) continue;
    if (stillFailing && v.invariant === "linearizability" && v.line !== undefined && !stillFailing.has(v.line)) {
      attributed.push({
        violation: v,
        why: `every operation of ${v.line} fits the model once the grants attributed above may have ended from their paused leader's SIGCONT on (and no other grant early)`,
      });
      continue;
    }
    counted.push(v);
  }
  return { counted, attributed };
}
