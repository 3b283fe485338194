import { type Client, type Held, sleep, uniform } from "./run.js";

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

async function hold(client: Client, held: Held, ttlMs: number, stall: boolean): Promise<void> {
  // Well inside the TTL, counted from the grant's arrival.
  await sleep(uniform(0, ttlMs / 4));
  if (stall) {
    // A pause past the TTL: the lease expires, someone else may take the lock, and this
    // holder's next write is stale unless nobody did.
    await sleep(ttlMs + uniform(300, 1_500));
    client.write(held, true);
  } else {
    client.write(held, false);
    if (Math.random() < 0.3) {
      if ((await client.renew(held)) === false) return; // lost: a careful holder stops here
      client.write(held, false);
      await sleep(uniform(0, ttlMs / 4));
    }
  }
  await client.release(held, 2_000);
}

/** Waits for `ms` or until `stop` says so, checking every 100 ms. */
export async function pause(ms: number, stop: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !stop()) await sleep(Math.min(100, end - Date.now()));
}
