import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalEtcd, startLocalEtcd } from "../src/node/local-etcd.js";
import { makeTestCerts, type TestCerts } from "./support/certs.js";
import { startTestEtcd } from "./support/etcd.js";
import { call, uniqueName, until } from "./support/http.js";
import { serveTestApp } from "./support/service.js";

const transports = ["grpc", "http"] as const;

/** One acquire → renew → release cycle through the service, and readiness. */
async function cycle(url: string) {
  expect((await call(url, "GET", "/readyz")).status).toBe(200);
  const name = uniqueName("sec");
  const g = await call(url, "POST", `/locks/${name}`, { json: { ttl: 10 } });
  expect(g.status, g.text).toBe(201);
  expect((await call(url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease } })).status).toBe(200);
  expect((await call(url, "DELETE", `/locks/${name}`, { json: { lease: g.json.lease } })).status).toBe(204);
}

describe("etcd over TLS with client certificates", () => {
  let certs: TestCerts;
  let etcd: LocalEtcd;
  let dataDir: string;
  beforeAll(async () => {
    certs = makeTestCerts();
    dataDir = mkdtempSync(join(tmpdir(), "leasehold-etcd-tls-"));
    etcd = await startLocalEtcd({
      dataDir,
      tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca },
    });
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(certs.dir, { recursive: true, force: true });
  });

  it.each(transports)("works with the CA, certificate and key files (%s)", async (transport) => {
    expect(etcd.endpoint).toMatch(/^https:/);
    const app = await serveTestApp({
      ETCD_ENDPOINTS: etcd.endpoint,
      ETCD_TRANSPORT: transport,
      ETCD_CA_FILE: certs.ca,
      ETCD_CERT_FILE: certs.clientCert,
      ETCD_KEY_FILE: certs.clientKey,
    });
    try {
      await cycle(app.url);
    } finally {
      await app.close();
    }
  });

  it.each(transports)("without a client certificate etcd is unavailable: 503, not a crash (%s)", async (transport) => {
    const app = await serveTestApp({
      ETCD_ENDPOINTS: etcd.endpoint,
      ETCD_TRANSPORT: transport,
      ETCD_CA_FILE: certs.ca,
    });
    try {
      const r = await call(app.url, "POST", `/locks/${uniqueName()}`);
      expect(r.status).toBe(503);
      expect(r.json.code).toBe("backend-unavailable");
      expect((await call(app.url, "GET", "/readyz")).status).toBe(503);
    } finally {
      await app.close();
    }
  });

  it.each(transports)("a server certificate from an untrusted CA is refused: 503 (%s)", async (transport) => {
    const app = await serveTestApp({
      ETCD_ENDPOINTS: etcd.endpoint,
      ETCD_TRANSPORT: transport,
      ETCD_CA_FILE: certs.otherCa,
      ETCD_CERT_FILE: certs.clientCert,
      ETCD_KEY_FILE: certs.clientKey,
    });
    try {
      expect((await call(app.url, "GET", "/readyz")).status).toBe(503);
      expect((await call(app.url, "POST", `/locks/${uniqueName()}`)).status).toBe(503);
    } finally {
      await app.close();
    }
  });
});

describe("etcd with authentication", () => {
  let etcd: Awaited<ReturnType<typeof startTestEtcd>>;
  beforeAll(async () => {
    etcd = await startTestEtcd();
    const admin = async (path: string, body: unknown, token?: string) => {
      const res = await fetch(`${etcd.endpoint}${path}`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: token ? { authorization: token } : {},
      });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, unknown>;
    };
    await admin("/v3/auth/user/add", { name: "root", password: "root-pw-1" });
    await admin("/v3/auth/role/add", { name: "root" });
    await admin("/v3/auth/user/grant", { user: "root", role: "root" });
    // A least-privilege user: read/write only under the lock prefix.
    await admin("/v3/auth/user/add", { name: "leasehold", password: "lh-pw-2" });
    await admin("/v3/auth/role/add", { name: "locks" });
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    await admin("/v3/auth/role/grant", {
      name: "locks",
      perm: { key: b64("test-locks/"), range_end: b64("test-locks0"), permType: "READWRITE" },
    });
    await admin("/v3/auth/user/grant", { user: "leasehold", role: "locks" });
    await admin("/v3/auth/enable", {});
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it.each(transports)("works with ETCD_USERNAME and ETCD_PASSWORD of a prefix-only user (%s)", async (transport) => {
    const app = await serveTestApp({
      ETCD_ENDPOINTS: etcd.endpoint,
      ETCD_TRANSPORT: transport,
      ETCD_USERNAME: "leasehold",
      ETCD_PASSWORD: "lh-pw-2",
    });
    try {
      await cycle(app.url);
      // The wait path uses a watch, which is authenticated too.
      const name = uniqueName("sec-wait");
      const g = await call(app.url, "POST", `/locks/${name}`, { json: { ttl: 10 } });
      const waiting = call(app.url, "POST", `/locks/${name}`, { json: { wait: 5 } });
      await until(async () => (await app.waiters()) === 1, "the acquire to wait");
      await call(app.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
      expect((await waiting).status).toBe(201);
    } finally {
      await app.close();
    }
  });

  it.each(transports)("wrong credentials are a clear 503 and a logged error, not a crash (%s)", async (transport) => {
    const app = await serveTestApp({
      ETCD_ENDPOINTS: etcd.endpoint,
      ETCD_TRANSPORT: transport,
      ETCD_USERNAME: "leasehold",
      ETCD_PASSWORD: "not-the-password",
    });
    try {
      const r = await call(app.url, "POST", `/locks/${uniqueName()}`);
      expect(r.status).toBe(503);
      expect(r.json.code).toBe("backend-unavailable");
      expect(r.json.detail).toMatch(/credentials/);
      expect(r.text).not.toContain("not-the-password");
      expect((await call(app.url, "GET", "/readyz")).status).toBe(503);
      const logs = app.logs.join("\n");
      expect(logs).toMatch(/refused leasehold's credentials/);
      expect(logs).not.toContain("not-the-password");
    } finally {
      await app.close();
    }
  });
});
