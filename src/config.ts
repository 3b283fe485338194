import { z } from "zod";
import { SESSION_IDLE_MS } from "./lock/strategies/queue-leases.js";

/**
 * Service configuration, parsed once from the environment (Node) or the Worker's vars
 * and secrets. Both runtimes pass a plain string record through the same schema.
 */

const intVar = (name: string, def: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return def;
      if (!/^\d+$/.test(v.trim())) {
        ctx.addIssue({ code: "custom", message: `${name} must be a whole number, got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      const n = Number(v);
      if (n < min || n > max) {
        ctx.addIssue({ code: "custom", message: `${name} must be between ${min} and ${max}, got ${n}` });
        return z.NEVER;
      }
      return n;
    });

const boolVar = (name: string) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return false;
      if (/^(true|1|yes|on)$/i.test(v)) return true;
      if (/^(false|0|no|off)$/i.test(v)) return false;
      ctx.addIssue({ code: "custom", message: `${name} must be true or false, got ${JSON.stringify(v)}` });
      return z.NEVER;
    });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === "" ? undefined : v));

const endpoints = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v.trim() === "") return undefined;
    const list = v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    for (const url of list) {
      let parsed: URL | undefined;
      try {
        parsed = new URL(url);
      } catch {
        parsed = undefined;
      }
      if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
        ctx.addIssue({
          code: "custom",
          message: `ETCD_ENDPOINTS must be comma-separated http(s) URLs, got ${JSON.stringify(url)}`,
        });
        return z.NEVER;
      }
    }
    return list.map((u) => u.replace(/\/+$/, ""));
  });

export const configSchema = z
  .object({
    ETCD_ENDPOINTS: endpoints,
    ETCD_TRANSPORT: z
      .enum(["grpc", "http"], { message: "ETCD_TRANSPORT must be grpc or http" })
      .optional()
      .default("grpc"),
    ETCD_USERNAME: optionalString,
    ETCD_PASSWORD: optionalString,
    ETCD_CA_FILE: optionalString,
    ETCD_CERT_FILE: optionalString,
    ETCD_KEY_FILE: optionalString,
    ETCD_TIMEOUT_MS: intVar("ETCD_TIMEOUT_MS", 5000, 50, 600_000),
    LEASEHOLD_PREFIX: z
      .string()
      .optional()
      .transform((v, ctx) => {
        const p = v === undefined || v === "" ? "leasehold/" : v;
        // Printable ASCII keeps prefix range ends well-formed (see prefixEnd).
        if (!/^[\x21-\x7e]+$/.test(p)) {
          ctx.addIssue({ code: "custom", message: "LEASEHOLD_PREFIX must be printable ASCII without spaces" });
          return z.NEVER;
        }
        return p;
      }),
    PORT: intVar("PORT", 8080, 0, 65535),
    /** Loopback unless set: listening where other hosts can reach it is a deliberate choice. */
    HOST: optionalString.transform((v) => v ?? "127.0.0.1"),
    LEASEHOLD_DEFAULT_TTL: intVar("LEASEHOLD_DEFAULT_TTL", 30, 1, 9_000_000_000),
    LEASEHOLD_MAX_TTL: intVar("LEASEHOLD_MAX_TTL", 86_400, 1, 9_000_000_000),
    LEASEHOLD_MAX_WAIT: intVar("LEASEHOLD_MAX_WAIT", 60, 0, 86_400),
    LEASEHOLD_MAX_WAITERS: intVar("LEASEHOLD_MAX_WAITERS", 10_000, 0, 10_000_000),
    /** How long a ticket (a place in line kept across requests) lasts unredeemed, when the caller sends no ticketTtl. */
    LEASEHOLD_DEFAULT_TICKET_TTL: intVar("LEASEHOLD_DEFAULT_TICKET_TTL", 30, 1, 86_400),
    LEASEHOLD_MAX_TICKET_TTL: intVar("LEASEHOLD_MAX_TICKET_TTL", 3_600, 1, 86_400),
    /**
     * Seconds an instance keeps its waiters' shared session lease once nobody waits, for the
     * next waiter (one lease grant saved per burst); then it revokes it.
     */
    LEASEHOLD_WAITER_SESSION_IDLE: intVar("LEASEHOLD_WAITER_SESSION_IDLE", SESSION_IDLE_MS / 1_000, 1, 3_600),
    /** Open event streams (GET /events) per instance. */
    LEASEHOLD_MAX_STREAMS: intVar("LEASEHOLD_MAX_STREAMS", 1_000, 0, 1_000_000),
    /** Seconds between keep-alive comments on an event stream, so proxies keep an idle one open. */
    LEASEHOLD_STREAM_HEARTBEAT: intVar("LEASEHOLD_STREAM_HEARTBEAT", 15, 1, 3_600),
    /** JSON list of API keys; parsed by src/auth/api-keys.ts (it may need a file read). */
    LEASEHOLD_API_KEYS: optionalString,
    LEASEHOLD_API_KEYS_FILE: optionalString,
    /** /metrics needs an API key (any valid one) when true; open when false. */
    LEASEHOLD_METRICS_AUTH: boolVar("LEASEHOLD_METRICS_AUTH"),
    /** Label per-lock counters with the lock name (beware cardinality). */
    LEASEHOLD_METRICS_LOCK_NAMES: boolVar("LEASEHOLD_METRICS_LOCK_NAMES"),
    LOG_LEVEL: z
      .enum(["debug", "info", "warn", "error", "silent"], {
        message: "LOG_LEVEL must be debug, info, warn, error or silent",
      })
      .optional()
      .default("info"),
  })
  .superRefine((c, ctx) => {
    if (c.LEASEHOLD_DEFAULT_TTL > c.LEASEHOLD_MAX_TTL) {
      ctx.addIssue({
        code: "custom",
        path: ["LEASEHOLD_DEFAULT_TTL"],
        message: `LEASEHOLD_DEFAULT_TTL (${c.LEASEHOLD_DEFAULT_TTL}) must not exceed LEASEHOLD_MAX_TTL (${c.LEASEHOLD_MAX_TTL})`,
      });
    }
    if (c.LEASEHOLD_DEFAULT_TICKET_TTL > c.LEASEHOLD_MAX_TICKET_TTL) {
      ctx.addIssue({
        code: "custom",
        path: ["LEASEHOLD_DEFAULT_TICKET_TTL"],
        message: `LEASEHOLD_DEFAULT_TICKET_TTL (${c.LEASEHOLD_DEFAULT_TICKET_TTL}) must not exceed LEASEHOLD_MAX_TICKET_TTL (${c.LEASEHOLD_MAX_TICKET_TTL})`,
      });
    }
    if ((c.ETCD_CERT_FILE === undefined) !== (c.ETCD_KEY_FILE === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["ETCD_CERT_FILE"],
        message: "ETCD_CERT_FILE and ETCD_KEY_FILE must be set together",
      });
    }
    if (c.ETCD_PASSWORD !== undefined && c.ETCD_USERNAME === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["ETCD_USERNAME"],
        message: "ETCD_PASSWORD is set but ETCD_USERNAME is not",
      });
    }
  });

export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses the environment; throws `ConfigError` whose message names each bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const v = env[key];
    if (typeof v === "string") picked[key] = v;
  }
  const res = configSchema.safeParse(picked);
  if (res.success) return res.data;
  const lines = res.error.issues.map((i) => {
    const variable = String(i.path[0] ?? "");
    return i.message.includes(variable) ? i.message : `${variable}: ${i.message}`;
  });
  throw new ConfigError(`invalid configuration:\n  ${lines.join("\n  ")}`);
}
