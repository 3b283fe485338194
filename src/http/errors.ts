import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ZodError } from "zod";
import { EtcdAuthError, EtcdUnavailableError } from "../etcd/types.js";
import {
  CallerGone,
  FenceStale,
  IdempotencyKeyMismatch,
  LimitMismatch,
  LockError,
  LockHeld,
  LockLost,
  ShuttingDown,
  StateNotFound,
  TicketMismatch,
  TooManyStreams,
  TooManyWaiters,
} from "../lock/index.js";
import { Problem, type ProblemCode } from "../problems.js";
import type { Logger } from "./logger.js";

/** Every failure leaves the service through here, as RFC 9457 problem+json. */

export function problemResponse(p: Problem): Response {
  return new Response(JSON.stringify(p.toJSON()), {
    status: p.status,
    headers: { "content-type": "application/problem+json", ...p.headers },
  });
}

/** Where a value came from, for messages ("query parameter limit", "header Idempotency-Key"). */
export type Where = "path" | "query" | "header" | "body";

interface FieldError {
  field: string;
  message: string;
}

/** At most this many entries in `errors`; the detail says how many more there were. */
const MAX_LISTED = 20;
/** Unknown names spelled out in the detail before "and N more". */
const MAX_NAMED = 5;
/** Echoed text is cut to this many characters, so an answer never grows with the request. */
const MAX_ECHO = 40;
/** Values whose content is never echoed: a lease handle, a ticket, an Idempotency-Key (each opens a grant). */
const SECRET = new Set(["lease", "ticket", "idempotency-key"]);

/**
 * A zod validation failure as one invalid-request problem: what was wrong with each value
 * that was sent ("ttl must be a whole number of seconds, got 1.5"), unknown names with the
 * known ones, and at most a few dozen listed errors however large the request was.
 * `known` are the names the schema takes; `bodyFields`, for the query, the names that
 * belong in the body instead (a `?ttl=` on acquire).
 */
export function invalidRequest(
  error: ZodError,
  where: Where,
  input: unknown,
  o: { known?: readonly string[]; bodyFields?: readonly string[] } = {},
): Problem {
  const wrong: FieldError[] = [];
  const unknown: string[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") unknown.push(...issue.keys);
    else wrong.push(fieldError(issue, where, input));
  }
  const parts = wrong.map((e) => e.message);
  if (unknown.length > 0) parts.push(unknownNames(unknown, where, o.known ?? [], o.bodyFields ?? []));
  const noun = NOUNS[where];
  const errors = [
    ...wrong,
    ...unknown.slice(0, MAX_LISTED).map((k) => ({ field: clip(k), message: `unknown ${noun} ${quote(k)}` })),
  ].slice(0, MAX_LISTED);
  return new Problem("invalid-request", parts.join("; "), { errors });
}

const NOUNS: Record<Where, string> = {
  path: "path parameter",
  query: "query parameter",
  header: "header",
  body: "field",
};

function fieldError(issue: ZodError["issues"][number], where: Where, input: unknown): FieldError {
  const field = issue.path.map(String).join(".");
  // A lock name's own message says what a name may be; the name is in the caller's URL already.
  if (where === "path") return { field, message: issue.message };
  const label =
    where === "query"
      ? `query parameter ${field}`
      : where === "header"
        ? field.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase())
        : field || "the body";
  const value = valueAt(input, issue.path);
  if (where === "query" && Array.isArray(value)) {
    return { field, message: `${label} is given ${value.length} times; give it once` };
  }
  if (value === undefined) return { field, message: `${label} is required` };
  const got = describe(value, SECRET.has(field));
  const numberInQuotes =
    issue.code === "invalid_type" &&
    (issue.expected === "number" || issue.expected === "int") &&
    typeof value === "string" &&
    /^\s*-?\d+(\.\d+)?\s*$/.test(value);
  const hint = numberInQuotes ? " (a string; send the number without quotes)" : "";
  return { field, message: `${label} ${issue.message}, got ${got}${hint}` };
}

function unknownNames(names: string[], where: Where, known: readonly string[], bodyFields: readonly string[]): string {
  const noun = NOUNS[where];
  const listed = names.slice(0, MAX_NAMED).map(quote).join(", ");
  const more = names.length > MAX_NAMED ? ` and ${thousands(names.length - MAX_NAMED)} more` : "";
  const place = where === "body" ? " in the body" : "";
  const takes = known.length > 0 ? `known ${noun}s: ${known.join(", ")}` : `this route takes no ${noun}s`;
  let text = `unknown ${noun}${names.length === 1 ? "" : "s"} ${listed}${more}${place}; ${takes}`;
  const misplaced = bodyFields.filter((f) => names.includes(f));
  if (misplaced.length > 0) text += `; send ${misplaced.join(", ")} in the request body instead`;
  return text;
}

