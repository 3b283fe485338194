import { describe, expect, it } from "vitest";
import { parseApiKeys } from "../../src/auth/api-keys.js";
import { parseConfig } from "../../src/config.js";
import { createApp } from "../../src/http/app.js";
import type { AppDeps } from "../../src/http/deps.js";
import {
  type Acquired,
  LimitMismatch,
  type LineInfo,
  type Lines,
  LockHeld,
  LockLost,
  TicketMismatch,
  ticketLost,
} from "../../src/lock/index.js";

/**
 * The HTTP layer over a scripted engine: what each request hands the engine, and how the
 * engine's answers and refusals reach the caller. (What the engine itself does is the
 * contract suite's, on a real etcd: test/contract/.)
 */

type Call = [op: string, ...args: unknown[]];

/** An engine that records every call and answers what the test scripted (or throws it). */
function scripted(answer: (op: string, ...args: unknown[]) => unknown = () => undefined) {
  const calls: Call[] = [];
  const run = async (op: string, ...args: unknown[]) => {
    // The signal is the request's own: not something to compare.
    const shown = args.map((a) =>
      a && typeof a === "object" && "signal" in a ? { ...(a as object), signal: "signal" } : a,
    );
    calls.push([op, ...shown]);
    const out = answer(op, ...args);
    if (out instanceof Error) throw out;
    return out;
  };
  const lines = {
    activeWaiters: 0,
    acquire: (...a: unknown[]) => run("acquire", ...a),
    redeem: (...a: unknown[]) => run("redeem", ...a),
    leave: (...a: unknown[]) => run("leave", ...a),
    renew: (...a: unknown[]) => run("renew", ...a),
    release: (...a: unknown[]) => run("release", ...a),
    forceRelease: (...a: unknown[]) => run("forceRelease", ...a),
    inspect: (...a: unknown[]) => run("inspect", ...a),
    // A read answers the scripted line with index 42.
    read: async (...a: unknown[]) => {
      const info = await run("read", ...a);
      return { ...(info ? { info } : {}), index: 42 };
    },
    list: (...a: unknown[]) => run("list", ...a),
    sweepLeases() {},
    close: async () => {},
  } as unknown as Lines;
  return { lines, calls };
}

const ADMIN = "lines-admin-key";

async function appOn(lines: Lines, env: Record<string, string> = {}, auth = false) {
  const deps = {
    config: parseConfig({ LEASEHOLD_MAX_TICKET_TTL: "600", ...env }),
    lines,
    log: { infoEnabled: false, info() {}, warn() {}, error() {} },
    docsAssets: async () => undefined,
    ...(auth
      ? { auth: await parseApiKeys(JSON.stringify([{ key: ADMIN, prefixes: [""], admin: true }]), "test") }
      : {}),
  } as unknown as AppDeps;
  const app = createApp(deps);
  return async (method: string, path: string, body?: Record<string, unknown> | string, headers = {}) => {
    const sent: Record<string, string> = { ...headers };
    let text: string | undefined;
    if (body !== undefined) {
      text = typeof body === "string" ? body : JSON.stringify(body);
      sent["content-type"] = typeof body === "string" ? "application/x-www-form-urlencoded" : "application/json";
      // As a server sees it: without a length (or chunking) there is no body.
      sent["content-length"] = String(new TextEncoder().encode(text).length);
    }
    const res = await app.request(path, { method, headers: sent, ...(text !== undefined ? { body: text } : {}) });
    const answer = await res.text();
    return { status: res.status, headers: res.headers, text: answer, json: answer ? JSON.parse(answer) : undefined };
  };
}

const GRANT = {
  name: "n",
  token: 7,
  lease: "6c1f2a9be0d34f176c1f2a9be0d34f17",
  ttl: 30,
  expiresAt: "2026-01-01T00:00:30.000Z",
};
const TICKET = { ticket: "9d2e4b1c07a35f689d2e4b1c07a35f68", position: 2, ttl: 45 };
const granted = (limit?: number): Acquired => ({
  grant: { ...GRANT, ...(limit !== undefined ? { limit } : {}) },
  replayed: false,
});

