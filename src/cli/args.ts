import { hostname } from "node:os";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { type AcquireOptions, LeaseholdError } from "../client/index.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";

/** A bad command line: the message is printed with a pointer to `--help`, exit 64. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Options every verb takes. */
export const COMMON_OPTIONS = {
  url: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

/** The acquire flags of `acquire` and `exec`. */
export const ACQUIRE_FLAGS = {
  ttl: { type: "string" },
  wait: { type: "string" },
  owner: { type: "string" },
  retry: { type: "string" },
  limit: { type: "string" },
  value: { type: "string" },
  "lock-delay": { type: "string" },
} as const satisfies ParseArgsConfig["options"];

/** Checked acquire options from those flags (owner defaults to this host's name). */
export function acquireOptions(values: {
  ttl?: string;
  wait?: string;
  owner?: string;
  retry?: string;
  value?: string;
  limit?: string;
  "lock-delay"?: string;
}): AcquireOptions {
  const ttl = seconds(values.ttl, "ttl", { integer: true, min: 1 });
  const wait = seconds(values.wait, "wait");
  const lockDelay = seconds(values["lock-delay"], "lock-delay", { integer: true });
  if (lockDelay !== undefined && values.limit !== undefined) {
    throw new UsageError("--lock-delay is for locks; a semaphore (--limit) has none");
  }
  return {
    owner: values.owner ?? hostname(),
    retryMs: (seconds(values.retry, "retry") ?? 10) * 1000,
    ...(ttl !== undefined ? { ttl } : {}),
    ...(wait !== undefined ? { wait } : {}),
    ...(values.value !== undefined ? { value: values.value } : {}),
    ...(lockDelay !== undefined ? { lockDelay } : {}),
  };
}

export const COMMON_HELP = `  --url URL        the service (default: LEASEHOLD_URL, else http://127.0.0.1:8080)
  -h, --help       this help`;

/** `parseArgs` in strict mode, its complaints turned into UsageErrors. */
export function parse<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `--limit N`: a semaphore of N permits; `undefined` (a lock) when the flag is absent. */
export function semaphoreLimit(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < 1) {
    throw new UsageError(`--limit must be a whole number of permits, at least 1, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A number of seconds from a flag, checked; `undefined` when the flag is absent. */
export function seconds(
  value: string | undefined,
  flag: string,
  o: { integer?: boolean; min?: number } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const min = o.min ?? 0;
  if (value.trim() === "" || !Number.isFinite(n) || n < min || (o.integer && !Number.isInteger(n))) {
    throw new UsageError(`--${flag} must be ${o.integer ? "a whole number" : "a number"} of seconds, at least ${min}`);
  }
  return n;
}

/** Exactly one positional NAME. */
export function oneName(positionals: string[], verb: string): string {
  const [name, ...rest] = positionals;
  if (name === undefined) throw new UsageError(`${verb} needs a lock NAME`);
  if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  return name;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function warn(message: string): void {
  process.stderr.write(`leasehold: ${message}\n`);
}

/**
 * Reports a failed call: its problem as JSON on stdout (unless `json` is false), a line
 * on stderr; returns the exit code.
 */
export function failed(err: unknown, o: { json?: boolean } = {}): number {
  if (err instanceof LeaseholdError) {
    if (o.json !== false) printJson(err.problem ?? { code: err.code, status: err.status, detail: err.message });
    warn(err.message);
  } else {
    warn(err instanceof Error ? err.message : String(err));
  }
  return exitCodeFor(err);
}

export { EXIT };
