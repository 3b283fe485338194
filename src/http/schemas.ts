import { z } from "@hono/zod-openapi";
import { HANDLE_PATTERN, NAME_ALPHABET, NAME_PATTERN, NAME_PREFIX_PATTERN } from "../lock/names.js";

/** Request and response shapes of the HTTP API; the source of openapi.yaml. */

export const NameParam = z.object({
  name: z
    .string()
    .regex(NAME_PATTERN, `a lock name is 1–255 characters from ${NAME_ALPHABET} (no "/"; use ":" for hierarchy)`)
    .openapi({ param: { name: "name", in: "path" }, example: "cron:job9" }),
});

// Messages complete "ttl …, got <what was sent>" (see invalidRequest).
const Ttl = z
  .number({ message: "must be a whole number of seconds" })
  .int("must be a whole number of seconds")
  .min(1, "must be at least 1 second")
  .openapi({ description: "Lease TTL in seconds (max LEASEHOLD_MAX_TTL, default 86400)", example: 30 });

const Wait = z.number({ message: "must be a number of seconds" }).min(0, "must not be negative").openapi({
  description: "Seconds to long-poll for the lock (fractions allowed; max LEASEHOLD_MAX_WAIT, default 60)",
  example: 10,
});

const Owner = z
  .string({ message: "must be a string" })
  .max(256, "must be at most 256 characters")
  .openapi({ description: "Free text shown to others", example: "host-a" });

const HANDLE_MESSAGE = "must be 16 to 64 hex digits (the `lease` of your grant)";
const Handle = z
  .string({ message: HANDLE_MESSAGE })
  .regex(HANDLE_PATTERN, HANDLE_MESSAGE)
  .openapi({ description: "The holder's lease handle from the grant", example: "6c1f2a9be0d34f17" });

export const AcquireBody = z
  .strictObject({ ttl: Ttl.optional(), owner: Owner.optional(), wait: Wait.optional() })
  .openapi("AcquireRequest");

export const LeaseBody = z.strictObject({ lease: Handle.optional() }).openapi("LeaseRequest");

/** The optional body of renew and release: the lease, as JSON or a form field. */
export const leaseRequestBody = {
  required: false,
  content: {
    "application/json": { schema: LeaseBody },
    "application/x-www-form-urlencoded": { schema: LeaseBody },
  },
};

export const IdempotencyHeader = z.object({
  "idempotency-key": z
    .string()
    .regex(/^[\x20-\x7e]{1,255}$/, "must be 1–255 printable ASCII characters")
    .optional()
    .openapi({
      param: { name: "idempotency-key", in: "header" },
      description: "A random UUID per logical acquire; a retry with it returns the same live grant",
      example: "3b241101-e2bb-4255-8caa-4b5c9b1e9f5d",
    }),
});

export const LeaseQuery = z.strictObject({
  lease: Handle.optional().openapi({ param: { name: "lease", in: "query" } }),
});

export const ReleaseQuery = z.strictObject({
  lease: Handle.optional().openapi({ param: { name: "lease", in: "query" } }),
  force: z
    .enum(["true", "false"], { message: "must be true or false" })
    .optional()
    .openapi({
      param: { name: "force", in: "query" },
      description: "Admin keys only: release whoever holds the lock",
    }),
});

export const ListQuery = z.strictObject({
  prefix: z
    .string()
    .regex(NAME_PREFIX_PATTERN, `must use the lock name alphabet (${NAME_ALPHABET})`)
    .optional()
    .openapi({ param: { name: "prefix", in: "query" }, example: "cron:" }),
  limit: z
    .string()
    .regex(/^0*(?:[1-9]\d{0,2}|1000)$/, "must be a whole number from 1 to 1000")
    .optional()
    .openapi({ param: { name: "limit", in: "query" }, description: "1–1000, default 100", example: "100" }),
  cursor: z
    .string()
    .max(1024, "must be at most 1024 characters")
    .optional()
    .openapi({ param: { name: "cursor", in: "query" }, description: "`cursor` from the previous page" }),
});

const Token = z.number().int().openapi({
  description: "Fencing token: the etcd revision that created the lock key. Strictly increases across grants.",
  example: 1042,
});
const ExpiresAt = z.string().openapi({
  description: "Server-clock estimate; count from your own send time",
  example: "2026-11-21T12:00:30.000Z",
});

export const Grant = z
  .object({
    name: z.string().openapi({ example: "cron:job9" }),
    token: Token,
    lease: z.string().openapi({ description: "Secret handle for renew and release", example: "6c1f2a9be0d34f17" }),
    ttl: z.number().int().openapi({ description: "TTL etcd granted, in seconds", example: 30 }),
    expiresAt: ExpiresAt,
    owner: z.string().optional().openapi({ example: "host-a" }),
  })
  .openapi("Grant");

export const LockInfo = z
  .object({
    name: z.string().openapi({ example: "cron:job9" }),
    token: Token,
    ttl: z.number().int().openapi({ description: "Remaining seconds", example: 27 }),
    expiresAt: ExpiresAt,
    owner: z.string().optional().openapi({ example: "host-a" }),
  })
  .openapi("LockInfo");

export const LockList = z
  .object({
    items: z.array(LockInfo),
    cursor: z.string().optional().openapi({ description: "Present only when more locks remain" }),
  })
  .openapi("LockList");

export const ProblemBody = z
  .object({
    type: z.string().openapi({ example: "/problems/lock-held" }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().openapi({ description: "Stable machine-readable code", example: "lock-held" }),
    errors: z
      .array(
        z.object({
          field: z.string().openapi({ description: "The field, query parameter or header", example: "ttl" }),
          message: z.string().openapi({ example: "ttl must be a whole number of seconds, got 1.5" }),
        }),
      )
      .max(20)
      .optional()
      .openapi({
        description: "invalid-request: each value that was wrong or unknown, at most 20 (`detail` counts the rest)",
      }),
  })
  .openapi("Problem");

export const LockHeldProblem = ProblemBody.extend({
  holder: z.object({ owner: z.string().optional(), token: Token, expiresAt: ExpiresAt }),
}).openapi("LockHeldProblem");

export const Health = z.object({ status: z.string().openapi({ example: "ok" }) }).openapi("Health");

const problemContent = { "application/problem+json": { schema: ProblemBody } };

/** Shorthand for documenting a problem response. */
export function problem(description: string) {
  return { description, content: problemContent };
}

/** Responses every lock route can give. */
export const commonProblems = {
  400: problem("invalid-request: bad name, body or query"),
  401: problem("unauthorized: API key missing or unknown (when auth is on)"),
  403: problem("forbidden: the key may not use this name"),
  503: problem("backend-unavailable: etcd did not answer in time (has Retry-After)"),
} as const;

export const bodyProblems = {
  413: problem("payload-too-large: body over 1 MiB"),
  415: problem("unsupported-media-type: body is neither JSON nor form fields"),
} as const;
