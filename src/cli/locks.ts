import { createClient, type Grant, type LockInfo, type SemaphoreInfo } from "../client/index.js";
import {
  ACQUIRE_FLAGS,
  acquireOptions,
  COMMON_HELP,
  COMMON_OPTIONS,
  EXIT,
  failed,
  oneName,
  parse,
  printJson,
  semaphoreLimit,
  UsageError,
} from "./args.js";

/** `acquire`, `renew`, `release` and `status`: one call each, JSON on stdout. */

export const ACQUIRE_HELP = `Usage: leasehold acquire NAME [--limit N] [--ttl S] [--wait S] [--owner X] [--lock-delay S] [--format json|env]

Takes the lock NAME and prints the grant: {"name","token","lease","ttl","expiresAt","owner"}.
"token" is the fencing token; "lease" is the holder's secret for renew and release.
With --limit N, takes one of the N permits of the semaphore NAME instead (the grant adds
"limit"; renew and release it with --semaphore).
No answer, or a 429/503, is retried (one Idempotency-Key, so a lost answer is not a lost lock).

  --limit N        a permit of the semaphore NAME, at most N holders at once (every
                   caller of one semaphore must give the same N)
  --ttl S          lease TTL in seconds (service default 30)
  --wait S         wait up to S seconds while someone else holds it (default 0)
  --owner X        free text shown to others (default: this host's name)
  --value V        a value to publish while holding it (at most 4,096 bytes; shown by
                   status and watch): a leader's address, say
  --lock-delay S   locks only, 0–60 whole seconds: if this grant ends without a release
                   (it expires, or is forced), nobody gets NAME for S seconds (exit 73,
                   "reason":"lock-delay"); for resources that can't check the token
  --retry S        keep retrying an unavailable service for S seconds (default 10)
  --idempotency-key K   send this key instead of a random one
  --format env     print shell assignments instead of JSON, for
                   eval "$(leasehold acquire NAME --format env)":
                   LEASEHOLD_NAME, LEASEHOLD_TOKEN and LEASEHOLD_LEASE (exported)
${COMMON_HELP}

Exit: 0 acquired · 73 held by someone else · 64 bad arguments · 75 service unavailable · 77 not allowed`;

export const RENEW_HELP = `Usage: leasehold renew NAME [--lease L] [--value V] [--semaphore]

Resets the lease to its TTL; prints the grant (same token, new expiresAt). With --value,
also replaces the published value (a leader's proclaim).

  --lease L        the grant's lease (default: LEASEHOLD_LEASE)
  --value V        publish V instead of the value published so far
  --semaphore      a permit of the semaphore NAME (from acquire --limit), not a lock
${COMMON_HELP}

Exit: 0 renewed · 74 lock lost (expired, released, or someone else's) · 64 · 75 · 77`;

export const RELEASE_HELP = `Usage: leasehold release NAME [--lease L] [--semaphore]

Releases the lock; prints {"name","released":true}.

  --lease L        the grant's lease (default: LEASEHOLD_LEASE)
  --semaphore      a permit of the semaphore NAME (from acquire --limit), not a lock
${COMMON_HELP}

Exit: 0 released · 74 lock lost (nothing to release) · 64 · 75 · 77`;

export const STATUS_HELP = `Usage: leasehold status [--semaphore] NAME
       leasehold status [--semaphore] [--prefix P]

With NAME: prints {"held":true,"name","token","ttl","expiresAt","owner","waiters"} and
exits 0, or {"held":false,"name"} and exits 3 when nobody holds it. Without NAME: prints
{"items":[…]}, every held lock whose name starts with P (default: all), exit 0.
"waiters" (absent when none) counts the callers in line.

  --semaphore      semaphores instead of locks: {"held":true,"name","limit","holders":
                   [{"token","ttl","expiresAt","owner"}…],"waiters"} for NAME
  --prefix P       list the locks (or semaphores) under this name prefix
${COMMON_HELP}

Exit: 0 held (or listed) · 3 not held · 64 · 75 · 77`;

