/**
 * More adversarial callers for the adversarial scenario, besides the lock holders of
 * workload.ts: an admin that force-releases by token (read from an inspect a moment
 * earlier, so often a grant that has ended since: that must be a 404 and must not end
 * the next holder), callers of one tenant that try the other tenant's names and leaked
 * handles (every such request must be refused), and semaphore and ticket users that
 * drop answers, retry with the same Idempotency-Key, race their releases with renews
 * and force releases, and race their redeems with leaving the line.
 */
import { randomUUID } from "node:crypto";
import { type Answer, type ApiKey, type Client, type Held, pick, sleep, uniform } from "./run.js";
import { checkForce, hold } from "./workload.js";

const bump = (counts: Record<string, number>, what: string) => {
  counts[what] = (counts[what] ?? 0) + 1;
};

type Kind = "lock" | "semaphore";
/** How the counts name a line adversary's kind of line. */
const label = (o: { kind: Kind }) => (o.kind === "semaphore" ? "semaphore" : "queue");
const base = (kind: Kind) => (kind === "semaphore" ? "/semaphores" : "/locks");

/** A force release of the holder with `token` (an admin key), recorded for the checkers. */
export async function forceToken(admin: Client, kind: Kind, name: string, token: number): Promise<number> {
  const a = await admin.send("force", "DELETE", `${base(kind)}/${name}?force=true&token=${token}`);
  admin.run.forces.push({
    name,
    ...(kind === "semaphore" ? { kind } : {}),
    token,
    sentSeq: a.sentSeq,
    doneSeq: a.doneSeq,
    status: a.status,
  });
  checkForce(admin.run, name, a.status);
  return a.status;
}

/** The holders' tokens an inspect shows (none on a 404, or when it failed). */
export async function inspectTokens(client: Client, kind: Kind, name: string): Promise<number[]> {
  const a = await client.send("inspect", "GET", `${base(kind)}/${name}`);
  if (a.status !== 200) return [];
  if (Array.isArray(a.body?.holders)) return a.body.holders.map((h: { token: number }) => h.token);
  return typeof a.body?.token === "number" ? [a.body.token] : [];
}

/**
 * The admin: inspects a line, then 0–300 ms later force-releases a holder it showed, by
 * its token; by then that grant has often ended and another holds: a correct service
 * answers 404 and leaves the new holder alone.
 */
export async function tokenForces(
  admin: Client,
  o: { lines: readonly { kind: Kind; name: string }[]; until: number; counts: Record<string, number> },
): Promise<void> {
  const run = admin.run;
  while (run.now() < o.until) {
    await sleep(uniform(100, 400));
    const line = pick(o.lines);
    const tokens = await inspectTokens(admin, line.kind, line.name);
    if (tokens.length === 0) continue;
    await sleep(uniform(0, 300));
    const status = await forceToken(admin, line.kind, line.name, pick(tokens));
    bump(o.counts, `force releases by token answered ${status}`);
  }
}

/**
 * A caller of one tenant probing the other's: acquires, inspects, renews and releases
 * (with handles the other tenant's callers were given) and force releases of its names.
 * Every one must be refused (403), and none may change anything.
 */
export async function tenantProbe(
  probe: Client,
  o: {
    /** The other tenant's lines. */
    lines: readonly { kind: Kind; name: string }[];
    /** Its API key's label: grants it was given are the handles to try. */
    victim: string;
    until: number;
    counts: Record<string, number>;
  },
): Promise<void> {
  const run = probe.run;
  while (run.now() < o.until) {
    await sleep(uniform(100, 300));
    const line = pick(o.lines);
    const path = `${base(line.kind)}/${line.name}`;
    const leaked = run.grants.filter((g) => g.caller === o.victim && g.name === line.name).at(-1);
    const r = Math.random();
    let a: Answer;
    if (r < 0.3 && leaked) a = await probe.send("renew", "PUT", `${path}/renew`, { lease: leaked.lease });
    else if (r < 0.6 && leaked) a = await probe.send("release", "DELETE", path, { lease: leaked.lease });
    else if (r < 0.75) a = await probe.send("inspect", "GET", path);
    else if (r < 0.85) a = await probe.send("force", "DELETE", `${path}?force=true`);
    else {
      const limit = line.kind === "semaphore" ? { limit: 2 } : {};
      a = await probe.send("acquire", "POST", path, { ttl: 2, owner: probe.id, ...limit });
    }
    bump(o.counts, "requests on the other tenant's names");
    if (a.status !== 403 && a.status > 0 && a.status !== 503) {
      run.fail(`${line.name}: a request with another tenant's key (${probe.id}) was answered ${a.status}`);
    }
  }
}

export interface LineAdversaryOptions {
  kind: Kind;
  names: readonly string[];
  /** Semaphores: their limit. */
  limit: number;
  ttl: number;
  ticketTtl: number;
  until: number;
  admin: Client;
  /** A client with the tenant's other API key: replays Idempotency-Keys of grants just received. */
  other?: Client;
  /** Share of acquires that queue (a ticket) instead of being refused. */
  queueRate: number;
  counts: Record<string, number>;
}