describe("acquire and redeem, as the engine sees them", () => {
  it("a lock is a line of limit 1; queue (a form's true) asks for a ticket with the default ticketTtl", async () => {
    const { lines, calls } = scripted(() => ({ ticket: TICKET }));
    const api = await appOn(lines, { LEASEHOLD_DEFAULT_TICKET_TTL: "45" });
    const r = await api("POST", "/locks/n", "queue=true&wait=1.5&owner=a");
    expect(r.status).toBe(202);
    expect(r.json).toEqual(TICKET);
    expect(calls).toEqual([
      [
        "acquire",
        { kind: "lock", name: "n" },
        { ttl: 30, wait: 1.5, limit: 1, owner: "a", queue: true, ticketTtl: 45, caller: "", signal: "signal" },
      ],
    ]);
  });

  it("without queue no ticketTtl reaches the engine; ticketTtl is the caller's when sent", async () => {
    const { lines, calls } = scripted(() => granted(1));
    const api = await appOn(lines);
    const plain = await api("POST", "/locks/n", { queue: false });
    expect(plain.status).toBe(201);
    // A lock's grant does not show the limit.
    expect(plain.json).toEqual(GRANT);
    expect(await api("POST", "/semaphores/n", "limit=3&queue=true&ticketTtl=600")).toMatchObject({ status: 201 });
    expect(calls.map((c) => c[2])).toEqual([
      { ttl: 30, wait: 0, limit: 1, caller: "", signal: "signal" },
      { ttl: 30, wait: 0, limit: 3, queue: true, ticketTtl: 600, caller: "", signal: "signal" },
    ]);
    expect(calls[1]?.[1]).toEqual({ kind: "semaphore", name: "n" });
  });

  it("a semaphore's grant carries its limit; a replay is 200", async () => {
    const { lines } = scripted(() => ({ ...granted(4), replayed: true }));
    const api = await appOn(lines);
    const r = await api("POST", "/semaphores/n", { limit: 4 });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ ...GRANT, limit: 4 });
  });

  it("a body with a ticket redeems it (lower case), passing only the fields sent again", async () => {
    const { lines, calls } = scripted((op) => (op === "redeem" ? { ticket: { ...TICKET, position: 0 } } : undefined));
    const api = await appOn(lines);
    const upper = TICKET.ticket.toUpperCase();
    const r = await api("POST", "/locks/n", { ticket: upper, wait: 2, queue: true });
    expect(r.status).toBe(202);
    expect(r.json.position).toBe(0);
    const s = await api("POST", "/semaphores/n", { ticket: TICKET.ticket, ttl: 10, owner: "o", limit: 2 });
    expect(s.status).toBe(202);
    expect(calls).toEqual([
      ["redeem", { kind: "lock", name: "n" }, TICKET.ticket, { wait: 2, signal: "signal" }],
      [
        "redeem",
        { kind: "semaphore", name: "n" },
        TICKET.ticket,
        { wait: 0, ttl: 10, owner: "o", limit: 2, signal: "signal" },
      ],
    ]);
  });

  const refused: [label: string, path: string, body: Record<string, unknown> | string, detail: RegExp][] = [
    ["ticketTtl with a ticket", "/locks/n", { ticket: TICKET.ticket, ticketTtl: 5 }, /ticketTtl is set when/],
    ["ticketTtl without queue", "/locks/n", { ticketTtl: 5 }, /^ticketTtl goes with queue: true/],
    ["ticketTtl with queue false", "/locks/n", { ticketTtl: 5, queue: false }, /^ticketTtl goes with queue: true/],
    ["ticketTtl over the max", "/locks/n", { queue: true, ticketTtl: 601 }, /^ticketTtl must be at most 600 seconds/],
    ["ticketTtl 0", "/locks/n", { queue: true, ticketTtl: 0 }, /^ticketTtl must be at least 1 second, got 0$/],
    ["ticketTtl 1.5", "/locks/n", "queue=true&ticketTtl=1.5", /^ticketTtl must be a whole number of seconds/],
    ["queue as a string", "/locks/n", { queue: "true" }, /^queue must be true or false, got "true"$/],
    ["a form's queue=yes", "/locks/n", "queue=yes", /^queue must be true or false, got "yes"$/],
    ["a malformed ticket", "/locks/n", { ticket: "abc" }, /^ticket must be 16 to 64 hex digits.*got a string of 3/],
    ["a limit on a lock", "/locks/n", { limit: 2 }, /unknown field "limit"/],
    ["a semaphore without limit", "/semaphores/n", { ttl: 5 }, /^limit is required for a semaphore/],
    ["a semaphore's limit 0", "/semaphores/n", { limit: 0 }, /^limit must be at least 1, got 0$/],
    ["a semaphore's limit 10001", "/semaphores/n", { limit: 10_001 }, /^limit must be at most 10000, got 10001$/],
    ["a semaphore's limit 1.5", "/semaphores/n", "limit=1.5", /^limit must be a whole number, got 1\.5$/],
  ];
  it.each(refused)("%s → 400, and the engine is not asked", async (_label, path, body, detail) => {
    const { lines, calls } = scripted();
    const api = await appOn(lines);
    const r = await api("POST", path, body);
    expect(r.status, r.text).toBe(400);
    expect(r.json.code).toBe("invalid-request");
    expect(r.json.detail).toMatch(detail);
    expect(r.text).not.toContain("abc");
    expect(calls).toEqual([]);
  });
});

