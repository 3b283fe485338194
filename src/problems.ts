/**
 * The stable error vocabulary of the API (README lists the codes). The HTTP layer
 * renders every failure as RFC 9457 problem+json; the lock engine's refusals reach it as
 * domain errors (src/lock/errors.ts) and are mapped in src/http/errors.ts.
 */
export const PROBLEMS = {
  "invalid-request": { status: 400, title: "Invalid request" },
  /** A request that is not valid HTTP (rejected before any route sees it). */
  "bad-request": { status: 400, title: "Bad request" },
  unauthorized: { status: 401, title: "Unauthorized" },
  forbidden: { status: 403, title: "Forbidden" },
  "lock-not-found": { status: 404, title: "Lock not found" },
  "state-not-found": { status: 404, title: "State not found" },
  "not-found": { status: 404, title: "Not found" },
  "method-not-allowed": { status: 405, title: "Method not allowed" },
  "request-timeout": { status: 408, title: "Request timeout" },
  "lock-held": { status: 409, title: "Lock held" },
  "limit-mismatch": { status: 409, title: "Semaphore limit mismatch" },
  "fence-stale": { status: 409, title: "Fencing token not current" },
  "lock-lost": { status: 410, title: "Lock lost" },
  "payload-too-large": { status: 413, title: "Payload too large" },
  "unsupported-media-type": { status: 415, title: "Unsupported media type" },
  "idempotency-key-mismatch": { status: 422, title: "Idempotency-Key reused with other fields" },
  "too-many-waiters": { status: 429, title: "Too many waiters" },
  "too-many-streams": { status: 429, title: "Too many event streams" },
  "headers-too-large": { status: 431, title: "Request header fields too large" },
  "internal-error": { status: 500, title: "Internal error" },
  "backend-unavailable": { status: 503, title: "Backend unavailable" },
} as const;

export type ProblemCode = keyof typeof PROBLEMS;

export class Problem extends Error {
  override name = "Problem";
  readonly status: number;
  readonly title: string;

  constructor(
    readonly code: ProblemCode,
    readonly detail: string,
    /** Extra members of the problem body (e.g. `holder` for lock-held). */
    readonly extensions: Record<string, unknown> = {},
    /** Extra response headers (e.g. Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.status = PROBLEMS[code].status;
    this.title = PROBLEMS[code].title;
  }

  toJSON(): Record<string, unknown> {
    return {
      type: `/problems/${this.code}`,
      title: this.title,
      status: this.status,
      detail: this.detail,
      code: this.code,
      ...this.extensions,
    };
  }
}
