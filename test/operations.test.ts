import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, uniqueName, until } from "./support/http.js";
import { startTestService, type TestService } from "./support/service.js";

/** The value of one sample line of a Prometheus exposition (0 when absent). */
function sample(text: string, metric: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(metric)) continue;
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== metric) continue;
    const have = (m[2] ?? "").split(",").filter(Boolean);
    if (wanted.every((w) => have.includes(w)) && have.length === wanted.length) return Number(m[3]);
  }
  return 0;
}

describe("Prometheus metrics (Node)", () => {
  let svc: TestService;
  // Auth is on with one admin key (force release needs one); every call here sends it.
  const admin = "metrics-admin-key";
  const api = (method: string, path: string, init: Parameters<typeof call>[3] = {}) =>
    call(svc.url, method, path, { ...init, headers: { authorization: `Bearer ${admin}`, ...init.headers } });
  beforeAll(async () => {
    svc = await startTestService({
      env: { LEASEHOLD_API_KEYS: JSON.stringify([{ key: admin, prefixes: [""], admin: true }]) },
    });
  });
  afterAll(async () => {
    await svc?.stop();
  });
  const scrape = async () => {
    const r = await api("GET", "/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/text\/plain/);
    return r.text;
  };

  it("moves as expected after acquire, renew, release, timeout and etcd errors", async () => {
    const before = await scrape();
    const name = uniqueName("m");
    const g = await api("POST", `/locks/${name}`, { json: { ttl: 10 } });
    await api("POST", `/locks/${name}`); // held
    await api("POST", `/locks/${name}`, { json: { wait: 0.3 } }); // timeout
    await api("PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease } });
    await api("PUT", `/locks/${name}/renew`, { json: { lease: "00000000000000aa" } }); // lost
    await api("DELETE", `/locks/${name}`, { json: { lease: g.json.lease } });
    await api("DELETE", `/locks/${name}`, { json: { lease: g.json.lease } }); // lost
    const other = uniqueName("m");
    await api("POST", `/locks/${other}`);
    await api("DELETE", `/locks/${other}?force=true`);
    // A semaphore counts under its own kind; a place in line is "queued", leaving it "left".
    const sem = uniqueName("m");
    const permit = await api("POST", `/semaphores/${sem}`, { json: { limit: 1 } });
    const queued = await api("POST", `/semaphores/${sem}`, { json: { limit: 1, queue: true } });
    expect(queued.status).toBe(202);
    await api("POST", `/semaphores/${sem}`, { json: { limit: 2 } }); // limit-mismatch
    await api("DELETE", `/semaphores/${sem}?ticket=${queued.json.ticket}`);
    await api("DELETE", `/semaphores/${sem}?lease=${permit.json.lease}`);
    const after = await scrape();
    const delta = (metric: string, labels: Record<string, string> = {}) =>
      sample(after, metric, labels) - sample(before, metric, labels);
    expect(delta("leasehold_acquire_total", { outcome: "granted", kind: "lock" })).toBe(2);
    expect(delta("leasehold_acquire_total", { outcome: "held", kind: "lock" })).toBe(1);
    expect(delta("leasehold_acquire_total", { outcome: "timeout", kind: "lock" })).toBe(1);
    expect(delta("leasehold_renew_total", { outcome: "renewed", kind: "lock" })).toBe(1);
    expect(delta("leasehold_renew_total", { outcome: "lost", kind: "lock" })).toBe(1);
    expect(delta("leasehold_release_total", { outcome: "released", kind: "lock" })).toBe(1);
    expect(delta("leasehold_release_total", { outcome: "lost", kind: "lock" })).toBe(1);
    expect(delta("leasehold_release_total", { outcome: "forced", kind: "lock" })).toBe(1);
    const semaphore = (outcome: string) => ({ outcome, kind: "semaphore" });
    expect(delta("leasehold_acquire_total", semaphore("granted"))).toBe(1);
    expect(delta("leasehold_acquire_total", semaphore("queued"))).toBe(1);
    expect(delta("leasehold_acquire_total", semaphore("limit-mismatch"))).toBe(1);
    expect(delta("leasehold_release_total", semaphore("left"))).toBe(1);
    expect(delta("leasehold_release_total", semaphore("released"))).toBe(1);
    expect(delta("leasehold_wait_seconds_count")).toBe(1);
    expect(delta("leasehold_wait_seconds_sum")).toBeGreaterThan(0.25);
    expect(delta("leasehold_hold_seconds_count")).toBe(3);
    expect(delta("leasehold_etcd_request_seconds_count", { op: "txn" })).toBeGreaterThanOrEqual(2);
    // Each grant spends a fresh lease or a pooled one reset by a keep-alive (plus the renew).
    expect(
      delta("leasehold_etcd_request_seconds_count", { op: "lease_grant" }) +
        delta("leasehold_etcd_request_seconds_count", { op: "lease_keepalive" }),
    ).toBeGreaterThanOrEqual(3);
    expect(delta("leasehold_etcd_request_seconds_count", { op: "lease_revoke" })).toBeGreaterThanOrEqual(1);
    expect(after).toContain("process_cpu_seconds_total");
    expect(after).toContain("nodejs_heap_size_used_bytes");
    // No lock names as labels by default, and never a lease handle.
    expect(after).not.toContain(name);
    expect(after).not.toContain(g.json.lease);
    expect(after).not.toContain(queued.json.ticket);

    await svc.etcd.stop();
    expect((await api("GET", `/locks/${name}`)).status).toBe(503);
    const down = await scrape();
    expect(sample(down, "leasehold_etcd_errors_total", { op: "range" })).toBeGreaterThanOrEqual(1);
    expect(sample(down, "leasehold_acquire_total", { outcome: "error", kind: "lock" })).toBe(
      sample(after, "leasehold_acquire_total", { outcome: "error", kind: "lock" }),
    );
    await svc.etcd.restart();
  });

  it("the waiters gauge counts waiting acquires", async () => {
    const name = uniqueName("gauge");
    const g = await api("POST", `/locks/${name}`, { json: { ttl: 10 } });
    const waiting = [1, 2, 3].map(() => api("POST", `/locks/${name}`, { json: { wait: 2 } }));
    await until(async () => (await svc.waiters()) === 3, "three acquires to wait");
    expect(sample(await scrape(), "leasehold_waiters")).toBe(3);
    await api("DELETE", `/locks/${name}?lease=${g.json.lease}`);
    // One waiter has its answer: its acquire ended, so it no longer counts.
    await Promise.any(waiting);
    expect(sample(await scrape(), "leasehold_waiters")).toBeLessThanOrEqual(2);
    // Let the rest finish.
    const replies = await Promise.all(waiting);
    for (const r of replies.filter((x) => x.status === 201)) {
      await api("DELETE", `/locks/${name}?lease=${r.json.lease}`);
    }
    expect(sample(await scrape(), "leasehold_waiters")).toBe(0);
  });
});

describe("metrics settings", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({
      env: {
        LEASEHOLD_METRICS_LOCK_NAMES: "true",
        LEASEHOLD_METRICS_AUTH: "true",
        LEASEHOLD_API_KEYS: JSON.stringify([
          { key: "metrics-test-key", prefixes: [""] },
          { key: "metrics-a-key", prefixes: ["a:"] },
          { key: "metrics-b-key", prefixes: ["b:"] },
          { key: "metrics-admin-key", prefixes: ["a:"], admin: true },
        ]),
      },
    });
  });
  afterAll(async () => {
    await svc?.stop();
  });
  const as = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

  it("keys /metrics when LEASEHOLD_METRICS_AUTH is on, and labels by lock name when asked", async () => {
    expect((await call(svc.url, "GET", "/metrics")).status).toBe(401);
    const name = uniqueName("named");
    await call(svc.url, "POST", `/locks/${name}`, as("metrics-test-key"));
    const r = await call(svc.url, "GET", "/metrics", as("metrics-test-key"));
    expect(r.status).toBe(200);
    expect(sample(r.text, "leasehold_acquire_total", { outcome: "granted", kind: "lock", name })).toBe(1);
  });

  it("shows a key only the lock names it may use; an admin key sees every name", async () => {
    expect(svc.logs.join("\n")).not.toContain("LEASEHOLD_METRICS_LOCK_NAMES");
    const secret = `b:${uniqueName("secret")}`;
    const mine = `a:${uniqueName("mine")}`;
    expect((await call(svc.url, "POST", `/locks/${secret}`, as("metrics-b-key"))).status).toBe(201);
    expect((await call(svc.url, "POST", `/locks/${mine}`, as("metrics-a-key"))).status).toBe(201);
    expect((await call(svc.url, "POST", `/locks/${mine}`, as("metrics-a-key"))).status).toBe(409);

    const a = (await call(svc.url, "GET", "/metrics", as("metrics-a-key"))).text;
    expect(sample(a, "leasehold_acquire_total", { outcome: "granted", kind: "lock", name: mine })).toBe(1);
    expect(sample(a, "leasehold_acquire_total", { outcome: "held", kind: "lock", name: mine })).toBe(1);
    expect(a).not.toContain(secret);
    for (const m of a.matchAll(/name="([^"]*)"/g)) expect(m[1]).toMatch(/^a:/);
    // Everything else is served as before.
    expect(a).toContain("leasehold_etcd_request_seconds_count");
    expect(a).toContain("process_cpu_seconds_total");

    const b = (await call(svc.url, "GET", "/metrics", as("metrics-b-key"))).text;
    expect(sample(b, "leasehold_acquire_total", { outcome: "granted", kind: "lock", name: secret })).toBe(1);
    expect(b).not.toContain(mine);

    // Admin keys see every name, whatever their own prefixes.
    const admin = (await call(svc.url, "GET", "/metrics", as("metrics-admin-key"))).text;
    expect(sample(admin, "leasehold_acquire_total", { outcome: "granted", kind: "lock", name: secret })).toBe(1);
    expect(sample(admin, "leasehold_acquire_total", { outcome: "granted", kind: "lock", name: mine })).toBe(1);
  });
});