/**
 * A semaphore or queue user: some acquires drop their first answer (aborted 0–25 ms after
 * sending) and retry with the same Idempotency-Key; some take a ticket and redeem it until
 * granted, leaving the line now and then (half the time racing a redeem); holds end by a
 * release raced by the admin's force release of the holder's token, or by a renew, or
 * by a plain release.
 */
export async function lineAdversary(client: Client, o: LineAdversaryOptions): Promise<void> {
  const run = client.run;
  const racing: Promise<unknown>[] = [];
  while (run.now() < o.until) {
    const name = pick(o.names);
    const queue = Math.random() < o.queueRate;
    const got = await join(client, name, o, queue);
    if (!got) {
      await sleep(uniform(20, 150));
      continue;
    }
    const r = Math.random();
    const end =
      r < 0.35
        ? async (c: Client, h: Held) => {
            bump(o.counts, `${label(o)} force releases by token racing a release`);
            racing.push(forceToken(o.admin, o.kind, name, h.record.token));
            await sleep(uniform(0, 60));
            await c.release(h, 2_000);
          }
        : r < 0.55
          ? async (c: Client, h: Held) => {
              bump(o.counts, `${label(o)} renews racing a release`);
              await Promise.all([c.renew(h), c.release(h, 2_000)]);
            }
          : (c: Client, h: Held) => c.release(h, 2_000);
    await hold(client, got, o.ttl * 1_000, Math.random() < 0.05, { renewRate: 0.4, end });
  }
  await Promise.all(racing);
}

/** Joins a line (maybe dropping the first answer, maybe taking a ticket); the grant, or `undefined`. */
async function join(client: Client, name: string, o: LineAdversaryOptions, queue: boolean): Promise<Held | undefined> {
  const run = client.run;
  const path = `${base(o.kind)}/${name}`;
  const body = {
    ttl: o.ttl,
    owner: client.id,
    ...(o.kind === "semaphore" ? { limit: o.limit } : {}),
    ...(queue ? { queue: true, ticketTtl: o.ticketTtl } : {}),
  };
  const headers = { "idempotency-key": randomUUID() };
  const first = { seq: run.seq(), at: run.now() };
  const line = o.kind === "semaphore" ? { kind: "semaphore" as const } : {};
  const dropFirst = Math.random() < 0.3;
  const until = run.now() + 2_000;
  for (let attempt = 0; ; attempt++) {
    let a: Answer | undefined;
    const abort = new AbortController();
    const timer = dropFirst && attempt === 0 ? setTimeout(() => abort.abort(), uniform(0, 25)) : undefined;
    try {
      a = await client.send("acquire", "POST", path, body, { headers, signal: abort.signal });
    } catch {
      bump(o.counts, `${label(o)} first answers dropped`);
    } finally {
      clearTimeout(timer);
    }
    if (a?.status === 201 || a?.status === 200) {
      if (a.status === 200) bump(o.counts, `${label(o)} retries answered 200 (the dropped grant)`);
      const held = client.granted(name, a, first, line);
      if (o.other && Math.random() < 0.3) await replayByOther(o.other, name, o, path, body, headers, held);
      return held;
    }
    if (a?.status === 202) return redeem(client, name, o, a, line);
    if ((a && a.status > 0 && a.status !== 503) || run.now() >= until) return undefined;
    await sleep(uniform(50, 150));
  }
}

/**
 * The tenant's other API key sends the Idempotency-Key (and fields) of a grant its
 * holder just received: it must not be handed that grant (200). Its own grant, or its
 * own ticket, it gives back at once.
 */
async function replayByOther(
  other: Client,
  name: string,
  o: LineAdversaryOptions,
  path: string,
  body: Record<string, unknown>,
  headers: Record<string, string>,
  held: Held,
): Promise<void> {
  const run = other.run;
  const at = run.now();
  const r = await other.send("acquire", "POST", path, body, { headers });
  bump(o.counts, `${label(o)} replays of a held grant's key by the tenant's other key answered ${r.status}`);
  if (r.status === 200 || r.body?.lease === held.lease) {
    // Recorded as its grant too, so the checker sees the handle go to a second API key.
    other.granted(name, r, { seq: r.sentSeq, at }, o.kind === "semaphore" ? { kind: "semaphore" } : {});
    run.fail(
      `${name}: another API key's replay of a held grant's Idempotency-Key was answered ${r.status} with that grant`,
    );
  } else if (r.status === 201) {
    await other.release(
      other.granted(name, r, { seq: r.sentSeq, at }, o.kind === "semaphore" ? { kind: "semaphore" } : {}),
      2_000,
    );
  } else if (r.status === 202 && typeof r.body?.ticket === "string") {
    await other.send("leave", "DELETE", `${path}?ticket=${r.body.ticket}`);
  }
}

/**
 * Redeems a ticket until granted; leaves the line now and then (half of those racing a
 * redeem: a grant that redeem received ended with the leave, as leaving a ticket that
 * became a grant ends it), or abandons it.
 */
