import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type Reply, uniqueName, until } from "../support/http.js";
import type { TestService } from "../support/service.js";
import { lineKeys } from "./lines.js";
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
      "gzip-encoded body",
      "",
      { body: '{"ttl":5}', headers: { "content-type": "application/json", "content-encoding": "gzip" } },
      415,
      "unsupported-media-type",
      /Content-Encoding gzip/,
    ],
    [
      "UTF-16 charset",
      "",
      { body: '{"ttl":5}', headers: { "content-type": "application/json; charset=utf-16" } },
      415,
      "unsupported-media-type",
      /charset utf-16/,
    ],
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
    expect(await lineKeys(svc, "lock", name)).toEqual([]);
    expect(await keysUnderPrefix()).toBe(before);
  });

  it("unknown query parameters are a 400 naming them on every lock route and the health checks", async () => {
    const name = uniqueName("q");
    const acquire = await call(svc.url, "POST", `/locks/${name}?ttl=300`);
    expectProblem(acquire, 400, "invalid-request");
    expect(acquire.json.detail).toMatch(/unknown query parameter "ttl"/);
    expect(acquire.json.detail).toMatch(/body/); // where ttl goes instead
    expect(await lineKeys(svc, "lock", name)).toEqual([]);
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 20 } });
    const lease = g.json.lease;
    const cases: [method: string, path: string, named: string[]][] = [
      ["POST", `/locks/${name}?wait=5&x=1`, ["wait", "x"]],
      ["GET", `/locks/${name}?verbose=1`, ["verbose"]],
      ["PUT", `/locks/${name}/renew?lease=${lease}&ttl=300`, ["ttl"]],
      ["DELETE", `/locks/${name}?lease=${lease}&forse=true`, ["forse"]],
      ["GET", "/locks?prefix=q:&sort=name", ["sort"]],
      ["GET", "/healthz?full=1", ["full"]],
      ["GET", "/readyz?full=1", ["full"]],
    ];
    for (const [method, path, named] of cases) {
      const r = await call(svc.url, method, path);
      expectProblem(r, 400, "invalid-request");
      for (const param of named) expect(r.json.detail, `${method} ${path}`).toContain(`"${param}"`);
      expect(r.text).not.toContain(lease);
    }
    // Nothing changed: the same grant, with the TTL it was given.
    const info = await call(svc.url, "GET", `/locks/${name}`);
    expect(info.json.token).toBe(g.json.token);
    expect(info.json.ttl).toBeLessThanOrEqual(20);
    // Pages for browsers keep their own state (or a cache buster) in the query.
    for (const path of ["/?prefix=q:", "/docs?x=1", "/openapi.yaml?v=2", "/docs/assets/init.js?v=2"]) {
      expect((await call(svc.url, "GET", path)).status, path).toBe(200);
    }
  });

  it("the query is checked before the body", async () => {
    const name = uniqueName("q");
    const bodies: Parameters<typeof call>[3][] = [
      { body: "x", headers: { "content-type": "text/plain" } },
      { json: { owner: "o".repeat(1024 * 1024 + 10) } },
      { json: { ttl: "x" } },
    ];
    for (const init of bodies) {
      const r = await call(svc.url, "POST", `/locks/${name}?ttl=300`, init);
      expectProblem(r, 400, "invalid-request");
      expect(r.json.detail).toMatch(/query parameter "ttl"/);
      expect(r.json.detail).not.toMatch(/"x"/);
    }
    expect(await lineKeys(svc, "lock", name)).toEqual([]);
  });

  // What was wrong with the value sent, never "required" for a value that was there.
  const json = (text: string) => ({ body: text, headers: asJson });
  const form = (text: string) => ({ body: text, headers: { "content-type": "application/x-www-form-urlencoded" } });
  const wrongValues: [label: string, init: Parameters<typeof call>[3], detail: RegExp][] = [
    ["JSON ttl 1.5", json('{"ttl":1.5}'), /^ttl must be a whole number of seconds, got 1\.5$/],
    ['JSON ttl "30"', json('{"ttl":"30"}'), /^ttl must be a whole number of seconds, got "30" \(a string/],
    ["JSON ttl null", json('{"ttl":null}'), /^ttl must be a whole number of seconds, got null$/],
    ["JSON ttl true", json('{"ttl":true}'), /^ttl must be a whole number of seconds, got true$/],
    ["JSON ttl 1e400", json('{"ttl":1e400}'), /^ttl must be a whole number of seconds, got a number too large/],
    ["JSON ttl [30]", json('{"ttl":[30]}'), /^ttl must be a whole number of seconds, got an array$/],
    ["JSON ttl 0", json('{"ttl":0}'), /^ttl must be at least 1 second, got 0$/],
    ["JSON ttl over the max", json('{"ttl":3601}'), /^ttl must be at most 3600 seconds, got 3601$/],
    ["JSON owner 5", json('{"owner":5}'), /^owner must be a string, got 5$/],
    ["JSON owner {}", json('{"owner":{}}'), /^owner must be a string, got an object$/],
    [
      "JSON owner too long",
      json(`{"owner":"${"o".repeat(300)}"}`),
      /^owner must be at most 256 characters, got "o{40}…" \(300 characters\)$/,
    ],
    ['JSON wait "soon"', json('{"wait":"soon"}'), /^wait must be a number of seconds, got "soon"$/],
    ["JSON wait -1", json('{"wait":-1}'), /^wait must not be negative, got -1$/],
    ["JSON wait over the max", json('{"wait":11}'), /^wait must be at most 10 seconds, got 11$/],
    ["JSON ttl and owner both wrong", json('{"ttl":1.5,"owner":5}'), /^ttl must .* got 1\.5; owner must .* got 5$/],
    ["form ttl=1.5", form("ttl=1.5"), /^ttl must be a whole number of seconds, got 1\.5$/],
    ["form ttl=abc", form("ttl=abc"), /^ttl must be a whole number of seconds, got "abc"$/],
    ["form ttl=null", form("ttl=null"), /^ttl must be a whole number of seconds, got "null"$/],
    ["form ttl=true", form("ttl=true"), /^ttl must be a whole number of seconds, got "true"$/],
    ["form ttl=1e400", form("ttl=1e400"), /^ttl must be a whole number of seconds, got "1e400"$/],
    ["form ttl= (empty)", form("ttl="), /^ttl must be a whole number of seconds, got ""$/],
    ["form ttl=0", form("ttl=0"), /^ttl must be at least 1 second, got 0$/],
    ["form wait=soon", form("wait=soon"), /^wait must be a number of seconds, got "soon"$/],
    ["form ttl twice", form("ttl=1&ttl=2"), /"ttl" is given more than once/],
  ];
  it.each(wrongValues)("acquire, %s: the detail says what was wrong with the value", async (_label, init, detail) => {
    const name = uniqueName("bad");
    const r = await call(svc.url, "POST", `/locks/${name}`, init);
    expectProblem(r, 400, "invalid-request");
    expect(r.json.detail).toMatch(detail);
    expect(r.json.detail).not.toMatch(/required/);
    for (const e of r.json.errors ?? []) expect(e.message).not.toMatch(/required/);
    expect(await lineKeys(svc, "lock", name)).toEqual([]);
  });

  it("a wrong lease, query value or repeated parameter is described without echoing a handle", async () => {
    const name = uniqueName();
    const g = await call(svc.url, "POST", `/locks/${name}`);
    const almost = `${g.json.lease.slice(0, -1)}x`;
    for (const r of [
      await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: almost } }),
      await call(svc.url, "PUT", `/locks/${name}/renew?lease=${almost}`),
      await call(svc.url, "DELETE", `/locks/${name}`, { form: { lease: almost } }),
    ]) {
      expectProblem(r, 400, "invalid-request");
      expect(r.json.detail).toMatch(/lease must be 16 to 64 hex digits.*, got a string of \d+ characters/);
      expect(r.text).not.toContain(almost);
      expect(r.text).not.toContain(g.json.lease.slice(0, 12));
    }
    const num = await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: 12 } });
    expect(num.json.detail).toMatch(/^lease must be 16 to 64 hex digits.*, got a number$/);
    const twice = await call(svc.url, "PUT", `/locks/${name}/renew?lease=${g.json.lease}&lease=${g.json.lease}`);
    expect(twice.json.detail).toMatch(/^query parameter lease is given 2 times/);
    expect(twice.text).not.toContain(g.json.lease);
    expect((await call(svc.url, "GET", "/locks?limit=ten")).json.detail).toMatch(
      /^query parameter limit must be a whole number from 1 to 1000, got "ten"$/,
    );
    expect((await call(svc.url, "GET", "/locks?limit=0")).json.detail).toMatch(/from 1 to 1000, got "0"$/);
    expect((await call(svc.url, "GET", "/locks?prefix=a/b")).json.detail).toMatch(/got "a\/b"$/);
    expect((await call(svc.url, "DELETE", `/locks/${name}?force=yes`)).json.detail).toMatch(
      /^query parameter force must be true or false, got "yes"$/,
    );
    expect((await call(svc.url, "GET", `/locks/${name}`)).json.token).toBe(g.json.token);
  });

  it("an error body stays small however much was wrong (listed errors capped, values truncated)", async () => {
    const many = Object.fromEntries(Array.from({ length: 45_000 }, (_, i) => [`unknown${i}`, 1]));
    const manyJson = JSON.stringify(many);
    expect(manyJson.length).toBeGreaterThan(700 * 1024);
    const manyForm = new URLSearchParams(Object.entries(many).map(([k, v]) => [k, String(v)])).toString();
    for (const init of [json(manyJson), form(manyForm)]) {
      const r = await call(svc.url, "POST", `/locks/${uniqueName("bad")}`, init);
      expectProblem(r, 400, "invalid-request");
      expect(r.text.length).toBeLessThan(4096);
      expect(r.json.detail).toMatch(/^unknown fields "unknown0", "unknown1", .* and 44,99\d more in the body/);
      expect(r.json.detail).toMatch(/known fields: ttl, owner, wait/);
      expect(r.json.errors.length).toBeLessThanOrEqual(20);
      expect(r.json.errors[0]).toEqual({ field: "unknown0", message: 'unknown field "unknown0"' });
    }
    const longName = await call(svc.url, "POST", `/locks/${uniqueName("bad")}`, {
      json: { [`k${"e".repeat(700_000)}`]: 1 },
    });
    expectProblem(longName, 400, "invalid-request");
    expect(longName.text.length).toBeLessThan(1024);
    const longValue = await call(svc.url, "POST", `/locks/${uniqueName("bad")}`, {
      json: { ttl: "9".repeat(400_000), owner: "o".repeat(400_000) },
    });
    expectProblem(longValue, 400, "invalid-request");
    expect(longValue.text.length).toBeLessThan(1024);
    const manyQuery = Array.from({ length: 1_000 }, (_, i) => `q${i}=1`).join("&");
    const query = await call(svc.url, "GET", `/locks?${manyQuery}`);
    expectProblem(query, 400, "invalid-request");
    expect(query.text.length).toBeLessThan(4096);
    expect(query.json.detail).toMatch(/and 99\d more/);
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
      expect(await lineKeys(svc, "lock", name)).toEqual([]);
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
    await until(async () => (await svc.waiters()) === 2, "two acquires to wait");
    const third = await call(svc.url, "POST", `/locks/${name}`, { json: { wait: 2 } });
    expectProblem(third, 429, "too-many-waiters");
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Not waiting at all is still fine at the cap.
    expectProblem(await call(svc.url, "POST", `/locks/${name}`), 409, "lock-held");
    expect((await Promise.all(waiters)).map((r) => r.status)).toEqual([409, 409]);
    const after = call(svc.url, "POST", `/locks/${name}`, { json: { wait: 2 } });
    await until(async () => (await svc.waiters()) === 1, "the acquire to wait");
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
