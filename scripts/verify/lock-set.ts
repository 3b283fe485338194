import { LineKeys } from "../../src/lock/line-keys.js";
import { type AppendRecord, listOf, type WriteAttempt } from "./check-set.js";
import type { EtcdCluster } from "./etcd-cluster.js";
import { type Client, type Held, pick, sleep, uniform } from "./run.js";

/** How a holder writes the new state: its answer's HTTP status (0: no answer) and the write's revision. */
export type StateWriter = (client: Client, held: Held, value: string) => Promise<{ status: number; revision?: number }>;

/** Through the service: `PUT /locks/{name}/state`, written only while the holder's grant is current. */
export const guardedWrite: StateWriter = async (client, held, value) => {
  const a = await client.send("write-state", "PUT", `/locks/${held.record.name}/state`, { lease: held.lease, value });
  return { status: a.status, ...(a.status === 200 ? { revision: a.body.revision as number } : {}) };
};

export interface SetOptions {
  names: readonly string[];
  /** TTL asked for, in seconds. */
  ttl: number;
  /** Whether this hold pauses past its TTL between reading the state and writing it (a GC pause). */
  pause: () => boolean;
  /** Stop starting new holds at this time (run clock, ms). */
  until: number;
  write: StateWriter;
  /** Where each append is recorded. */
  appends: AppendRecord[];
  /** The next element to append: unique in the run. */
  element: () => number;
  counts: Record<string, number>;
}

const bump = (counts: Record<string, number>, what: string) => {
  counts[what] = (counts[what] ?? 0) + 1;
};

/**
 * A lock-set holder: take a lock (waiting up to 3 s), read its state (a JSON list of
 * integers; none yet is the empty list), sometimes pause past the TTL, write the list
 * with one new element, release. A write whose outcome is unknown (no answer, a dropped
 * connection, a 503) is sent again with the same list on the next instance for up to
 * 2 s: only this grant could have written meanwhile, so writing the same list twice is
 * harmless. A 4xx ends the attempts.
 */
export async function setAppender(client: Client, o: SetOptions): Promise<void> {
  const run = client.run;
  while (run.now() < o.until) {
    const name = pick(o.names);
    const wait = Math.round(uniform(0.5, 3) * 10) / 10;
    const got = await client.acquire(name, { ttl: o.ttl, wait, retryMs: 2_000 });
    if (!("record" in got)) {
      await sleep(got.status === 409 ? uniform(10, 60) : uniform(100, 300));
      continue;
    }
    await appendOnce(client, got, o);
    await client.release(got, 2_000);
  }
}

async function appendOnce(client: Client, held: Held, o: SetOptions): Promise<void> {
  const run = client.run;
  const name = held.record.name;
  const read = await readState(client, name);
  if (!read) {
    bump(o.counts, "holds without a read (etcd or instances unavailable)");
    return;
  }
  const afterPause = o.pause();
  if (afterPause) await pausePast(client, held, o.ttl);
  const element = o.element();
  const value = JSON.stringify([...read.list, element]);
  const attempts: WriteAttempt[] = [];
  const record: AppendRecord = {
    name,
    element,
    client: client.id,
    token: held.record.token,
    grantReceivedSeq: held.record.receivedSeq,
    readRevision: read.revision,
    attempts,
    afterPause,
  };
  o.appends.push(record);
  const until = run.now() + 2_000;
  for (;;) {
    const sentSeq = run.seq();
    const w = await o.write(client, held, value);
    attempts.push({ sentSeq, doneSeq: run.seq(), ...w });
    if (w.status > 0 && w.status < 500) {
      if (w.status !== 200 && w.status !== 409 && w.status !== 410) {
        run.fail(`${name}: a state write was answered ${w.status}`);
      }
      return;
    }
    if (run.now() >= until) return;
    await sleep(uniform(50, 150));
  }
}

/**
 * A pause between the read and the write: past the TTL (the lease expires; etcd notices
 * within half a second), then until another holder's grant of the name has arrived (for
 * at most 5 s more: a leader change extends every lease, and someone must be waiting),
 * then a little longer, so that the new holder has usually read and written meanwhile
 * and this holder's write comes after it, stale.
 */
async function pausePast(client: Client, held: Held, ttl: number): Promise<void> {
  const run = client.run;
  const { name, token } = held.record;
  await sleep(ttl * 1_000 + uniform(500, 1_500));
  const until = run.now() + 5_000;
  const taken = () => run.grants.some((g) => g.name === name && g.kind === undefined && g.token > token);
  while (!taken() && run.now() < until) await sleep(50);
  await sleep(uniform(0, 800));
}

/** The lock's state as a list, retried after 503s and dropped connections for 2 s; `undefined`: no read. */
async function readState(client: Client, name: string): Promise<{ list: number[]; revision: number } | undefined> {
  const run = client.run;
  const until = run.now() + 2_000;
  for (;;) {
    const a = await client.send("read-state", "GET", `/locks/${name}/state`);
    if (a.status === 404) return { list: [], revision: 0 };
    if (a.status === 200) {
      const list = listOf(a.body?.value);
      if (list) return { list, revision: a.body.revision };
      run.fail(`${name}: the state read is not a list of integers: ${JSON.stringify(a.body).slice(0, 200)}`);
      return undefined;
    }
    if ((a.status > 0 && a.status !== 503) || run.now() >= until) {
      if (a.status > 0 && a.status !== 503) run.fail(`${name}: a state read was answered ${a.status}`);
      return undefined;
    }
    await sleep(uniform(50, 150));
  }
}

/**
 * No guard: the holder puts the state straight into etcd under the service's state key
 * (through the checker's own connection to the cluster), in the stored form the service
 * reads back (`{value, token, at}`), whether its grant is current or not. This is a
 * resource that trusts whoever holds (or held) the lock, as Jepsen's lock-set did.
 */
export function plainPut(cluster: EtcdCluster, prefix: string): StateWriter {
  const keys = new LineKeys(prefix);
  return async (_client, held, value) => {
    const key = keys.state({ kind: "lock", name: held.record.name });
    const stored = { value, token: held.record.token, at: new Date().toISOString() };
    try {
      return { status: 200, revision: await cluster.put(key, JSON.stringify(stored)) };
    } catch {
      return { status: 0 };
    }
  };
}
