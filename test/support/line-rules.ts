import type { EtcdClient } from "../../src/etcd/types.js";
import { decodeParticipant } from "../../src/lock/participant.js";

/**
 * Watches one line at every revision from now on (etcd's watch, or the fake's, reports
 * each one) and records what breaks the line's rules there: more than `limit` holders,
 * a holder behind a waiter (a grant out of join order), or a grant whose token is not
 * above every earlier grant's. `most`: the most holders seen at once; `handedOver`: the
 * revisions where a holder left and another key became one (a local handoff's txn).
 */
export async function watchLineRules(c: EtcdClient, range: { start: string; end: string }, limit: number) {
  const read = await c.scan(range.start, range.end, { byCreate: true });
  const members = new Map<string, { create: number; holds: boolean }>();
  let lastGranted = 0;
  for (const kv of read.kvs) {
    const holds = decodeParticipant(kv.value).h === 1;
    members.set(kv.key, { create: kv.createRevision, holds });
    if (holds) lastGranted = Math.max(lastGranted, kv.createRevision);
  }
  const broken: string[] = [];
  let most = [...members.values()].filter((m) => m.holds).length;
  let handedOver = 0;
  const stop = new AbortController();
  const ended = c.watchRange(
    range.start,
    range.end,
    read.revision + 1,
    (revision, events) => {
      let [left, granted] = [false, false];
      for (const e of events) {
        if (e.type === "delete") {
          left ||= members.get(e.key)?.holds === true;
          members.delete(e.key);
          continue;
        }
        const holds = decodeParticipant(e.kv.value).h === 1;
        if (holds && !members.get(e.kv.key)?.holds) {
          granted ||= members.has(e.kv.key);
          if (e.kv.createRevision <= lastGranted) {
            broken.push(`rev ${revision}: token ${e.kv.createRevision} granted after ${lastGranted}`);
          }
          lastGranted = Math.max(lastGranted, e.kv.createRevision);
        }
        members.set(e.kv.key, { create: e.kv.createRevision, holds });
      }
      if (left && granted) handedOver++;
      const inLine = [...members.values()].sort((a, b) => a.create - b.create);
      const holding = inLine.filter((m) => m.holds).length;
      most = Math.max(most, holding);
      if (holding > limit) broken.push(`rev ${revision}: ${holding} holders`);
      if (inLine.slice(0, holding).some((m) => !m.holds)) broken.push(`rev ${revision}: a holder behind a waiter`);
    },
    stop.signal,
  );
  ended.catch(() => {});
  return {
    broken,
    get most() {
      return most;
    },
    get handedOver() {
      return handedOver;
    },
    stop: () => stop.abort(),
  };
}
