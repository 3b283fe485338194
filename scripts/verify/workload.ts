import { randomUUID } from "node:crypto";
import { type Answer, type Client, type Held, pick, type Run, sleep, uniform } from "./run.js";

export interface HolderOptions {
  names: readonly string[];
  /** TTL asked for, in seconds. */
  ttl: number;
  /** Share of holds that stall past their TTL before writing and releasing (a GC pause). */
  stallRate: number;
  /** Share of acquires that long-poll, and the largest `wait` they ask for (seconds). */
  waitRate: number;
  maxWait: number;
  /** Stop starting new holds at this time (run clock, ms). */
  until: number;
}

/**
 * A lock user: take a lock (wait or not), write to the fenced resource, hold a while
 * (sometimes renewing, sometimes stalling past the TTL), write again, release. Retries
 * acquire and release on other instances after 503s and dropped connections.
 */
export async function holder(client: Client, o: HolderOptions): Promise<void> {
  const run = client.run;
  const ttlMs = o.ttl * 1000;
  while (run.now() < o.until) {
    const name = o.names[Math.floor(Math.random() * o.names.length)] as string;
    const wait = Math.random() < o.waitRate ? Math.round(uniform(0.2, o.maxWait) * 10) / 10 : 0;
    const got = await client.acquire(name, { ttl: o.ttl, wait, retryMs: 2_000 });
    if (!("record" in got)) {
      await sleep(got.status === 409 ? uniform(20, 120) : uniform(100, 300));
      continue;
    }
    await hold(client, got, ttlMs, Math.random() < o.stallRate);
  }
}

/** How a hold ends: by default one release, retried for 2 s. */
type End = (client: Client, held: Held) => Promise<unknown>;
const release: End = (client, held) => client.release(held, 2_000);

/**
 * Holds a grant: writes to the fence (locks), sometimes renews, sometimes stalls past the
 * TTL (a GC pause), then ends it (by default one release, retried for 2 s).
 */
export async function hold(
  client: Client,
  held: Held,
  ttlMs: number,
  stall: boolean,
  o: { renewRate?: number; end?: End } = {},
): Promise<void> {
  // Well inside the TTL, counted from the grant's arrival.
  await sleep(uniform(0, ttlMs / 4));
  if (stall) {
    // A pause past the TTL: the lease expires, someone else may take the lock, and this
    // holder's next write is stale unless nobody did.
    await sleep(ttlMs + uniform(300, 1_500));
    client.write(held, true);
  } else {
    client.write(held, false);
    if (Math.random() < (o.renewRate ?? 0.3)) {
      if ((await client.renew(held)) === false) return; // lost: a careful holder stops here
      client.write(held, false);
      await sleep(uniform(0, ttlMs / 4));
    }
  }
  await (o.end ?? release)(client, held);
}

/** Waits for `ms` or until `stop` says so, checking every 100 ms. */
export async function pause(ms: number, stop: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !stop()) await sleep(Math.min(100, end - Date.now()));
}

export interface AdversaryOptions {
  /** The tenant's names (within its API keys' prefixes). */
  names: readonly string[];
  ttl: number;
  until: number;
  /** The same tenant's other API key: replays this client's Idempotency-Keys. */
  other?: Client;
  /** Another tenant's key: its replays on this tenant's names must be 403. */
  outsider: Client;
  /** An admin key: force-releases a name at the moment its holder releases it. */
  admin: Client;
  /**
   * A release raced by a force release starts 0 to this many ms after it: the force
   * release's read and its next etcd step are that far apart on a lagging instance.
   */
  raceMs: number;
  /** Names held right now, for the admin's random force releases. */
  held: Map<string, number>;
  counts: Record<string, number>;
}

const bump = (counts: Record<string, number>, what: string) => {
  counts[what] = (counts[what] ?? 0) + 1;
};

/**
 * A lock user of one tenant that does what careless and hostile callers do: some
 * acquires drop their first answer (the request is aborted at a random moment after it
 * was sent) and are retried with the same Idempotency-Key, which the tenant's other API
 * key and another tenant's key also replay; holds end by a release raced by an admin
 * force release or by a renew, or by a plain release.
 */
