import fc from "fast-check";
import { type EtcdCluster, startEtcdCluster } from "./etcd-cluster.js";
import { type ServiceInstance, startInstance, type Transport } from "./instance.js";

/**
 * Input fuzzing with fast-check against one real service process: every route, method,
 * name, query string, header, content type and body. Properties of each answer:
 * - no 5xx except 503 (and a 503 is `backend-unavailable`); an answer within 10 s;
 * - an error (>= 400, not HEAD) is problem+json whose `status` is the HTTP status;
 * - a rejected request leaves no new lock key in etcd, and a held canary lock survives
 *   every request that was not a success;
 * and of the process: it never exits and logs no error.
 */

const ADMIN_KEY = "fuzz-admin-key";
const SCOPED_KEY = "fuzz-scoped-key";
const PREFIX = "fuzz/";
const CANARY = "fz:canary";

export interface FuzzResult {
  transport: Transport;
  runs: number;
  seed: number;
  /** How often each status was answered. */
  statuses: Record<string, number>;
  /** Lock keys created (by 201s). */
  created: number;
  /** The counterexample and what was wrong, when a property failed; process problems. */
  failures: string[];
}

interface FuzzRequest {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

// Header values must be ByteStrings without control characters (fetch refuses others).
const headerText = (maxLength: number) =>
  fc.string({
    unit: fc
      .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0xa0, max: 0xff }))
      .map((c) => String.fromCharCode(c)),
    maxLength,
  });

const nameChars = fc.constantFrom(..."ABCXYZabcxyz0189._-:~@".split(""));
const validName = fc.string({ unit: nameChars, minLength: 1, maxLength: 40 }).map((s) => `fz:${s}`.slice(0, 255));

const anyName = fc.oneof(
  { weight: 6, arbitrary: validName },
  { weight: 3, arbitrary: fc.constant(CANARY) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }).map(encodeURIComponent) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 10 }).map(encodeURIComponent) },
  { weight: 1, arbitrary: fc.constantFrom("", ".", "..", "%2F", "a%2Fb", "%00", "%", "%zz", "a b", "x?y", "%E2%82") },
  { weight: 1, arbitrary: fc.integer({ min: 254, max: 257 }).map((n) => "n".repeat(n)) },
);

const lease = (canaryLease: () => string) =>
  fc.oneof(
    fc.constant(null).map(() => canaryLease()),
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((n) => n.toString(16).padStart(16, "0")),
    fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF".split("")), minLength: 0, maxLength: 70 }),
    fc.string({ maxLength: 20 }),
  );

const jsonValue = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 20 }),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 2 }),
);

function requestArbitrary(canaryLease: () => string): fc.Arbitrary<FuzzRequest> {
  const field = fc.constantFrom("ttl", "wait", "owner", "lease", "force", "prefix", "limit", "cursor", "x");
  const fieldValue = fc.oneof(
    jsonValue,
    lease(canaryLease),
    fc.integer({ min: 1, max: 5 }),
    fc.string({ maxLength: 300 }),
  );
  const path = fc.oneof(
    { weight: 6, arbitrary: anyName.map((n) => `/locks/${n}`) },
    { weight: 3, arbitrary: anyName.map((n) => `/locks/${n}/renew`) },
    { weight: 2, arbitrary: fc.constantFrom("/locks", "/locks/", "/locks//renew") },
    {
      weight: 2,
      arbitrary: fc.constantFrom("/healthz", "/readyz", "/openapi.yaml", "/docs", "/metrics", "/", "/dashboard"),
    },
    { weight: 1, arbitrary: fc.tuple(anyName, fc.webSegment()).map(([n, s]) => `/locks/${n}/${s}`) },
    { weight: 1, arbitrary: fc.webPath() },
  );
  const query = fc.oneof(
    { weight: 3, arbitrary: fc.constant("") },
    {
      weight: 4,
      arbitrary: fc
        .array(fc.tuple(field, fc.oneof(fieldValue.map(String), fc.constantFrom("true", "false", "1", "1000", "0"))), {
          maxLength: 4,
        })
        .map((pairs) => (pairs.length ? `?${new URLSearchParams(pairs)}` : "")),
    },
    { weight: 1, arbitrary: fc.webQueryParameters().map((q) => `?${q}`) },
  );
  const contentType = fc.constantFrom(
    "application/json",
    "application/x-www-form-urlencoded",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/problem+json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/xml",
    "",
  );
  const headers = fc
    .record(
      {
        "content-type": fc.oneof({ weight: 5, arbitrary: contentType }, { weight: 1, arbitrary: headerText(40) }),
        authorization: fc.oneof(
          { weight: 16, arbitrary: fc.constant(`Bearer ${ADMIN_KEY}`) },
          { weight: 2, arbitrary: fc.constant(`Bearer ${SCOPED_KEY}`) },
          { weight: 1, arbitrary: fc.constantFrom("Bearer", "Bearer ", "Basic Zm9vOmJhcg==", `bearer ${ADMIN_KEY}`) },
          { weight: 1, arbitrary: headerText(60) },
        ),
        "idempotency-key": fc.oneof(fc.uuid(), headerText(300)),
        accept: fc.constantFrom("application/json", "text/html", "*/*", "application/problem+json"),
      },
      { requiredKeys: ["authorization"] },
    )
    .map((h) => Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as Record<string, string>);
  const knownFields = fc.dictionary(field, fieldValue, { maxKeys: 4 });
  const body = fc.oneof(
    { weight: 6, arbitrary: knownFields.map((o) => JSON.stringify(o)) },
    {
      weight: 3,
      arbitrary: knownFields.map((o) =>
        new URLSearchParams(Object.entries(o).map(([k, v]) => [k, String(v)])).toString(),
      ),
    },
    { weight: 2, arbitrary: fc.json({ maxDepth: 2 }) },
    { weight: 2, arbitrary: fc.string({ maxLength: 100 }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.constantFrom("{", "[]", "null", "{}", "ttl=1&ttl=2", `{"ttl":1e400}`, "\uFEFF{}") },
    { weight: 1, arbitrary: fc.constant(null).map(() => `{"owner":"${"x".repeat(1_100_000)}"}`) },
  );
  return fc.record(
    {
      method: fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom("POST", "PUT", "DELETE", "GET") },
        { weight: 1, arbitrary: fc.constantFrom("PATCH", "HEAD", "OPTIONS", "PROPFIND") },
      ),
      path,
      query,
      headers,
      body,
    },
    { requiredKeys: ["method", "path", "query", "headers"] },
  );
}