describe("open metrics with lock names on", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({
      env: {
        LEASEHOLD_METRICS_LOCK_NAMES: "true",
        LEASEHOLD_API_KEYS: JSON.stringify([
          { key: "open-b-key", prefixes: ["b:"] },
          { key: "open-admin-key", prefixes: [""], admin: true },
        ]),
      },
    });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("never show a lock name to an anonymous scrape: the counters are summed over names", async () => {
    const auth = { authorization: "Bearer open-b-key" };
    const secret = `b:${uniqueName("secret")}`;
    const before = (await call(svc.url, "GET", "/metrics")).text;
    expect((await call(svc.url, "POST", `/locks/${secret}`, { headers: auth })).status).toBe(201);
    expect((await call(svc.url, "POST", `/locks/${secret}-2`, { headers: auth })).status).toBe(201);
    const anonymous: Record<string, string> = {};
    // An open /metrics takes no key, so an admin key sent there changes nothing.
    for (const headers of [anonymous, { authorization: "Bearer open-admin-key" }]) {
      const r = await call(svc.url, "GET", "/metrics", { headers });
      expect(r.status).toBe(200);
      expect(r.text).not.toContain(secret);
      expect(r.text).not.toMatch(/[{,]name="/);
      const delta =
        sample(r.text, "leasehold_acquire_total", { outcome: "granted", kind: "lock" }) -
        sample(before, "leasehold_acquire_total", { outcome: "granted", kind: "lock" });
      expect(delta).toBe(2);
    }
    // The operator is told why no names show.
    expect(svc.logs.join("\n")).toContain(
      "LEASEHOLD_METRICS_LOCK_NAMES=true: lock names reach only scrapes with an API key",
    );
  });
});

describe("structured request logs", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService();
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("accept and return X-Request-Id, make one when absent, and log the request without secrets", async () => {
    const name = uniqueName("log");
    const g = await call(svc.url, "POST", `/locks/${name}`, { headers: { "x-request-id": "req-abc-123" } });
    expect(g.headers.get("x-request-id")).toBe("req-abc-123");
    const r = await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    const generated = r.headers.get("x-request-id");
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    const bad = await call(svc.url, "GET", "/healthz", { headers: { "x-request-id": "has space" } });
    expect(bad.headers.get("x-request-id")).not.toBe("has space");

    const lines = svc.logs.map((l) => JSON.parse(l));
    const acquire = lines.find((l) => l.requestId === "req-abc-123");
    expect(acquire).toMatchObject({
      level: 30,
      msg: "request",
      method: "POST",
      route: "/locks/:name",
      name,
      token: g.json.token,
      status: 201,
      ms: expect.any(Number),
      time: expect.any(String),
    });
    const release = lines.find((l) => l.requestId === generated);
    expect(release).toMatchObject({ method: "DELETE", status: 204, name });
    expect(svc.logs.join("\n")).not.toContain(g.json.lease);
  });
});