describe("the engine's refusals as problems", () => {
  const holder = { owner: "h", token: 3, expiresAt: "2026-01-01T00:00:09.000Z" };
  const cases: [label: string, err: Error, status: number, code: string, members: Record<string, unknown>][] = [
    ["a held lock", new LockHeld("lock n", holder, 9), 409, "lock-held", { holder }],
    ["a lock after a wait", new LockHeld("lock n", holder, 9, 2), 409, "lock-held", { holder, position: 2 }],
    ["a full semaphore", new LockHeld("semaphore n", undefined, 4, 0), 409, "lock-held", { position: 0 }],
    ["another limit", new LimitMismatch("semaphore n", 3, 5), 409, "limit-mismatch", { limit: 3 }],
    [
      "other fields with a ticket",
      new TicketMismatch("the ticket was taken with ttl 30, got 10"),
      400,
      "invalid-request",
      {},
    ],
    ["a lost ticket", ticketLost("lock n"), 410, "lock-lost", {}],
  ];
  it.each(cases)("%s", async (_label, err, status, code, members) => {
    const api = await appOn(scripted(() => err).lines);
    const r = await api("POST", "/semaphores/n", { limit: 5, ticket: TICKET.ticket });
    expect(r.status).toBe(status);
    expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(r.json).toEqual({
      type: `/problems/${code}`,
      title: expect.any(String),
      status,
      detail: err.message,
      code,
      ...members,
    });
    if (err instanceof LockHeld) expect(r.headers.get("retry-after")).toBe(String(err.retryAfter));
    expect(r.text).not.toContain(TICKET.ticket);
  });
});

describe("what GET and listings show", () => {
  const info = (waiters: number): LineInfo => ({
    name: "n",
    limit: 1,
    holders: [
      // Anything else the engine may know about a holder (here a lease) is never shown.
      { token: 7, ttl: 12, expiresAt: "2026-01-01T00:00:12.000Z", owner: "o", lease: GRANT.lease } as never,
    ],
    waiters,
  });

  it("a lock: its holder flat, waiters only when some are in line", async () => {
    const api = await appOn(scripted((_op, _line) => info(0)).lines);
    const free = await api("GET", "/locks/n");
    expect(free.json).toEqual({
      name: "n",
      token: 7,
      ttl: 12,
      expiresAt: "2026-01-01T00:00:12.000Z",
      owner: "o",
      index: 42,
    });
    expect(free.headers.get("leasehold-index")).toBe("42");
    const busy = await appOn(scripted(() => info(3)).lines);
    expect((await busy("GET", "/locks/n")).json).toMatchObject({ token: 7, waiters: 3 });
  });

  it("a semaphore: limit, holders and waiters (0 too)", async () => {
    const semaphore = { ...info(0), limit: 2, holders: [...info(0).holders, { token: 9, ttl: 3, expiresAt: "x" }] };
    const api = await appOn(scripted(() => semaphore).lines);
    const r = await api("GET", "/semaphores/n");
    expect(r.json).toEqual({
      name: "n",
      limit: 2,
      holders: [
        { token: 7, ttl: 12, expiresAt: "2026-01-01T00:00:12.000Z", owner: "o" },
        { token: 9, ttl: 3, expiresAt: "x" },
      ],
      waiters: 0,
      index: 42,
    });
    expect(r.text).not.toContain(GRANT.lease);
  });

  it("nobody holding is 404 lock-not-found for either kind", async () => {
    const api = await appOn(scripted(() => undefined).lines);
    for (const [path, noun] of [
      ["/locks/n", "lock"],
      ["/semaphores/n", "semaphore"],
    ]) {
      const r = await api("GET", path as string);
      expect(r.status).toBe(404);
      expect(r.json).toMatchObject({ code: "lock-not-found", detail: `${noun} n is not held`, index: 42 });
      expect(r.headers.get("leasehold-index")).toBe("42");
    }
  });

  it("a listing asks for its kind and shows each item as GET does", async () => {
    const { lines, calls } = scripted(() => ({ items: [info(2)], next: "n" }));
    const api = await appOn(lines);
    const r = await api("GET", "/semaphores?prefix=n&limit=1");
    expect(r.json.items).toEqual([
      {
        name: "n",
        limit: 1,
        holders: [{ token: 7, ttl: 12, expiresAt: "2026-01-01T00:00:12.000Z", owner: "o" }],
        waiters: 2,
      },
    ]);
    expect(r.json.cursor).toEqual(expect.any(String));
    const locks = await api("GET", "/locks");
    expect(locks.json.items).toEqual([
      { name: "n", token: 7, ttl: 12, expiresAt: "2026-01-01T00:00:12.000Z", owner: "o", waiters: 2 },
    ]);
    expect(calls).toEqual([
      ["list", "semaphore", { prefix: "n", within: [""], limit: 1 }],
      ["list", "lock", { prefix: "", within: [""], limit: 100 }],
    ]);
  });
});

