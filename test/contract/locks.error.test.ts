import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type Reply, sleep, uniqueName } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { targets } from "./targets.js";

const utf8 = (text: string) => new TextEncoder().encode(text);
const asJson = { "content-type": "application/json" };

function expectProblem(r: Reply, status: number, code: string) {
  expect(r.status, r.text).toBe(status);
  expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(r.json).toMatchObject({ type: `/problems/${code}`, title: expect.any(String), status, code });
  expect(typeof r.json.detail).toBe("string");
  expect(r.text).not.toMatch(/\n\s+at /); // no stack traces
}

describe.each(targets)("locks errors ($name)", (target) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await target.start({ LEASEHOLD_MAX_TTL: "3600", LEASEHOLD_MAX_WAIT: "10", LEASEHOLD_MAX_WAITERS: "2" });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  const keysUnderPrefix = async () => (await svc.direct.range(svc.prefix, `${svc.prefix.slice(0, -1)}0`, 0)).kvs.length;

  type Case = [
    label: string,
    path: string,
    init: Parameters<typeof call>[3],
    status: number,
    code: string,
    detail?: RegExp,
  ];
  const long = "x".repeat(256);
  const badAcquires: Case[] = [
    ["ttl as a string", "", { json: { ttl: "30" } }, 400, "invalid-request", /ttl/],
    ["negative ttl", "", { json: { ttl: -1 } }, 400, "invalid-request", /ttl/],
    ["zero ttl", "", { json: { ttl: 0 } }, 400, "invalid-request", /ttl/],
    ["fractional ttl", "", { json: { ttl: 1.5 } }, 400, "invalid-request", /ttl/],
    ["ttl over the max", "", { json: { ttl: 3601 } }, 400, "invalid-request", /3600/],
    ["huge ttl", "", { json: { ttl: 1e300 } }, 400, "invalid-request", /ttl/],
    ["negative wait", "", { json: { wait: -0.5 } }, 400, "invalid-request", /wait/],
    ["wait over the max", "", { json: { wait: 11 } }, 400, "invalid-request", /wait/],
    ["wait as a string", "", { json: { wait: "soon" } }, 400, "invalid-request", /wait/],
    ["owner too long", "", { json: { owner: "o".repeat(257) } }, 400, "invalid-request", /owner/],
    ["owner not a string", "", { json: { owner: 7 } }, 400, "invalid-request", /owner/],
    ["unknown field", "", { json: { tll: 5 } }, 400, "invalid-request", /tll/],
    ["unknown form field", "", { form: { ttl: "5", ownr: "x" } }, 400, "invalid-request", /ownr/],
    ["form ttl not a number", "", { form: { ttl: "abc" } }, 400, "invalid-request", /ttl/],
    [
      "malformed JSON",
      "",
      { body: "{ttl:", headers: { "content-type": "application/json" } },
      400,
      "invalid-request",
      /JSON/,
    ],
    ["JSON array", "", { json: [1, 2] }, 400, "invalid-request", /object/],
    ["JSON string", "", { json: "ttl" }, 400, "invalid-request", /object/],
    [
      "JSON null",
      "",
      { body: "null", headers: { "content-type": "application/json" } },
      400,
      "invalid-request",
      /object/,
    ],
    [
      "text/plain body",
      "",
      { body: "ttl=5", headers: { "content-type": "text/plain" } },
      415,
      "unsupported-media-type",
    ],
    [
      "multipart body",
      "",
      { body: "--x--", headers: { "content-type": "multipart/form-data; boundary=x" } },
      415,
      "unsupported-media-type",
    ],
    ["body over 1 MiB", "", { json: { owner: "o".repeat(1024 * 1024 + 10) } }, 413, "payload-too-large"],
    [
      "body that is not UTF-8",
      "",
      { bytes: [utf8('{"owner":"'), Uint8Array.of(0xc3, 0x28), utf8('"}')], headers: asJson },
      400,
      "invalid-request",
      /UTF-8/,
    ],
    ["bad Idempotency-Key", "", { headers: { "idempotency-key": "é" } }, 400, "invalid-request", /Idempotency-Key/],
  ];

  it.each(badAcquires)("acquire: %s → %i, nothing changed", async (_label, _p, init, status, code, detail) => {
    const before = await keysUnderPrefix();
    const name = uniqueName("bad");
    const r = await call(svc.url, "POST", `/locks/${name}`, init);
    expectProblem(r, status, code);
    if (detail) expect(r.json.detail).toMatch(detail);
    expect((await svc.direct.get(svc.prefix + name)).kv).toBeUndefined();
    expect(await keysUnderPrefix()).toBe(before);
  });

  it.runIf(target.survivesEarlyAnswerToUpload)(
    "a chunked body (no Content-Length) over 1 MiB → 413 and the connection closes; nothing changed",
    async () => {
      const before = await keysUnderPrefix();
      const name = uniqueName("bad");
      const r = await call(svc.url, "POST", `/locks/${name}`, {
        bytes: [utf8('{"owner":"'), new Uint8Array(700_000).fill(111), new Uint8Array(700_000).fill(111)],
        chunked: true,
        headers: asJson,
      });
      expectProblem(r, 413, "payload-too-large");
      expect((await svc.direct.get(svc.prefix + name)).kv).toBeUndefined();
      expect(await keysUnderPrefix()).toBe(before);
      expect(r.headers.get("connection")).toBe("close");
      // The client's next request (on a new connection) works.
      expect((await call(svc.url, "POST", `/locks/${uniqueName()}`)).status).toBe(201);
    },
  );

  const badNames: [string, string][] = [
    ["a name with a space", "a%20b"],
    ["a name with a slash", "a%2Fb"],
    ["a raw slash", "a/b"],
    ["a name of 256 characters", long],
    ["non-ASCII", "%C3%A9t%C3%A9"],
    ["a percent sign", "a%25b"],
    ["a dot-dot path", "..%2F..%2Fetc"],
  ];
  it.each(badNames)("a bad name (%s) is 400 on every verb and changes nothing", async (_label, raw) => {
    const before = await keysUnderPrefix();
    expectProblem(await call(svc.url, "POST", `/locks/${raw}`), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", `/locks/${raw}`), 400, "invalid-request");
    expectProblem(await call(svc.url, "PUT", `/locks/${raw}/renew?lease=${"a".repeat(16)}`), 400, "invalid-request");
    expectProblem(await call(svc.url, "DELETE", `/locks/${raw}?lease=${"a".repeat(16)}`), 400, "invalid-request");
    expect(await keysUnderPrefix()).toBe(before);
  });

  it("the name is checked before the query and the headers; a repeated query field is 400", async () => {
    const lease = "a".repeat(16);
    const byName = [
      await call(svc.url, "DELETE", `/locks/a%20b?forse=true`),
      await call(svc.url, "PUT", `/locks/a%20b/renew?lease=xyz`),
      await call(svc.url, "POST", `/locks/a%20b`, { headers: { "idempotency-key": "\u00e9" } }),
    ];
    for (const r of byName) {
      expectProblem(r, 400, "invalid-request");
      expect(r.json.detail).toMatch(/name/);
      expect(r.json.detail).not.toMatch(/forse|lease|idempotency/i);
    }
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`);
    const twice = await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}&lease=${lease}`);
    expectProblem(twice, 400, "invalid-request");
    expect(twice.json.detail).toMatch(/lease/);
    expect((await call(svc.url, "GET", `/locks/${name}`)).json.token).toBe(g.json.token);
  });

  it("accepts a name of exactly 255 characters from the whole alphabet", async () => {
    const name = `Az09._-:~@${"n".repeat(245)}`;
    expect(name).toHaveLength(255);
    expect((await call(svc.url, "POST", `/locks/${name}`)).status).toBe(201);
  });

  it("lock-held: 409 with the holder and Retry-After", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 20, owner: "first" } });
    const r = await call(svc.url, "POST", `/locks/${name}`, { json: { owner: "second" } });
    expectProblem(r, 409, "lock-held");
    expect(r.json.holder).toEqual({ owner: "first", token: g.json.token, expiresAt: expect.any(String) });
    const retryAfter = Number(r.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(18);
    expect(retryAfter).toBeLessThanOrEqual(20);
    expect(r.text).not.toContain(g.json.lease);
  });

  it("lock-lost: renew or release with a lease that does not hold the lock changes nothing", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 20 } });
    const stranger = "0123456789abcdef";
    expectProblem(await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: stranger } }), 410, "lock-lost");
    const rel = await call(svc.url, "DELETE", `/locks/${name}`, { json: { lease: stranger } });
    expectProblem(rel, 410, "lock-lost");
    expect(rel.text).not.toContain(g.json.lease);
    expect((await call(svc.url, "GET", `/locks/${name}`)).json.token).toBe(g.json.token);
    // A lease that holds another lock cannot touch this one.
    const other = await call(svc.url, "POST", `/locks/${uniqueName()}`);
    expectProblem(await call(svc.url, "DELETE", `/locks/${name}?lease=${other.json.lease}`), 410, "lock-lost");
    // A long (up to 64 digits) well-formed handle is lock-lost, not a crash.
    expectProblem(await call(svc.url, "PUT", `/locks/${name}/renew?lease=${"f".repeat(64)}`), 410, "lock-lost");
    // After release, the old handle is lock-lost (never a second 204).
    expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`)).status).toBe(204);
    expectProblem(await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`), 410, "lock-lost");
    expectProblem(await call(svc.url, "PUT", `/locks/${name}/renew?lease=${g.json.lease}`), 410, "lock-lost");
  });

  it("renew/release input errors", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`);
    expectProblem(await call(svc.url, "PUT", `/locks/${name}/renew`), 400, "invalid-request");
    expectProblem(await call(svc.url, "DELETE", `/locks/${name}`), 400, "invalid-request");
    expectProblem(
      await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: "xyz" } }),
      400,
      "invalid-request",
    );
    expectProblem(await call(svc.url, "PUT", `/locks/${name}/renew?lease=123`), 400, "invalid-request");
    expectProblem(
      await call(svc.url, "PUT", `/locks/${name}/renew?lease=${"0".repeat(16)}`, { json: { lease: g.json.lease } }),
      400,
      "invalid-request",
    );
    expectProblem(
      await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease, ttl: 5 } }),
      400,
      "invalid-request",
    );
    expectProblem(
      await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}&forse=true`),
      400,
      "invalid-request",
    );
    expectProblem(await call(svc.url, "DELETE", `/locks/${name}?force=yes`), 400, "invalid-request");
    expect((await call(svc.url, "GET", `/locks/${name}`)).json.token).toBe(g.json.token);
  });

  it("with auth off nobody may force-release: 403, and the lock stays with its holder", async () => {
    const name = uniqueName("force");
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 } });
    expect(g.status).toBe(201);
    const r = await call(svc.url, "DELETE", `/locks/${name}?force=true`);
    expectProblem(r, 403, "forbidden");
    expect(r.json.detail).toMatch(/admin API key.*LEASEHOLD_API_KEYS.*"admin": true/);
    expect((await call(svc.url, "GET", `/locks/${name}`)).json.token).toBe(g.json.token);
    expect((await call(svc.url, "DELETE", `/locks/${name}`, { json: { lease: g.json.lease } })).status).toBe(204);
  });

  it("too-many-waiters: 429 with Retry-After at the waiter cap, and it recovers", async () => {
    const name = uniqueName("cap");
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30 } });
    const waiters = [1, 2].map(() => call(svc.url, "POST", `/locks/${name}`, { json: { wait: 2 } }));
    await sleep(400);
    const third = await call(svc.url, "POST", `/locks/${name}`, { json: { wait: 2 } });
    expectProblem(third, 429, "too-many-waiters");
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Not waiting at all is still fine at the cap.
    expectProblem(await call(svc.url, "POST", `/locks/${name}`), 409, "lock-held");
    expect((await Promise.all(waiters)).map((r) => r.status)).toEqual([409, 409]);
    const after = call(svc.url, "POST", `/locks/${name}`, { json: { wait: 2 } });
    await sleep(300);
    await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    expect((await after).status).toBe(201);
  });

  it("lock-not-found: GET of a lock nobody holds", async () => {
    expectProblem(await call(svc.url, "GET", `/locks/${uniqueName()}`), 404, "lock-not-found");
  });

  it("list input errors", async () => {
    expectProblem(await call(svc.url, "GET", "/locks?limit=0"), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/locks?limit=1001"), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/locks?limit=ten"), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/locks?prefix=a/b"), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/locks?cursor=!!!"), 400, "invalid-request");
    expectProblem(await call(svc.url, "GET", "/locks?prefx=a"), 400, "invalid-request");
  });

  it("unknown routes are 404 not-found; wrong methods are 405 with Allow", async () => {
    expectProblem(await call(svc.url, "GET", "/nope"), 404, "not-found");
    const r = await call(svc.url, "PATCH", `/locks/${uniqueName()}`);
    expectProblem(r, 405, "method-not-allowed");
    expect(r.headers.get("allow")).toContain("POST");
    expectProblem(await call(svc.url, "POST", "/locks"), 405, "method-not-allowed");
    expectProblem(await call(svc.url, "GET", `/locks/${uniqueName()}/renew`), 405, "method-not-allowed");
  });
});