/** A running fuzz target: one etcd and one service process with API keys on. */
export interface FuzzTarget {
  instance: ServiceInstance;
  cluster: EtcdCluster;
  stop(): Promise<void>;
}

export async function startFuzzTarget(transport: Transport): Promise<FuzzTarget> {
  const cluster = await startEtcdCluster(1);
  try {
    const instance = await startInstance({
      endpoints: cluster.endpoints,
      transport,
      etcdTimeoutMs: 1_000,
      prefix: PREFIX,
      env: {
        LEASEHOLD_API_KEYS: JSON.stringify([
          { key: ADMIN_KEY, prefixes: [""], admin: true },
          { key: SCOPED_KEY, prefixes: ["fz:a", "fz:b"] },
        ]),
        // Keeps a fuzzed long-poll short; longer waits are rejected with 400.
        LEASEHOLD_MAX_WAIT: "1",
      },
    });
    return {
      instance,
      cluster,
      stop: async () => {
        await instance.kill();
        await cluster.destroy();
      },
    };
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
}

export async function runFuzz(o: {
  transport: Transport;
  runs: number;
  seed?: number;
  target?: FuzzTarget;
}): Promise<FuzzResult> {
  const target = o.target ?? (await startFuzzTarget(o.transport));
  const { instance, cluster } = target;
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const statuses: Record<string, number> = {};
  const failures: string[] = [];
  let created = 0;
  const canaryKey = PREFIX + CANARY;
  let canary = "";
  const takeCanary = async () => {
    const res = await fetch(`${instance.url}/locks/${CANARY}`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ ttl: 3600, wait: 1 }),
    });
    const grant = (await res.json()) as { lease?: string };
    if (res.status !== 201 || !grant.lease) throw new Error(`cannot take the canary lock: HTTP ${res.status}`);
    canary = grant.lease;
  };

  try {
    await takeCanary();
    const property = fc.asyncProperty(
      requestArbitrary(() => canary),
      async (req) => {
        const before = new Set(await cluster.keys(PREFIX));
        const canaryHeld = before.has(canaryKey);
        const sendBody = req.body !== undefined && req.method !== "GET" && req.method !== "HEAD";
        let res: Response;
        try {
          res = await fetch(`${instance.url}${req.path}${req.query}`, {
            method: req.method,
            headers: req.headers,
            ...(sendBody ? { body: req.body as BodyInit } : {}),
            signal: AbortSignal.timeout(10_000),
          });
        } catch (err) {
          // Requests fetch itself refuses to send (malformed URL...) test nothing.
          if (err instanceof TypeError && !(err.cause instanceof Error)) return true;
          throw new Error(`no answer: ${String((err as Error).cause ?? err)}`);
        }
        const text = await res.text();
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        const problem = () => {
          try {
            return JSON.parse(text) as { status?: number; code?: string };
          } catch {
            return undefined;
          }
        };
        if (res.status >= 500 && res.status !== 503) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
        if (res.status === 503 && problem()?.code !== "backend-unavailable")
          throw new Error(`503 ${text.slice(0, 300)}`);
        if (res.status >= 400 && req.method !== "HEAD") {
          if (!/application\/problem\+json/.test(res.headers.get("content-type") ?? "")) {
            throw new Error(`HTTP ${res.status} with content-type ${res.headers.get("content-type")}`);
          }
          if (problem()?.status !== res.status) throw new Error(`problem body does not match ${res.status}: ${text}`);
        }
        const after = await cluster.keys(PREFIX);
        const fresh = after.filter((k) => !before.has(k));
        if (res.status === 201) created += fresh.length;
        else if (fresh.length) throw new Error(`HTTP ${res.status} left new lock keys: ${fresh.join(", ")}`);
        if (canaryHeld && !after.includes(canaryKey)) {
          if (res.status >= 300) throw new Error(`HTTP ${res.status} and the canary lock is gone`);
          await takeCanary(); // a legitimate release or force-release of it
        }
        return true;
      },
    );
    const out = await fc.check(property, { numRuns: o.runs, seed, endOnFailure: false });
    if (out.failed) failures.push(fc.defaultReportMessage(out) ?? "property failed");
    if (instance.crashes > 0 || !instance.isUp()) failures.push("the service process exited");
    else {
      const health = await fetch(`${instance.url}/healthz`).catch(() => undefined);
      if (health?.status !== 200) failures.push(`/healthz answered ${health?.status ?? "nothing"} at the end`);
    }
    for (const line of instance.errors()) failures.push(`the service logged: ${line.slice(0, 300)}`);
    return { transport: o.transport, runs: o.runs, seed, statuses, created, failures };
  } finally {
    if (!o.target) await target.stop();
  }
}
