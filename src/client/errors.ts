/** The client's error and how a failed HTTP answer becomes one. */
import type { Problem, ProblemCode } from "./types.js";

/**
 * Why a call failed: a problem `code` from the service, or one of the client's own:
 * `network-error` (no answer), `timeout` (no answer in time), `invalid-response`
 * (an answer that is not what the API promises), `lock-expired` (withLock saw no
 * successful renew before its own deadline), `redirected` (the URL answered with a
 * redirect, which the client does not follow: point it at the service itself).
 */
export type LeaseholdErrorCode =
  | ProblemCode
  | "network-error"
  | "timeout"
  | "invalid-response"
  | "lock-expired"
  | "redirected"
  | (string & {});

export class LeaseholdError extends Error {
  override name = "LeaseholdError";
  /** The problem's `code`, or a client-side code (see `LeaseholdErrorCode`). */
  readonly code: LeaseholdErrorCode;
  /** HTTP status; `0` when no HTTP answer was received. */
  readonly status: number;
  /** The problem body when the service sent one. */
  readonly problem: Problem | undefined;
  /** Seconds from `Retry-After`, when the answer had one. */
  readonly retryAfter: number | undefined;

  constructor(
    code: LeaseholdErrorCode,
    message: string,
    o: { status?: number; problem?: Problem; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.code = code;
    this.status = o.status ?? 0;
    this.problem = o.problem;
    this.retryAfter = o.retryAfter;
  }

  /**
   * `lock-held` with nobody holding: `"lock-delay"` while the lock's last grant, which
   * ended without a release, keeps it back for its `lockDelay` (`retryAfter` says how long).
   */
  get reason(): string | undefined {
    return this.problem?.reason;
  }

  /** Worth retrying: no answer, a timeout, or the service asking to come back later. */
  get transient(): boolean {
    return this.code === "network-error" || this.code === "timeout" || [429, 502, 503, 504].includes(this.status);
  }
}

/** The error for a non-2xx answer: its problem when the body is one, else its status. */
/** What problemError reads of an answer (a fetch Response, or the client's own reply). */
interface Answered {
  status: number;
  statusText: string;
  headers: { get(name: string): string | null };
}

export function problemError(method: string, path: string, res: Answered, body: unknown): LeaseholdError {
  const problem =
    typeof body === "object" && body !== null && typeof (body as Problem).code === "string"
      ? (body as Problem)
      : undefined;
  const retryAfter = Number(res.headers.get("retry-after") ?? Number.NaN);
  const code = problem?.code ?? (res.status === 503 ? "backend-unavailable" : `http-${res.status}`);
  const detail = problem?.detail ?? (res.statusText || "no problem details");
  return new LeaseholdError(code, `${method} ${path}: ${res.status} ${code}: ${detail}`, {
    status: res.status,
    ...(problem ? { problem } : {}),
    ...(Number.isFinite(retryAfter) && retryAfter >= 0 ? { retryAfter } : {}),
  });
}

/** What went wrong under a failed fetch, in a few words. */
export function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}
