import type { KeyValue } from "../etcd/types.js";
import { decodeParticipant, type ParticipantValue } from "./participant.js";

/**
 * Where each participant stands in its line: the pure rules of the engine.
 *
 * A line is its participants in create-revision order (the order etcd recorded the
 * joins). Its limit is the oldest participant's. A participant may *hold* when it is
 * among the first `limit` and everyone ahead of it already holds (with its limit: see
 * mayHold): grants then happen
 * strictly in join order, so the fencing token (a participant's create revision) grows
 * with every grant. Why this keeps at most `limit` holders with no count in any txn:
 * holders are always among the first `limit` (a participant's place only moves forward,
 * as those ahead leave; joins go to the back), and at most `limit` keys can be there.
 */
export interface Member {
  kv: KeyValue;
  v: ParticipantValue;
}

export function member(kv: KeyValue): Member {
  return { kv, v: decodeParticipant(kv.value) };
}

export function holds(m: Member): boolean {
  return m.v.h === 1;
}

/** The line's limit: its oldest participant's (`undefined` for an empty line). */
export function lineLimit(oldest: readonly Member[]): number | undefined {
  const first = oldest[0];
  return first === undefined ? undefined : (first.v.limit ?? 1);
}

/**
 * Whether a newcomer may hold at once: fewer than `limit` participants, all holding
 * (nobody waits ahead). `oldest`: the line's oldest participants; `count`: all of them.
 */
export function hasRoom(oldest: readonly Member[], count: number, limit: number): boolean {
  return count < limit && oldest.length === count && oldest.every(holds);
}

/**
 * Whether the participant `key`, which joined with `limit`, may hold now: among the first
 * `limit`, everyone ahead holding with that same limit. `oldest`: the line's oldest
 * participants (at least its first `limit`). `leaving`: a participant to count as gone
 * already (a holder whose release is judged).
 *
 * Why the same limit: a join that waits is checked against the limit of the line it read,
 * but the line can change hands before the join is written (every holder leaves and one
 * with another limit joins an empty line); the waiter then waits until those holders are
 * gone. So all holders of a line share one limit, and no holder ever shares the line with
 * more holders than its own limit allows.
 */
export function mayHold(oldest: readonly Member[], key: string, limit: number, leaving?: string): boolean {
  let place = 0;
  for (const m of oldest) {
    if (m.kv.key === leaving) continue;
    if (place >= limit) return false;
    if (m.kv.key === key) return true;
    if (!holds(m) || (m.v.limit ?? 1) !== limit) return false;
    place++;
  }
  return false;
}

/**
 * The first participant that does not hold once `leaving` has left: the only one whose
 * turn that can bring (whoever waits behind it waits for it too).
 */
export function nextWaiting(oldest: readonly Member[], leaving: string): Member | undefined {
  return oldest.find((m) => m.kv.key !== leaving && !holds(m));
}

/** Waiters ahead of `key` (holders not counted; first in line = 0). */
export function positionOf(line: readonly Member[], key: string): number {
  let ahead = 0;
  for (const m of line) {
    if (m.kv.key === key) return ahead;
    if (!holds(m)) ahead++;
  }
  return ahead;
}

/** Orders keys by create revision, oldest first. */
export function byCreate(a: { kv: KeyValue }, b: { kv: KeyValue }): number {
  return a.kv.createRevision - b.kv.createRevision;
}