async function redeem(
  client: Client,
  name: string,
  o: LineAdversaryOptions,
  taken: Answer,
  line: { kind?: "semaphore" },
): Promise<Held | undefined> {
  const run = client.run;
  const path = `${base(o.kind)}/${name}`;
  const ticket = taken.body.ticket as string;
  bump(o.counts, `${label(o)} tickets taken`);
  for (;;) {
    await sleep(uniform(50, o.ticketTtl * 400));
    const r = Math.random();
    if (r < 0.05) {
      bump(o.counts, `${label(o)} tickets abandoned`);
      return undefined;
    }
    const at = run.now();
    if (r < 0.15 || run.now() >= o.until) {
      const leave = client.send("leave", "DELETE", `${path}?ticket=${ticket}`);
      const raced = r < 0.1 ? client.send("redeem", "POST", path, { ticket }) : undefined;
      const [left, got] = await Promise.all([leave, raced]);
      bump(o.counts, `${label(o)} leaves${raced ? " racing a redeem" : ""} answered ${left.status}`);
      if (got && (got.status === 201 || got.status === 200)) {
        // The grant the redeem received may have been ended by the leave: it counts as released then.
        const held = client.granted(name, got, { seq: got.sentSeq, at }, line);
        held.record.releaseFirstSentSeq = left.sentSeq;
        bump(o.counts, `${label(o)} redeems racing a leave granted`);
      }
      return undefined;
    }
    const a = await client.send("redeem", "POST", path, { ticket });
    if (a.status === 201 || a.status === 200) return client.granted(name, a, { seq: a.sentSeq, at }, line);
    if (a.status !== 202 && a.status > 0 && a.status !== 503) {
      bump(o.counts, `${label(o)} redeems answered ${a.status}`);
      return undefined;
    }
  }
}

/** What the adversarial scenario adds with these callers, for its description. */
export const MORE_ADVERSARIES =
  "Each tenant also has a semaphore (limit 2) and a queue (a lock whose callers mostly take tickets, `ticketTtl` 3 s): their users drop first answers and retry, race releases with renews and with force releases of their own token, and leave the line, half the time racing a redeem; the admin inspects a line and force-releases a holder it showed by token 0–300 ms later (often a grant that ended meanwhile: a 404, and the next holder must keep its grant); a caller of each tenant tries the other's names (acquire, inspect, force) and the handles its callers were given (renew, release): each must be refused with 403; and tenant a's other key replays the Idempotency-Key of 30 % of the grants its first key's semaphore and queue users just received, while they hold them: it must not be handed them";

/**
 * The callers above for the adversarial scenario: per tenant (`lines` by label), semaphore
 * and queue users (`users` of each), a prober with the other tenant's key, and the admin's
 * forces by token over every line.
 */
export function moreAdversaries(o: {
  /** Each tenant's API key, and maybe another key of the same tenant (see `replayByOther`). */
  tenants: readonly { label: string; key: ApiKey; other?: ApiKey; prefix: string }[];
  admin: Client;
  users: number;
  ttl: number;
  until: number;
  counts: Record<string, number>;
}): Promise<unknown>[] {
  const run = o.admin.run;
  const linesOf = (prefix: string) => [
    { kind: "lock" as const, name: `${prefix}lock:0` },
    { kind: "semaphore" as const, name: `${prefix}sem:0` },
    { kind: "lock" as const, name: `${prefix}queue:0` },
  ];
  const out: Promise<unknown>[] = [];
  for (const [t, tenant] of o.tenants.entries()) {
    const other = o.tenants[(t + 1) % o.tenants.length] as (typeof o.tenants)[number];
    const second = tenant.other && run.client(`${tenant.label}-other`, t + 2, tenant.other);
    const common = {
      ttl: o.ttl,
      ticketTtl: 3,
      until: o.until,
      admin: o.admin,
      counts: o.counts,
      ...(second ? { other: second } : {}),
    };
    // One more semaphore user than the queue's, so permits run out.
    for (let i = 0; i <= o.users; i++) {
      const sem = run.client(`${tenant.label}-sem${i}`, i, tenant.key);
      out.push(
        lineAdversary(sem, {
          ...common,
          kind: "semaphore",
          names: [`${tenant.prefix}sem:0`],
          limit: 2,
          queueRate: 0.3,
        }),
      );
    }
    for (let i = 0; i < o.users; i++) {
      const queue = run.client(`${tenant.label}-queue${i}`, i + 1, tenant.key);
      out.push(
        lineAdversary(queue, { ...common, kind: "lock", names: [`${tenant.prefix}queue:0`], limit: 1, queueRate: 0.8 }),
      );
    }
    const probe = run.client(`${tenant.label}-probe`, t, tenant.key);
    out.push(
      tenantProbe(probe, { lines: linesOf(other.prefix), victim: other.label, until: o.until, counts: o.counts }),
    );
  }
  // Per tenant, an admin that inspects its lines and force-releases by token.
  for (const [t, tenant] of o.tenants.entries()) {
    const admin = run.client(`admin-${tenant.label}`, t, o.admin.auth);
    out.push(tokenForces(admin, { lines: linesOf(tenant.prefix), until: o.until, counts: o.counts }));
  }
  return out;
}
