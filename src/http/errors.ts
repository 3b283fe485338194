import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ZodError } from "zod";
import { EtcdAuthError, EtcdUnavailableError } from "../etcd/types.js";
import {
  CallerGone,
  ForeignKey,
  IdempotencyKeyMismatch,
  LockError,
  LockHeld,
  LockLost,
  ShuttingDown,
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

/** A zod validation failure as one invalid-request problem naming each bad field. */
export function invalidRequest(error: ZodError, where: string): Problem {
  const errors = error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys.map((k) => JSON.stringify(k)).join(", ");
      return { field: path || where, message: `unknown field ${keys} in ${where}` };
    }
    if (issue.code === "invalid_type" && issue.input === undefined) {
      return { field: path, message: `${path} is required` };
    }
    return { field: path, message: path ? `${path}: ${issue.message}` : issue.message };
  });
  return new Problem("invalid-request", errors.map((e) => e.message).join("; "), { errors });
}

/** The zod-openapi defaultHook: param/query/header validation failures. */
export function validationHook(
  result: { success: true } | { success: false; error: ZodError; target: string },
): Response | undefined {
  if (result.success) return undefined;
  const where = result.target === "param" ? "path" : result.target;
  return problemResponse(invalidRequest(result.error, where));
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
    if (err instanceof LockError && !(err instanceof CallerGone)) return problemResponse(lockProblem(err));
    if (err instanceof CallerGone) {
      // Nobody is listening; 499 (client closed request) keeps logs honest.
      return new Response(null, { status: 499 });
    }
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
    return new Problem("lock-held", err.message, { holder: err.holder }, { "Retry-After": String(err.retryAfter) });
  }
  if (err instanceof LockLost) return new Problem("lock-lost", err.message);
  if (err instanceof IdempotencyKeyMismatch) return new Problem("idempotency-key-mismatch", err.message);
  if (err instanceof TooManyWaiters) return new Problem("too-many-waiters", err.message, {}, { "Retry-After": "1" });
  if (err instanceof ShuttingDown) return new Problem("backend-unavailable", err.message, {}, { "Retry-After": "1" });
  if (err instanceof ForeignKey) return new Problem("internal-error", err.message);
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