export async function adversary(client: Client, o: AdversaryOptions): Promise<void> {
  const run = client.run;
  const ttlMs = o.ttl * 1000;
  // Force releases still in flight when their race's release was answered.
  const racing: Promise<void>[] = [];
  // After a race, the next acquire is of another name at once: it takes the lease the
  // release just pooled, while the force release is still between its read and its act.
  let next: string | undefined;
  while (run.now() < o.until) {
    const name = next ?? pick(o.names);
    const plain = next !== undefined;
    next = undefined;
    const got =
      !plain && Math.random() < 0.3
        ? await droppedAcquire(client, name, o)
        : await client.acquire(name, {
            ttl: o.ttl,
            wait: !plain && Math.random() < 0.3 ? Math.round(uniform(0.2, 1.5) * 10) / 10 : 0,
            retryMs: 2_000,
          });
    if (!got) continue;
    if (!("record" in got)) {
      await sleep(got.status === 409 ? uniform(10, 60) : uniform(100, 300));
      continue;
    }
    o.held.set(name, (o.held.get(name) ?? 0) + 1);
    const r = Math.random();
    const end: End =
      r < 0.45
        ? async (c, h) => {
            bump(o.counts, "force releases racing a release");
            racing.push(o.admin.forceRelease(name).then((s) => checkForce(run, name, s)));
            await sleep(uniform(0, o.raceMs));
            await release(c, h);
            next = pick(o.names.filter((n) => n !== name));
          }
        : r < 0.65
          ? async (c, h) => {
              bump(o.counts, "renews racing a release");
              await Promise.all([c.renew(h), release(c, h)]);
            }
          : release;
    await hold(client, got, ttlMs, Math.random() < 0.05, { renewRate: 0.5, end });
    const left = (o.held.get(name) ?? 1) - 1;
    if (left > 0) o.held.set(name, left);
    else o.held.delete(name);
  }
  await Promise.all(racing);
}

/**
 * An acquire whose first answer the client never reads (aborted 0–25 ms after it was
 * sent: before, during or after the grant), then replayed by the tenant's other key
 * (it must not receive this caller's grant), by another tenant (403), and retried by
 * this caller with the same key and fields (its own grant again, or a normal answer).
 */
async function droppedAcquire(
  client: Client,
  name: string,
  o: AdversaryOptions,
): Promise<Held | { status: number } | undefined> {
  const run = client.run;
  const key = randomUUID();
  const body = { ttl: o.ttl, owner: client.id };
  const path = `/locks/${name}`;
  const headers = { "idempotency-key": key };
  const first = { seq: run.seq(), at: run.now() };
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), uniform(0, 25));
  let a: Answer | undefined;
  try {
    a = await client.send("acquire", "POST", path, body, { headers, signal: abort.signal });
  } catch {
    bump(o.counts, "first answers dropped");
  } finally {
    clearTimeout(timer);
  }
  if (a) return a.status === 201 || a.status === 200 ? client.granted(name, a, first) : { status: a.status };

  if (o.other && Math.random() < 0.5) {
    bump(o.counts, "replays by the tenant's other key");
    const at = run.now();
    const r = await o.other.send("acquire", "POST", path, body, { headers });
    if (r.status === 200) run.fail(`${name}: another API key's replay of an Idempotency-Key was answered 200`);
    if (r.status === 201) {
      // A grant of its own (the first caller's had ended or never landed): hold it briefly.
      const held = o.other.granted(name, r, { seq: r.sentSeq, at });
      await release(o.other, held);
    }
  }
  if (Math.random() < 0.3) {
    bump(o.counts, "replays by another tenant");
    const r = await o.outsider.send("acquire", "POST", path, body, { headers });
    if (r.status !== 403) run.fail(`${name}: another tenant's replay of an Idempotency-Key was answered ${r.status}`);
  }

  const until = run.now() + 2_000;
  for (;;) {
    const r = await client.send("acquire", "POST", path, body, { headers });
    if (r.status === 201 || r.status === 200) {
      bump(o.counts, r.status === 200 ? "retries answered 200 (the dropped grant)" : "retries answered 201");
      return client.granted(name, r, first);
    }
    if (r.status === 422) run.fail(`${name}: a retry with the same Idempotency-Key and fields was answered 422`);
    if ((r.status > 0 && r.status !== 503) || run.now() >= until) return { status: r.status };
    await sleep(uniform(50, 150));
  }
}

/** A force release must answer 204 (ended a grant), 404 (none held) or 503. */
export function checkForce(run: Run, name: string, status: number) {
  if (status !== 204 && status !== 404 && status !== 503) run.fail(`${name}: a force release was answered ${status}`);
}

/** The admin: force-releases a name some holder holds right now, every 150–500 ms. */
export async function forceLoop(
  admin: Client,
  o: { held: Map<string, number>; names: readonly string[]; until: number },
) {
  const run = admin.run;
  while (run.now() < o.until) {
    await sleep(uniform(150, 500));
    const held = [...o.held.keys()];
    const name = held.length > 0 && Math.random() < 0.8 ? pick(held) : pick(o.names);
    checkForce(run, name, await admin.forceRelease(name));
  }
}
