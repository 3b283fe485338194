import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../src/config.js";

describe("configuration", () => {
  it("has the SPEC's defaults", () => {
    expect(parseConfig({})).toMatchObject({
      ETCD_TRANSPORT: "grpc",
      ETCD_TIMEOUT_MS: 5000,
      LEASEHOLD_PREFIX: "leasehold/",
      PORT: 8080,
      LEASEHOLD_DEFAULT_TTL: 30,
      LEASEHOLD_MAX_TTL: 86400,
      LEASEHOLD_MAX_WAIT: 60,
      LEASEHOLD_MAX_WAITERS: 10000,
      LEASEHOLD_DEFAULT_TICKET_TTL: 30,
      LEASEHOLD_MAX_TICKET_TTL: 3600,
      LEASEHOLD_WAITER_SESSION_IDLE: 10,
    });
  });

  it("listens on loopback unless HOST is set", () => {
    expect(parseConfig({}).HOST).toBe("127.0.0.1");
    expect(parseConfig({ HOST: "" }).HOST).toBe("127.0.0.1");
    expect(parseConfig({ HOST: "0.0.0.0" }).HOST).toBe("0.0.0.0");
  });

  it("parses endpoints and numbers", () => {
    const c = parseConfig({ ETCD_ENDPOINTS: "http://a:2379, https://b:2379/", PORT: "9000", ETCD_TIMEOUT_MS: "250" });
    expect(c.ETCD_ENDPOINTS).toEqual(["http://a:2379", "https://b:2379"]);
    expect(c.PORT).toBe(9000);
    expect(c.ETCD_TIMEOUT_MS).toBe(250);
  });

  it.each([
    ["PORT", { PORT: "eighty" }],
    ["PORT", { PORT: "70000" }],
    ["ETCD_TIMEOUT_MS", { ETCD_TIMEOUT_MS: "-5" }],
    ["ETCD_ENDPOINTS", { ETCD_ENDPOINTS: "localhost:2379" }],
    ["ETCD_TRANSPORT", { ETCD_TRANSPORT: "carrier-pigeon" }],
    ["LEASEHOLD_PREFIX", { LEASEHOLD_PREFIX: "has space/" }],
    ["LEASEHOLD_DEFAULT_TTL", { LEASEHOLD_DEFAULT_TTL: "100", LEASEHOLD_MAX_TTL: "50" }],
    ["LEASEHOLD_MAX_WAIT", { LEASEHOLD_MAX_WAIT: "1.5" }],
    ["LEASEHOLD_MAX_TICKET_TTL", { LEASEHOLD_MAX_TICKET_TTL: "0" }],
    ["LEASEHOLD_DEFAULT_TICKET_TTL", { LEASEHOLD_DEFAULT_TICKET_TTL: "soon" }],
    ["LEASEHOLD_DEFAULT_TICKET_TTL", { LEASEHOLD_DEFAULT_TICKET_TTL: "60", LEASEHOLD_MAX_TICKET_TTL: "30" }],
    ["ETCD_CERT_FILE", { ETCD_CERT_FILE: "/x.pem" }],
    ["LEASEHOLD_WAITER_SESSION_IDLE", { LEASEHOLD_WAITER_SESSION_IDLE: "0" }],
    ["LEASEHOLD_WAITER_SESSION_IDLE", { LEASEHOLD_WAITER_SESSION_IDLE: "0.5" }],
  ])("rejects a bad %s with a message naming it", (variable, env) => {
    expect(() => parseConfig(env)).toThrow(ConfigError);
    expect(() => parseConfig(env)).toThrow(variable);
  });
});
