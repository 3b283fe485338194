import { LeaseholdError } from "../client/index.js";

/**
 * Exit codes of the `leasehold` command (sysexits.h where one fits). `exec` passes its
 * command's own exit code through; these are what leasehold itself exits with.
 */
export const EXIT = {
  OK: 0,
  /** Anything not covered below. */
  ERROR: 1,
  /** `status NAME`: nobody holds the lock (the LSB "not running" status); `state NAME`: no state written yet. */
  NOT_HELD: 3,
  /** Bad command line, or the service rejected the request as invalid (400). EX_USAGE. */
  USAGE: 64,
  /** Lock held by someone else (after any --wait); `exec` did not run the command. EX_CANTCREAT. */
  HELD: 73,
  /**
   * Lock lost: renew/release (or a `state` write) answered 410, `exec` lost the lock while
   * the command ran, or `fence`: the token is not current.
   */
  LOST: 74,
  /** Service unavailable: no answer, a timeout, or 429/503 after retries. EX_TEMPFAIL. */
  UNAVAILABLE: 75,
  /** API key missing, unknown, or not allowed for this name (401/403). EX_NOPERM. */
  DENIED: 77,
  /** `exec`: the command could not be executed / was not found (as in a shell). */
  CANNOT_EXECUTE: 126,
  NOT_FOUND: 127,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0    success (exec: the command's own exit code is passed through)
  1    any other error
  3    status: nobody holds the lock; state: no state written yet
  64   usage: bad arguments, or the service rejected the request as invalid (400)
  73   lock held by someone else (after --wait); exec did not run the command
  74   lock lost: renew/release/state answered 410, exec lost the lock while the command
       ran, or fence: the token is not current
  75   service unavailable: no answer, a timeout, or 429/503 after retrying
  77   not allowed: API key missing or not allowed for this name (401/403)
  exec only: 126/127 command not executable/not found; 128+N command killed by signal N`;

/** The exit code for a failed call. */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof LeaseholdError)) return EXIT.ERROR;
  if (err.transient) return EXIT.UNAVAILABLE;
  switch (err.code) {
    case "lock-held":
      return EXIT.HELD;
    case "lock-lost":
    case "lock-expired":
      return EXIT.LOST;
    case "invalid-request":
    case "payload-too-large":
    case "unsupported-media-type":
      return EXIT.USAGE;
    case "unauthorized":
    case "forbidden":
      return EXIT.DENIED;
    default:
      return EXIT.ERROR;
  }
}