/** The value sent, as a message shows it: short, and never the content of a secret. */
export function describe(value: unknown, secret = false): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string":
      return secret ? `a string of ${value.length} character${value.length === 1 ? "" : "s"}` : quote(value);
    case "number":
      // JSON has no NaN or Infinity: a non-finite number was one like 1e400.
      return secret ? "a number" : Number.isFinite(value) ? String(value) : "a number too large to represent";
    case "boolean":
      return String(value);
    case "object":
      return "an object";
    default:
      return `a ${typeof value}`;
  }
}

/** A JSON-quoted string, cut to MAX_ECHO characters with its full length. */
export function quote(text: string): string {
  if (text.length <= MAX_ECHO) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, MAX_ECHO)).slice(0, -1)}…" (${thousands(text.length)} characters)`;
}

function clip(text: string): string {
  return text.length <= MAX_ECHO ? text : `${text.slice(0, MAX_ECHO)}…`;
}

function thousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** The names a (strict) object schema takes, for "known fields: …". */
export function fieldNames(schema: unknown): string[] {
  const shape = (schema as { shape?: object } | undefined)?.shape;
  return shape ? Object.keys(shape) : [];
}

export function errorHandler(log: Logger) {
  return (err: Error, c: Context): Response => {
    if (err instanceof Problem) return problemResponse(err);
    const unavailable = (detail: string, retryAfter: number) =>
      problemResponse(new Problem("backend-unavailable", detail, {}, { "Retry-After": String(retryAfter) }));
    if (err instanceof EtcdUnavailableError) {
      log.warn("etcd unavailable", { err: err.message, route: c.req.routePath });
      return unavailable("etcd did not answer within the deadline; retry shortly", 1);
    }
    if (err instanceof EtcdAuthError) {
      // Our credentials, not the caller's request: nothing the caller can fix, so 503.
      log.error("etcd refused leasehold's credentials", { err: err.message, route: c.req.routePath });
      return unavailable("the lock store refused this service's credentials; the operator has to fix them", 5);
    }
    if (err instanceof CallerGone) {
      // Nobody is listening; 499 (client closed request) keeps logs honest.
      return new Response(null, { status: 499 });
    }
    if (err instanceof LockError) return problemResponse(lockProblem(err));
    if (err instanceof HTTPException) {
      const code = codeForStatus(err.status);
      return problemResponse(new Problem(code, err.message || code));
    }
    log.error("unhandled error", { err: err.stack ?? String(err), route: c.req.routePath });
    return problemResponse(new Problem("internal-error", "an unexpected error occurred; it has been logged"));
  };
}

/** The lock engine's refusals in the API's vocabulary: status, code, extra members, headers. */
export function lockProblem(err: LockError): Problem {
  if (err instanceof LockHeld) {
    // A semaphore has no one holder to show; `position` only after a wait.
    const members = {
      ...(err.holder ? { holder: err.holder } : {}),
      ...(err.position !== undefined ? { position: err.position } : {}),
      ...(err.reason !== undefined ? { reason: err.reason } : {}),
    };
    return new Problem("lock-held", err.message, members, { "Retry-After": String(err.retryAfter) });
  }
  if (err instanceof LimitMismatch) return new Problem("limit-mismatch", err.message, { limit: err.limit });
  if (err instanceof FenceStale) {
    // A lock shows its one holder's token; a semaphore, every permit's.
    const members = err.what.startsWith("semaphore ")
      ? { holders: err.current }
      : err.current[0] !== undefined
        ? { current: err.current[0] }
        : {};
    return new Problem("fence-stale", err.message, members);
  }
  if (err instanceof StateNotFound) return new Problem("state-not-found", err.message);
  if (err instanceof TicketMismatch) return new Problem("invalid-request", err.message);
  if (err instanceof LockLost) return new Problem("lock-lost", err.message);
  if (err instanceof IdempotencyKeyMismatch) return new Problem("idempotency-key-mismatch", err.message);
  if (err instanceof TooManyWaiters) return new Problem("too-many-waiters", err.message, {}, { "Retry-After": "1" });
  if (err instanceof TooManyStreams) return new Problem("too-many-streams", err.message, {}, { "Retry-After": "5" });
  if (err instanceof ShuttingDown) return new Problem("backend-unavailable", err.message, {}, { "Retry-After": "1" });
  // ForeignKey: a key under the prefix that leasehold did not write.
  return new Problem("internal-error", err.message);
}

function codeForStatus(status: number): ProblemCode {
  switch (status) {
    case 400:
      return "invalid-request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not-found";
    case 405:
      return "method-not-allowed";
    case 413:
      return "payload-too-large";
    case 415:
      return "unsupported-media-type";
    case 503:
      return "backend-unavailable";
    default:
      return "internal-error";
  }
}
