import { describe, expect, it } from "vitest";
import { createClient, LeaseholdError, type Ticket } from "../../src/client/index.js";

/**
 * The client's ticket loop against a stub `fetch` that answers as the service would,
 * for decisions a real service does not make on demand (a ticket dropping out of line at
 * a chosen moment, a poll that never ends, a 503 between two polls).
 */

interface Sent {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  // biome-ignore lint/suspicious/noExplicitAny: request bodies are inspected as JSON
  body: any;
}

/** An answer; `waits`: sent once the request's `wait` has passed, as a service answers a 202 that waited. */
type Answer = { status: number; body?: unknown; waits?: boolean } | "hang";

/** A fetch that records each request and answers from `script` (one answer per request, in order). */
function stub(script: ((req: Sent) => Answer)[]) {
  const sent: Sent[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const req: Sent = {
      method: init?.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: Object.fromEntries(new Headers(init?.headers).entries()),
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
    };
    sent.push(req);
    const next = script.shift();
    if (!next) throw new Error(`unexpected ${req.method} ${req.path}`);
    const answer = next(req);
    if (answer === "hang") {
      return new Promise((_, reject) =>
        init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")), {
          once: true,
        }),
      );
    }
    if (answer.waits) await new Promise((r) => setTimeout(r, (req.body?.wait ?? 0) * 1000));
    const text = answer.body === undefined ? null : JSON.stringify(answer.body);
    return new Response(text, { status: answer.status, headers: { "content-type": "application/json" } });
  };
  return { sent, fetch: fetch as typeof globalThis.fetch };
}

const SECRET = "t1ck3t5ecret0000aaaabbbbccccdddd";
const ticket = (position: number, t = SECRET) => ({ status: 202, body: { ticket: t, position, ttl: 30 } });
const grant = (name: string, extra: Record<string, unknown> = {}): Answer => ({
  status: 201,
  body: { name, token: 42, lease: "00ff00ff00ff00ff", ttl: 30, expiresAt: new Date().toISOString(), ...extra },
});
const noContent: Answer = { status: 204 };

