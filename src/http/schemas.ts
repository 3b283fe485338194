import { type RouteConfig, z } from "@hono/zod-openapi";
import { HANDLE_PATTERN, NAME_ALPHABET, NAME_PATTERN, NAME_PREFIX_PATTERN } from "../lock/names.js";
import { PROBLEMS, type ProblemCode } from "../problems.js";

/** Request and response shapes of the HTTP API; the source of openapi.yaml. */

/** The `{name}` path parameter of a lock's or a semaphore's routes. */
function nameParam(noun: "lock" | "semaphore", example: string) {
  return z.object({
    name: z
      .string()
      .regex(NAME_PATTERN, `a ${noun} name is 1–255 characters from ${NAME_ALPHABET} (no "/"; use ":" for hierarchy)`)
      .openapi({ param: { name: "name", in: "path" }, example }),
  });
}

export const NameParam = nameParam("lock", "cron:job9");
export const SemaphoreNameParam = nameParam("semaphore", "reports:pool");

// Messages complete "ttl …, got <what was sent>" (see invalidRequest).
const Ttl = z
  .number({ message: "must be a whole number of seconds" })
  .int("must be a whole number of seconds")
  .min(1, "must be at least 1 second")
  .openapi({
    description:
      "Lease TTL in seconds. Default: LEASEHOLD_DEFAULT_TTL (30 unless configured); at most LEASEHOLD_MAX_TTL " +
      "(86400 unless configured; more is a 400)",
    example: 30,
  });

