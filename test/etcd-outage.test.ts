import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, uniqueName, until } from "./support/http.js";
import { startTestService, type TestService } from "./support/service.js";

// ETCD_TIMEOUT_MS is 1500 in the test service: every etcd-bound request must fail
// within that (plus scheduling slack), never hang, and recover on its own.
const DEADLINE_MS = 1_500;

describe.each(["grpc", "http"] as const)("etcd outage and recovery (%s)", (transport) => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ transport });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it("answers 503 backend-unavailable with Retry-After within the deadline, then recovers", async () => {
    const name = uniqueName("outage");
    const held = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 60 } });
    expect(held.status).toBe(201);
    expect((await call(svc.url, "GET", "/readyz")).status).toBe(200);

    await svc.etcd.stop();
    const requests: [string, string, Parameters<typeof call>[3]][] = [
      ["POST", `/locks/${uniqueName()}`, {}],
      ["POST", `/locks/${uniqueName()}`, { json: { wait: 5 } }],
      ["PUT", `/locks/${name}/renew`, { json: { lease: held.json.lease } }],
      ["DELETE", `/locks/${name}`, { json: { lease: held.json.lease } }],
      ["GET", `/locks/${name}`, {}],
      ["GET", "/locks", {}],
      ["GET", "/readyz", {}],
    ];
    for (const [method, path, init] of requests) {
      const started = Date.now();
      const r = await call(svc.url, method, path, init);
      const took = Date.now() - started;
      expect(r.status, `${method} ${path}`).toBe(503);
      expect(r.json.code).toBe("backend-unavailable");
      expect(r.headers.get("content-type")).toMatch(/problem\+json/);
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(took, `${method} ${path} took ${took} ms`).toBeLessThan(DEADLINE_MS * 2 + 500);
    }
    // Liveness does not depend on etcd.
    expect((await call(svc.url, "GET", "/healthz")).status).toBe(200);

    await svc.etcd.restart();
    const readyz = () => call(svc.url, "GET", "/readyz");
    await until(async () => (await readyz()).status === 200, "the service to be ready again");
    expect((await readyz()).status).toBe(200);
    // The lock survived the outage (its lease lives in etcd), and the service works again.
    const renewed = await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: held.json.lease } });
    expect(renewed.status).toBe(200);
    expect(renewed.json.token).toBe(held.json.token);
    expect((await call(svc.url, "POST", `/locks/${uniqueName()}`)).status).toBe(201);
  });

  it("a waiter whose etcd goes away mid-wait gets an answer by its deadline, not a hang", async () => {
    const name = uniqueName("outage-wait");
    await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 60 } });
    const started = Date.now();
    const waiting = call(svc.url, "POST", `/locks/${name}`, { json: { wait: 2 } });
    await until(async () => (await svc.waiters()) === 1, "the acquire to wait");
    await svc.etcd.stop();
    const r = await waiting;
    const took = Date.now() - started;
    expect([409, 503], `${r.text}\n${svc.logs.filter((l) => l.includes('"error"')).join("\n")}`).toContain(r.status);
    expect(took).toBeLessThan(2_000 + DEADLINE_MS * 2 + 500);
    await svc.etcd.restart();
  });
});