describe("DELETE: a lease, a ticket, or force", () => {
  const admin = { authorization: `Bearer ${ADMIN}` };

  it("?ticket= (or the body's ticket) leaves the line: 204", async () => {
    const { lines, calls } = scripted();
    const api = await appOn(lines);
    expect((await api("DELETE", `/locks/n?ticket=${TICKET.ticket.toUpperCase()}`)).status).toBe(204);
    expect((await api("DELETE", "/semaphores/n", `ticket=${TICKET.ticket}`)).status).toBe(204);
    expect(calls).toEqual([
      ["leave", { kind: "lock", name: "n" }, TICKET.ticket],
      ["leave", { kind: "semaphore", name: "n" }, TICKET.ticket],
    ]);
  });

  it("force with a token names the permit; a semaphore needs one; 404 when no such holder", async () => {
    const { lines, calls } = scripted((op, _line, token) => (op === "forceRelease" && token === 7 ? {} : undefined));
    const api = await appOn(lines, {}, true);
    expect((await api("DELETE", "/semaphores/n?force=true&token=7", undefined, admin)).status).toBe(204);
    const none = await api("DELETE", "/semaphores/n?force=true&token=8", undefined, admin);
    expect(none.status).toBe(404);
    expect(none.json).toMatchObject({ code: "lock-not-found", detail: "semaphore n has no holder with token 8" });
    const noToken = await api("DELETE", "/semaphores/n?force=true", undefined, admin);
    expect(noToken.status).toBe(400);
    expect(noToken.json.detail).toMatch(/^force release of a semaphore needs \?token=N/);
    expect((await api("DELETE", "/locks/n?force=true", undefined, admin)).status).toBe(404);
    expect((await api("DELETE", "/locks/n?force=true&token=7", undefined, admin)).status).toBe(204);
    expect(calls).toEqual([
      ["forceRelease", { kind: "semaphore", name: "n" }, 7],
      ["forceRelease", { kind: "semaphore", name: "n" }, 8],
      ["forceRelease", { kind: "lock", name: "n" }, undefined],
      ["forceRelease", { kind: "lock", name: "n" }, 7],
    ]);
  });

  const mixed: [label: string, path: string, body: Record<string, unknown> | undefined, detail: RegExp][] = [
    [
      "a ticket and a lease",
      `/locks/n?ticket=${TICKET.ticket}&lease=${GRANT.lease}`,
      undefined,
      /either lease .* or ticket/,
    ],
    [
      "a ticket in the body, a lease in the query",
      `/locks/n?lease=${GRANT.lease}`,
      { ticket: TICKET.ticket },
      /not both/,
    ],
    [
      "force with a ticket",
      `/semaphores/n?force=true&token=1&ticket=${TICKET.ticket}`,
      undefined,
      /send no lease or ticket/,
    ],
    ["force with a lease in the body", "/locks/n?force=true", { lease: GRANT.lease }, /send no lease or ticket/],
    ["a token without force", `/locks/n?token=3&lease=${GRANT.lease}`, undefined, /^token goes with force=true/],
    ["a token that is not a number", "/semaphores/n?force=true&token=x", undefined, /token must be a whole number/],
    [
      "two different tickets",
      `/locks/n?ticket=${TICKET.ticket}`,
      { ticket: GRANT.lease },
      /ticket in the body and the ticket in the query differ/,
    ],
    ["neither", "/locks/n", undefined, /^lease is required/],
  ];
  it.each(mixed)("%s → 400, nothing asked of the engine", async (_label, path, body, detail) => {
    const { lines, calls } = scripted();
    const api = await appOn(lines, {}, true);
    const r = await api("DELETE", path, body, admin);
    expect(r.status, r.text).toBe(400);
    expect(r.json.detail).toMatch(detail);
    expect(r.text).not.toContain(TICKET.ticket);
    expect(r.text).not.toContain(GRANT.lease);
    expect(calls).toEqual([]);
  });
});