describe("the ticket loop (stub service)", () => {
  it("withLock queue: joins, redeems with long polls of at most pollWait until its turn, runs, releases", async () => {
    const { sent, fetch } = stub([
      () => ticket(2),
      () => ticket(1),
      () => ticket(0),
      () => grant("q"),
      () => noContent,
    ]);
    const client = createClient({ url: "http://leasehold.test", fetch });
    const positions: number[] = [];
    const token = await client.withLock("q", (lock) => lock.token, {
      queue: true,
      pollWait: 20,
      ticketTtl: 45,
      ttl: 30,
      onQueued: (p) => positions.push(p),
    });
    expect(token).toBe(42);
    expect(positions).toEqual([2, 1, 0]);
    const [join, ...redeems] = sent.slice(0, 4);
    expect(join).toMatchObject({ method: "POST", path: "/locks/q", body: { queue: true, ticketTtl: 45, ttl: 30 } });
    expect(join?.headers["idempotency-key"]).toMatch(/^[0-9a-f-]{36}$/);
    for (const r of redeems) {
      expect(r).toMatchObject({ method: "POST", path: "/locks/q", body: { ticket: SECRET } });
      expect(r.body).not.toHaveProperty("queue");
      expect(r.headers["idempotency-key"]).toBeUndefined();
    }
    // The join answers at once; every redeem waits at most pollWait, whatever the total wait.
    expect(join?.body.wait).toBe(0);
    for (const r of redeems) {
      expect(r.body.wait).toBeGreaterThan(19);
      expect(r.body.wait).toBeLessThanOrEqual(20);
    }
    expect(sent[4]).toMatchObject({ method: "POST", path: "/locks/q/release", body: { lease: "00ff00ff00ff00ff" } });
  });

  it("aborting while in line leaves the line with the ticket, and rejects with the signal's reason", async () => {
    const { sent, fetch } = stub([() => ticket(3), () => "hang", () => noContent]);
    const client = createClient({ url: "http://leasehold.test", fetch });
    const controller = new AbortController();
    let ran = false;
    const waiting = client.withLock(
      "q",
      () => {
        ran = true;
      },
      { queue: true, signal: controller.signal, onQueued: () => setTimeout(() => controller.abort(new Error("bye"))) },
    );
    await expect(waiting).rejects.toThrow("bye");
    expect(ran).toBe(false);
    expect(sent[2]).toMatchObject({ method: "POST", path: "/locks/q/release", body: { ticket: SECRET } });
    expect(sent).toHaveLength(3);
  });

  it("a bounded wait gives up with lock-held (no ticket in the message) and leaves the line", async () => {
    const { sent, fetch } = stub([
      () => ticket(5),
      (r) => {
        expect(r.body.wait).toBeLessThanOrEqual(0.2);
        return { ...ticket(5), waits: true };
      },
      () => noContent,
    ]);
    const client = createClient({ url: "http://leasehold.test", fetch });
    const err = await client.withLock("q", () => "ran", { queue: true, wait: 0.2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseholdError);
    expect(err).toMatchObject({ code: "lock-held", status: 0 });
    expect((err as Error).message).toContain("5 ahead");
    expect((err as Error).message).not.toContain(SECRET);
    expect(sent[2]).toMatchObject({ method: "POST", path: "/locks/q/release", body: { ticket: SECRET } });
  });

  it("a ticket that dropped out of line (410) joins again with a new Idempotency-Key; a 503 between polls is retried", async () => {
    const { sent, fetch } = stub([
      () => ticket(1, "first0000000000000000000000000000"),
      () => ({ status: 503, body: { code: "backend-unavailable", status: 503, detail: "etcd" } }),
      () => ({ status: 410, body: { code: "lock-lost", status: 410, detail: "this ticket is no longer in line" } }),
      () => ticket(0),
      () => grant("q"),
      () => noContent,
    ]);
    const client = createClient({ url: "http://leasehold.test", fetch });
    expect(await client.withLock("q", (l) => l.lease, { queue: true, retryMs: 5_000 })).toBe("00ff00ff00ff00ff");
    expect(sent.map((s) => s.body?.ticket ?? (s.body?.queue ? "join" : s.path.split("/").at(-1)))).toEqual([
      "join",
      "first0000000000000000000000000000",
      "first0000000000000000000000000000",
      "join",
      SECRET,
      "release",
    ]);
    const keys = [sent[0], sent[3]].map((s) => s?.headers["idempotency-key"]);
    expect(keys[0]).not.toBe(keys[1]);
  });

  it("acquire with queue answers a ticket or a grant; redeem and leave carry the ticket in the body, never in a message", async () => {
    const { sent, fetch } = stub([
      () => ticket(4),
      () => ticket(2),
      () => ({ status: 400, body: { code: "invalid-request", status: 400, detail: "wait must not be negative" } }),
      () => grant("q"),
      () => "hang",
    ]);
    const client = createClient({ url: "http://leasehold.test", fetch, timeoutMs: 100 });
    const first = await client.acquire("q", { queue: true, ticketTtl: 120 });
    expect(first).toEqual({ ticket: SECRET, position: 4, ttl: 30 } satisfies Ticket);
    const again = await client.redeem("q", SECRET, { wait: 2 });
    expect("ticket" in again && again.position).toBe(2);
    const bad = await client.redeem("q", SECRET, { wait: -1 }).catch((e: unknown) => e as LeaseholdError);
    expect(bad).toMatchObject({ code: "invalid-request" });
    expect((bad as Error).message).not.toContain(SECRET);
    const won = await client.redeem("q", SECRET);
    expect("ticket" in won).toBe(false);
    expect(won).toMatchObject({ token: 42 });
    const gone = await client.leave("q", SECRET).catch((e: unknown) => e as LeaseholdError);
    expect(gone).toMatchObject({ code: "timeout" });
    expect((gone as Error).message).not.toContain(SECRET);
    expect(sent[4]).toMatchObject({ method: "POST", path: "/locks/q/release", body: { ticket: SECRET } });
    // Tickets, like leases, never travel in a URL.
    for (const r of sent) expect(r.query.toString()).toBe("");
  });

  it("semaphores: withPermit sends the limit with the join and every redeem, on /semaphores", async () => {
    const { sent, fetch } = stub([() => ticket(0), () => grant("pool", { limit: 3 }), () => noContent]);
    const client = createClient({ url: "http://leasehold.test", fetch });
    const limit = await client.withPermit("pool", 3, (p) => p.grant.limit, { queue: true });
    expect(limit).toBe(3);
    expect(sent.map((s) => `${s.method} ${s.path}`)).toEqual([
      "POST /semaphores/pool",
      "POST /semaphores/pool",
      "POST /semaphores/pool/release",
    ]);
    expect(sent[0]?.body).toMatchObject({ limit: 3, queue: true });
    expect(sent[1]?.body).toMatchObject({ limit: 3, ticket: SECRET });
  });

  it("a semaphore grant without its limit is not a permit (invalid-response)", async () => {
    const { fetch } = stub([() => grant("pool"), () => grant("pool")]);
    const client = createClient({ url: "http://leasehold.test", fetch });
    const err = await client
      .semaphore("pool", 2)
      .acquire({ retryMs: 0 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "invalid-response" });
  });
});