export async function acquireVerb(argv: string[]): Promise<number> {
  const { values, positionals } = parse({
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      ...ACQUIRE_FLAGS,
      "idempotency-key": { type: "string" },
      format: { type: "string" },
    },
  });
  if (values.help) return help(ACQUIRE_HELP);
  const name = oneName(positionals, "acquire");
  const format = values.format ?? "json";
  if (format !== "json" && format !== "env") throw new UsageError("--format must be json or env");
  const options = {
    ...acquireOptions(values),
    ...(values["idempotency-key"] !== undefined ? { idempotencyKey: values["idempotency-key"] } : {}),
  };
  const limit = semaphoreLimit(values.limit);
  try {
    const client = createClient(clientOptions(values));
    const grant =
      limit === undefined ? await client.acquire(name, options) : await client.semaphore(name, limit).acquire(options);
    if (format === "env") process.stdout.write(shellAssignments(grant));
    else printJson(grant);
    return EXIT.OK;
  } catch (err) {
    return failed(err, { json: format === "json" });
  }
}

export async function renewVerb(argv: string[]): Promise<number> {
  const { name, lease, values } = leaseArgs(argv, "renew");
  if (values.help) return help(RENEW_HELP);
  try {
    const client = createClient(clientOptions(values));
    const o = values.value !== undefined ? { value: values.value } : {};
    printJson(values.semaphore ? await client.semaphore(name).renew(lease, o) : await client.renew(name, lease, o));
    return EXIT.OK;
  } catch (err) {
    return failed(err);
  }
}

export async function releaseVerb(argv: string[]): Promise<number> {
  const { name, lease, values } = leaseArgs(argv, "release");
  if (values.help) return help(RELEASE_HELP);
  if (values.value !== undefined) throw new UsageError("release takes no --value (renew publishes one)");
  try {
    const client = createClient(clientOptions(values));
    if (values.semaphore) await client.semaphore(name).release(lease);
    else await client.release(name, lease);
    printJson({ name, released: true });
    return EXIT.OK;
  } catch (err) {
    return failed(err);
  }
}

export async function statusVerb(argv: string[]): Promise<number> {
  const { values, positionals } = parse({
    args: argv,
    allowPositionals: true,
    options: { ...COMMON_OPTIONS, prefix: { type: "string" }, semaphore: { type: "boolean" } },
  });
  if (values.help) return help(STATUS_HELP);
  const client = createClient(clientOptions(values));
  try {
    if (positionals.length === 0) {
      const items: (LockInfo | SemaphoreInfo)[] = [];
      let cursor: string | undefined;
      do {
        const o = { prefix: values.prefix ?? "", limit: 1000, ...(cursor ? { cursor } : {}) };
        const page = values.semaphore ? await client.listSemaphores(o) : await client.list(o);
        items.push(...page.items);
        cursor = page.cursor;
      } while (cursor);
      printJson({ items });
      return EXIT.OK;
    }
    if (values.prefix !== undefined) throw new UsageError("give either NAME or --prefix, not both");
    const name = oneName(positionals, "status");
    const info = values.semaphore ? await client.semaphore(name).inspect() : await client.inspect(name);
    printJson(info ? { held: true, ...info } : { held: false, name });
    return info ? EXIT.OK : EXIT.NOT_HELD;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    return failed(err);
  }
}

/** NAME and the lease (from --lease or LEASEHOLD_LEASE) for renew and release. */
function leaseArgs(argv: string[], verb: string) {
  const { values, positionals } = parse({
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      lease: { type: "string" },
      semaphore: { type: "boolean" },
      value: { type: "string" },
    },
  });
  if (values.help) return { name: "", lease: "", values };
  const name = oneName(positionals, verb);
  const lease = values.lease ?? process.env.LEASEHOLD_LEASE;
  if (!lease) throw new UsageError(`${verb} needs the grant's lease: --lease L, or LEASEHOLD_LEASE in the environment`);
  return { name, lease, values };
}

export function clientOptions(values: { url?: string | undefined }) {
  return values.url !== undefined ? { url: values.url } : {};
}

export function help(text: string): number {
  process.stdout.write(`${text}\n`);
  return EXIT.OK;
}

/** `export LEASEHOLD_…='…'` lines a shell can eval. */
function shellAssignments(grant: Grant): string {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  return [
    `LEASEHOLD_NAME=${quote(grant.name)}`,
    `LEASEHOLD_TOKEN=${grant.token}`,
    `LEASEHOLD_LEASE=${quote(grant.lease)}`,
    "export LEASEHOLD_NAME LEASEHOLD_TOKEN LEASEHOLD_LEASE",
    "",
  ].join("\n");
}