const Wait = z
  .number({ message: "must be a number of seconds" })
  .min(0, "must not be negative")
  .openapi({
    description:
      "Seconds to long-poll for the lock (fractions allowed). Default 0: answer at once; at most " +
      "LEASEHOLD_MAX_WAIT (60 unless configured; more is a 400)",
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

// A ticket has the shape of a lease handle, and is as secret.
const TICKET_MESSAGE = "must be 16 to 64 hex digits (the `ticket` of a 202 answer)";
const TicketHandle = z
  .string({ message: TICKET_MESSAGE })
  .regex(HANDLE_PATTERN, TICKET_MESSAGE)
  .openapi({ description: "The secret of a place in line, from a 202 answer", example: "9d2e4b1c07a35f68" });

const Queue = z.boolean({ message: "must be true or false" }).openapi({
  description:
    "When not granted at once (or within `wait`), keep a place in line and answer 202 with a ticket " +
    "instead of 409 (default false); form fields send true or false",
  example: true,
});

const TicketTtl = z
  .number({ message: "must be a whole number of seconds" })
  .int("must be a whole number of seconds")
  .min(1, "must be at least 1 second")
  .openapi({
    description:
      "With `queue: true`: seconds the ticket keeps its place without being redeemed. Default: " +
      "LEASEHOLD_DEFAULT_TICKET_TTL (30 unless configured); at most LEASEHOLD_MAX_TICKET_TTL (3600 unless " +
      "configured; more is a 400)",
    example: 30,
  });

/** Most UTF-8 bytes a published value may have. */
export const MAX_VALUE_BYTES = 4096;

const utf8Bytes = (text: string) =>
  text.length * 3 <= MAX_VALUE_BYTES ? text.length : new TextEncoder().encode(text).length;

const Value = z
  .string({ message: "must be a string" })
  .refine((v) => utf8Bytes(v) <= MAX_VALUE_BYTES, `must be at most ${MAX_VALUE_BYTES} UTF-8 bytes`)
  .openapi({
    description:
      "A value the holder publishes (a leader's address, its epoch): shown by GET and in `held` events. " +
      "At most 4,096 UTF-8 bytes",
    example: "10.0.0.7:8080",
  });

/** Most holders a semaphore may have. */
export const MAX_SEMAPHORE_LIMIT = 10_000;

const Limit = z
  .number({ message: "must be a whole number" })
  .int("must be a whole number")
  .min(1, "must be at least 1")
  .max(MAX_SEMAPHORE_LIMIT, `must be at most ${MAX_SEMAPHORE_LIMIT}`)
  .openapi({
    description:
      "How many may hold the semaphore at once (1–10000); every caller of one semaphore sends the same. " +
      "Required, except with a ticket (where it must match the ticket's)",
    example: 4,
  });

const acquireFields = {
  ttl: Ttl.optional(),
  owner: Owner.optional(),
  wait: Wait.optional(),
  queue: Queue.optional(),
  ticketTtl: TicketTtl.optional(),
  ticket: TicketHandle.optional().openapi({
    description:
      "Come back with a place in line: 201 when it reached its turn, else 202 with the new position. " +
      "`wait` may be sent; `ttl` and `owner` when sent must match the ticket's; no `ticketTtl`",
  }),
  value: Value.optional().openapi({
    description:
      "Published while the grant holds (a waiter publishes it at its turn); replace it with renew. " +
      "At most 4,096 UTF-8 bytes. With a ticket, must match the ticket's",
  }),
};

/** Largest lock-delay, seconds. */
export const MAX_LOCK_DELAY = 60;

const LockDelay = z
  .number({ message: "must be a whole number of seconds" })
  .int("must be a whole number of seconds")
  .min(0, "must not be negative")
  .max(MAX_LOCK_DELAY, `must be at most ${MAX_LOCK_DELAY} seconds`)
  .openapi({
    description:
      "Locks only (0–60 s, default 0): when this grant ends without a clean release (its lease expires, or an " +
      "admin forces it), nobody is granted the lock for this many seconds (409 lock-held with reason " +
      '"lock-delay"). A release frees it at once. With a ticket, must match the ticket\'s',
    example: 10,
  });

export const AcquireBody = z
  .strictObject({ ...acquireFields, lockDelay: LockDelay.optional() })
  .openapi("AcquireRequest");

// Its own object rather than an extension: "no other fields" must admit `limit` here.
export const SemaphoreAcquireBody = z
  .strictObject({ limit: Limit.optional(), ...acquireFields })
  .openapi("SemaphoreAcquireRequest");

/** A renew's optional body: the grant's lease and, to replace it, the value it publishes. */
export const RenewBody = z
  .strictObject({
    lease: Handle.optional(),
    value: Value.optional().openapi({ description: "Replaces the published value (absent: kept)" }),
  })
  .openapi("RenewRequest");

/** The optional body of a release: the grant's lease, or the ticket of a place in line. */
export const ReleaseBody = z
  .strictObject({ lease: Handle.optional(), ticket: TicketHandle.optional() })
  .openapi("ReleaseRequest");

/** An optional request body of `schema`, as JSON or form fields. */
export function optionalBody<S extends z.ZodType>(schema: S) {
  return {
    required: false,
    content: {
      "application/json": { schema },
      "application/x-www-form-urlencoded": { schema },
    },
  };
}

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

/** Largest whole number a query parameter or header carrying a token or an index takes (15 digits). */
const MAX_WHOLE_NUMBER = 999_999_999_999_999;

/**
 * A number sent in a query parameter or header: checked as the text it arrives as (`text`
 * admits exactly the numbers `range` documents, so that messages say what was wrong with
 * what was sent), and documented as the number it stands for. zod-openapi would render a
 * `z.coerce.number()` as a number too, but coercion takes "", " 5", "0x10" and "1e3".
 */
function numberText(text: z.ZodString, range: { type: "integer" | "number"; minimum: number; maximum?: number }) {
  return text.openapi(range);
}

/** A fencing token, a revision or an event id: a whole number of at most 15 digits. */
function wholeNumberText(message: string, text = z.string()) {
  return numberText(text.regex(/^\d{1,15}$/, message), { type: "integer", minimum: 0, maximum: MAX_WHOLE_NUMBER });
}

export const LeaseQuery = z.strictObject({
  lease: Handle.optional().openapi({ param: { name: "lease", in: "query" } }),
});

export const ReleaseQuery = z.strictObject({
  lease: Handle.optional().openapi({ param: { name: "lease", in: "query" } }),
  ticket: TicketHandle.optional().openapi({
    param: { name: "ticket", in: "query" },
    description: "Leave the line: the ticket of a 202 answer (instead of a lease)",
  }),
  force: z
    .enum(["true", "false"], { message: "must be true or false" })
    .optional()
    .openapi({
      param: { name: "force", in: "query" },
      description: "Admin keys only: release a holder whoever it is",
      default: "false",
    }),
  token: wholeNumberText("must be a whole number (a holder's fencing token)")
    .optional()
    .openapi({
      param: { name: "token", in: "query" },
      description:
        "With force=true: the holder to release, by its fencing token (required for a semaphore; " +
        "for a lock, releases only while that grant still holds it)",
      example: 1042,
    }),
});

const IndexValue = wholeNumberText("must be a whole number (the index of an earlier answer)");

/** The query of a read of one lock or semaphore: a blocking read when `index` is given. */
export const InspectQuery = z.strictObject({
  index: IndexValue.optional().openapi({
    param: { name: "index", in: "query" },
    description:
      "Blocking read: answer once the state changed after this index (`index` of an earlier answer, " +
      "the etcd revision it was read at), or after `wait` seconds unchanged",
    example: 1042,
  }),
  wait: numberText(z.string().regex(/^(?:\d{1,6}(?:\.\d{1,3})?|\.\d{1,3})$/, "must be a number of seconds"), {
    type: "number",
    minimum: 0,
  })
    .optional()
    .openapi({
      param: { name: "wait", in: "query" },
      description:
        "With `index`: seconds to wait for a change (up to 3 decimals). Default and most: LEASEHOLD_MAX_WAIT " +
        "(60 unless configured; more is a 400)",
      example: 30,
    }),
});

const NamePrefix = z
  .string()
  .regex(NAME_PREFIX_PATTERN, `must use the lock name alphabet (${NAME_ALPHABET})`)
  .optional()
  .openapi({ param: { name: "prefix", in: "query" }, example: "cron:" });

export const EventsQuery = z.strictObject({
  prefix: NamePrefix.openapi({
    param: { name: "prefix", in: "query" },
    description: "Only names under this prefix (default: every name the API key may see)",
    example: "election:",
  }),
  kind: z
    .enum(["lock", "semaphore"], { message: "must be lock or semaphore" })
    .optional()
    .openapi({ param: { name: "kind", in: "query" }, description: "Only locks or only semaphores (default: both)" }),
  lastEventId: IndexValue.optional().openapi({
    param: { name: "lastEventId", in: "query" },
    description: "Resume after this event id, for EventSource polyfills that cannot send Last-Event-ID",
    example: 1044,
  }),
});

export const EventsHeaders = z.object({
  "last-event-id": wholeNumberText("must be a whole number (the id of an event this stream sent)")
    .optional()
    .openapi({
      param: { name: "last-event-id", in: "header" },
      description: "Resume after this event id (an etcd revision): every change after it, none twice",
      example: 1044,
    }),
});

export const ListQuery = z.strictObject({
  prefix: NamePrefix,
  limit: numberText(z.string().regex(/^0*(?:[1-9]\d{0,2}|1000)$/, "must be a whole number from 1 to 1000"), {
    type: "integer",
    minimum: 1,
    maximum: 1000,
  })
    .optional()
    .openapi({
      param: { name: "limit", in: "query" },
      description: "How many to answer at most",
      default: 100,
      example: 100,
    }),
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
const ExpiresAt = z.iso.datetime().openapi({
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
    value: z.string().optional().openapi({ description: "The value the holder publishes", example: "10.0.0.7:8080" }),
  })
  .openapi("Grant");

export const SemaphoreGrant = Grant.extend({
  limit: z.number().int().openapi({ description: "How many may hold the semaphore at once", example: 4 }),
}).openapi("SemaphoreGrant");

export const TicketAnswer = z
  .object({
    ticket: z.string().openapi({
      description: "Secret: redeem it with another acquire carrying `ticket`, or leave with DELETE ?ticket=",
      example: "9d2e4b1c07a35f68",
    }),
    position: z.number().int().openapi({
      description: "Waiters ahead of this place (holders not counted; first in line = 0)",
      example: 2,
    }),
    ttl: z.number().int().openapi({
      description: "Seconds the ticket keeps its place without being redeemed",
      example: 30,
    }),
  })
  .openapi("Ticket");

const Waiters = z.number().int().openapi({
  description: "Callers in line behind the holders (waiting acquires and tickets)",
  example: 3,
});

const RemainingTtl = z.number().int().openapi({ description: "Remaining seconds", example: 27 });

const PublishedValue = z
  .string()
  .optional()
  .openapi({ description: "The value the holder publishes", example: "10.0.0.7:8080" });

const Index = z
  .number()
  .int()
  .openapi({
    description:
      "The etcd revision this answer was read at; every later change has a larger one. " +
      "Send it back as `?index=` for a blocking read (also in the Leasehold-Index header)",
    example: 1051,
  });

export const LockInfo = z
  .object({
    name: z.string().openapi({ example: "cron:job9" }),
    token: Token,
    ttl: RemainingTtl,
    expiresAt: ExpiresAt,
    owner: z.string().optional().openapi({ example: "host-a" }),
    value: PublishedValue,
    waiters: Waiters.optional().openapi({ description: "Callers in line for the lock; absent when none" }),
    index: Index.optional().openapi({ description: "`GET /locks/{name}` only: see Index" }),
  })
  .openapi("LockInfo");

export const LockList = z
  .object({
    items: z.array(LockInfo),
    cursor: z.string().optional().openapi({ description: "Present only when more locks remain" }),
  })
  .openapi("LockList");

export const SemaphoreHolder = z
  .object({
    token: Token,
    ttl: RemainingTtl,
    expiresAt: ExpiresAt,
    owner: z.string().optional(),
    value: PublishedValue,
  })
  .openapi("SemaphoreHolder");

export const SemaphoreInfo = z
  .object({
    name: z.string().openapi({ example: "reports:pool" }),
    limit: z.number().int().openapi({ description: "How many may hold it at once", example: 4 }),
    holders: z.array(SemaphoreHolder).openapi({ description: "Oldest first; never lease handles" }),
    waiters: Waiters,
    index: Index.optional().openapi({ description: "`GET /semaphores/{name}` only: see Index" }),
  })
  .openapi("SemaphoreInfo");

export const SemaphoreList = z
  .object({
    items: z.array(SemaphoreInfo),
    cursor: z.string().optional().openapi({ description: "Present only when more semaphores remain" }),
  })
  .openapi("SemaphoreList");

/** Every code the service answers with, in the order of PROBLEMS. */
const CODES = Object.keys(PROBLEMS) as ProblemCode[];

export const ProblemBody = z
  .object({
    type: z.string().openapi({ description: "`/problems/` and the code", example: "/problems/lock-held" }),
    title: z.string().openapi({ description: "The code's title, the same for every problem of that code" }),
    status: z.number().int().openapi({ description: "The HTTP status of the answer", example: 409 }),
    detail: z.string().openapi({ description: "What was wrong with what was sent, for people; may change wording" }),
    code: z.string().openapi({
      description: `Stable machine-readable code; each response names the ones it can carry. All codes: ${CODES.join(", ")}`,
      example: "lock-held",
    }),
  })
  .openapi("Problem");

/** The problem of one `code`: the common members, that code, and the members it adds. */
function problemOf<C extends ProblemCode, S extends z.ZodRawShape>(code: C, members: S) {
  const name = code.replace(/(^|-)([a-z])/g, (_m, _dash: string, c: string) => c.toUpperCase());
  return ProblemBody.extend({ code: z.literal(code), ...members }).openapi(`${name}Problem`);
}

export const InvalidRequestProblem = problemOf("invalid-request", {
  errors: z
    .array(
      z.object({
        field: z.string().openapi({
          description:
            "The body field (dotted path for nested ones; empty for the body itself), query parameter or header " +
            "that was wrong or unknown",
          example: "ttl",
        }),
        message: z.string().openapi({
          description: "What was wrong with it, naming it and echoing what was sent (never a secret's content)",
          example: "ttl must be a whole number of seconds, got 1.5",
        }),
      }),
    )
    .max(20)
    .optional()
    .openapi({
      description:
        "When the path, query, headers or body failed validation: each value that was wrong or unknown, at most " +
        "20 (`detail` says how many more). Absent for a refusal that is about no one value (two fields that do " +
        "not go together)",
    }),
});

export const LockHeldProblem = problemOf("lock-held", {
  holder: z
    .object({ owner: z.string().optional(), token: Token, expiresAt: ExpiresAt })
    .optional()
    .openapi({ description: "A lock's holder (absent for a semaphore)" }),
  position: z.number().int().optional().openapi({
    description: "After a `wait`: the waiters that were still ahead when it gave up",
    example: 2,
  }),
  reason: z
    .enum(["lock-delay"])
    .optional()
    .openapi({
      description:
        "lock-delay: nobody holds the lock, but its last grant ended without a release (expired or forced) less " +
        "than its lockDelay ago; Retry-After says when it can be granted",
    }),
});

export const FenceStaleProblem = problemOf("fence-stale", {
  current: Token.optional().openapi({ description: "Locks: the current holder's token (absent when free)" }),
  holders: z.array(Token).optional().openapi({ description: "Semaphores: the current permits' tokens, oldest first" }),
});

export const LimitMismatchProblem = problemOf("limit-mismatch", {
  limit: z.number().int().openapi({ description: "The limit the semaphore's holders took it with", example: 4 }),
});

const LockNotFoundProblem = problemOf("lock-not-found", {});

/** A read of one lock or semaphore that nobody holds: with the index it was read at. */
export const NotHeldProblem = LockNotFoundProblem.extend({ index: Index });

/** `?token=` of a fence check. */
export const FenceQuery = z.strictObject({
  token: wholeNumberText(
    "must be a whole number (a grant's fencing token)",
    z.string({ message: "is required: the fencing token to check (?token=1042)" }),
  ).openapi({ param: { name: "token", in: "query" }, description: "The fencing token to check", example: 1042 }),
});

export const FenceAnswer = z
  .object({
    name: z.string().openapi({ example: "cron:job9" }),
    token: Token,
    current: z.literal(true),
  })
  .openapi("Fence");

/** Most UTF-8 bytes a guarded state value may have. */
export const MAX_STATE_BYTES = 65_536;

/** `PUT …/state`: the writer's lease and the value. */
export const StateBody = z
  .strictObject({
    lease: Handle.optional(),
    value: z.string({ message: "must be a string" }).openapi({
      description: `The state to store (at most ${MAX_STATE_BYTES} UTF-8 bytes; larger is 413)`,
      example: '{"lastRun":"2026-12-01T09:00:00Z"}',
    }),
  })
  .openapi("StateRequest");

export const StateAnswer = z
  .object({
    value: z.string(),
    token: Token.openapi({ description: "The fencing token of the grant that wrote it" }),
    revision: z.number().int().openapi({ description: "The etcd revision it was written at", example: 1077 }),
    updatedAt: z.iso
      .datetime()
      .openapi({ description: "When it was written (the service's clock)", example: "2026-12-01T09:00:03.120Z" }),
  })
  .openapi("State");

export const Health = z.object({ status: z.string().openapi({ example: "ok" }) }).openapi("Health");

/** The problems that add members, by code; the others are the common members and their code. */
const EXTENDED: Partial<Record<ProblemCode, z.ZodObject>> = {
  "invalid-request": InvalidRequestProblem,
  "lock-held": LockHeldProblem,
  "fence-stale": FenceStaleProblem,
  "limit-mismatch": LimitMismatchProblem,
  "lock-not-found": LockNotFoundProblem,
};
const plainProblems = new Map<ProblemCode, z.ZodObject>();

/** The schema of `code`'s problems, made once: each is one named component of openapi.yaml. */
function problemSchema(code: ProblemCode): z.ZodObject {
  const extended = EXTENDED[code];
  if (extended) return extended;
  let schema = plainProblems.get(code);
  if (!schema) {
    schema = problemOf(code, {});
    plainProblems.set(code, schema);
  }
  return schema;
}

type ResponseDoc = Exclude<RouteConfig["responses"][string], { $ref: string }>;
/** Response headers as openapi.yaml declares them (not as a zod object). */
export type HeaderDocs = Exclude<ResponseDoc["headers"], z.ZodType | undefined>;

/** The codes whose answers carry Retry-After. */
const RETRY_AFTER: readonly ProblemCode[] = [
  "lock-held",
  "too-many-waiters",
  "too-many-streams",
  "backend-unavailable",
];

/** The headers problems of `codes` carry: Retry-After when one of them says to retry, the challenge on a 401. */
function problemHeaders(codes: readonly ProblemCode[]): HeaderDocs {
  const headers: HeaderDocs = {};
  const retry = codes.filter((c) => RETRY_AFTER.includes(c));
  if (retry.length > 0) {
    const only = retry.length < codes.length ? ` (${retry.join(", ")} only)` : "";
    headers["Retry-After"] = {
      description: `Whole seconds to wait before trying again${only}`,
      required: retry.length === codes.length,
      schema: { type: "integer", minimum: 0 },
    };
  }
  if (codes.includes("unauthorized")) {
    headers["WWW-Authenticate"] = {
      description: 'The challenge: `Bearer realm="leasehold"`, with `error="invalid_token"` for a key it does not know',
      required: true,
      schema: { type: "string" },
    };
  }
  return headers;
}

/**
 * A problem response: `codes` are the codes it can carry (its schema is theirs, one of them
 * by `code`), with the headers they carry. `o.schema` and `o.headers` refine one route's.
 */
export function problem(
  description: string,
  codes: readonly [ProblemCode, ...ProblemCode[]],
  o: { schema?: z.ZodType; headers?: HeaderDocs } = {},
) {
  const [first, ...more] = codes.map(problemSchema) as [z.ZodObject, ...z.ZodObject[]];
  const schema = o.schema ?? (more.length === 0 ? first : z.discriminatedUnion("code", [first, ...more]));
  return {
    description,
    headers: { ...problemHeaders(codes), ...o.headers },
    content: { "application/problem+json": { schema } },
  };
}

/** A 400 of a route that validates what it is sent. */
export const invalidRequest = (what: string) => problem(`invalid-request: ${what}`, ["invalid-request"]);

/** A 500 of any route: a bug, logged with its stack (never sent). */
export const internalError = problem("internal-error: an unexpected error; it has been logged", ["internal-error"]);

/** A 401 of a route that takes an API key when auth is on. */
export const unauthorized = problem("unauthorized: API key missing or unknown (only when auth is on)", [
  "unauthorized",
]);

const backendUnavailable = problem(
  "backend-unavailable: etcd did not answer in time, refused this service's credentials, or this instance is " +
    "shutting down",
  ["backend-unavailable"],
);

/** The problems of a route on the collection (a listing, the event stream): no one name to be refused. */
export const collectionProblems = {
  400: invalidRequest("a bad query or header"),
  401: unauthorized,
  500: internalError,
  503: backendUnavailable,
} as const;

/** The problems of every route on one lock or semaphore. */
export const commonProblems = {
  400: invalidRequest("a bad name, body, query or header"),
  401: unauthorized,
  403: problem("forbidden: the API key may not use this name", ["forbidden"]),
  500: internalError,
  503: backendUnavailable,
} as const;

/** The problems of a route that reads a body. */
export const bodyProblems = {
  413: problem("payload-too-large: body over 1 MiB", ["payload-too-large"]),
  415: problem("unsupported-media-type: body is neither JSON nor form fields (or is compressed, or not UTF-8)", [
    "unsupported-media-type",
  ]),
} as const;