describe("POST …/release: DELETE by another method", () => {
  const admin = { authorization: `Bearer ${ADMIN}` };
  // The engine refuses one lease and one ticket as no longer holding; it holds token 7.
  const LOST = "0123456789abcdef0123456789abcdef";
  const engine = (op: string, line: unknown, handle: unknown) => {
    const what = `${(line as { kind: string }).kind} n`;
    if (op === "forceRelease") return handle === 7 ? {} : undefined;
    if (handle === LOST) return op === "leave" ? ticketLost(what) : new LockLost(what);
    return undefined;
  };
  type Request = [path: string, body: Record<string, unknown> | string | undefined, headers: object, status: number];
  const requests: Request[] = [
    ["/locks/n", { lease: GRANT.lease }, admin, 204],
    ["/semaphores/n", `lease=${GRANT.lease.toUpperCase()}`, admin, 204],
    ["/locks/n", { lease: LOST }, admin, 410],
    ["/locks/n", { ticket: TICKET.ticket }, admin, 204],
    ["/semaphores/n", { ticket: LOST }, admin, 410],
    ["/locks/n", { lease: GRANT.lease, extra: 1 }, admin, 400],
    ["/locks/n", undefined, admin, 400],
    ["/locks/n", { lease: "short" }, admin, 400],
    ["/locks/n", { lease: GRANT.lease }, {}, 401],
    ["/locks/n?force=true", undefined, admin, 404],
    ["/semaphores/n?force=true&token=7", undefined, admin, 204],
    ["/semaphores/n?force=true&token=8", undefined, admin, 404],
    [`/locks/n?force=true&lease=${GRANT.lease}`, undefined, admin, 400],
    [`/locks/n?lease=${GRANT.lease}`, { ticket: TICKET.ticket }, admin, 400],
  ];
  it.each(requests)("%s %j: the same answer, the same engine call", async (path, body, headers, status) => {
    const [line, query = ""] = path.split("?");
    const asked = [];
    for (const [method, at] of [
      ["DELETE", path],
      ["POST", `${line}/release${query ? `?${query}` : ""}`],
    ] as const) {
      const { lines, calls } = scripted(engine);
      const r = await (await appOn(lines, {}, true))(method, at, body, headers);
      expect(r.status, `${method} ${at}: ${r.text}`).toBe(status);
      expect(r.text).not.toContain(GRANT.lease);
      expect(r.text).not.toContain(LOST);
      asked.push({ code: r.json?.code, detail: r.json?.detail, calls });
    }
    expect(asked[1]).toEqual(asked[0]);
  });
});

describe("published values and blocking reads, as the engine sees them", () => {
  it("acquire and renew hand the value to the engine; a renew without one sends none", async () => {
    const { lines, calls } = scripted((op) => (op === "acquire" ? granted() : { ...GRANT, value: "v2" }));
    const api = await appOn(lines);
    expect((await api("POST", "/locks/n", { value: "v1" })).status).toBe(201);
    const renewed = await api("PUT", "/locks/n/renew", `lease=${GRANT.lease}&value=v2`);
    expect(renewed.json).toEqual({ ...GRANT, value: "v2" });
    await api("PUT", `/locks/n/renew?lease=${GRANT.lease}`);
    expect(calls).toEqual([
      ["acquire", { kind: "lock", name: "n" }, expect.objectContaining({ value: "v1" })],
      ["renew", { kind: "lock", name: "n" }, GRANT.lease, { value: "v2" }],
      ["renew", { kind: "lock", name: "n" }, GRANT.lease, {}],
    ]);
  });

  it("?index= and wait reach the engine as after and wait; index alone waits LEASEHOLD_MAX_WAIT; none is a plain read", async () => {
    const { lines, calls } = scripted(() => undefined);
    const api = await appOn(lines, { LEASEHOLD_MAX_WAIT: "40" });
    for (const q of ["", "?index=5&wait=2.5", "?index=6", "?index=7&wait=0"]) {
      expect((await api("GET", `/semaphores/n${q}`)).status).toBe(404);
    }
    expect(calls.map((c) => c[2])).toEqual([
      {},
      { after: 5, wait: 2.5, signal: "signal" },
      { after: 6, wait: 40, signal: "signal" },
      { after: 7, wait: 0, signal: "signal" },
    ]);
    expect((await api("GET", "/locks/n?index=5&wait=41")).status).toBe(400);
    expect(calls).toHaveLength(4);
  });
});
