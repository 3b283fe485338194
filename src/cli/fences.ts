import { createClient } from "../client/index.js";
import { COMMON_HELP, COMMON_OPTIONS, EXIT, failed, parse, printJson, UsageError } from "./args.js";
import { clientOptions, help } from "./locks.js";

/** `fence` (is a token current?) and `state` (read or write the guarded state): one call each, JSON on stdout. */

export const FENCE_HELP = `Usage: leasehold fence NAME [TOKEN] [--semaphore]

Asks the service whether TOKEN (default: LEASEHOLD_TOKEN) is the fencing token of the
lock NAME's current holder, read linearizably. Prints {"name","token","current":true} and
exits 0, or {"name","token","current":false} and exits 74 when it is not (its grant
ended, or it never was NAME's). For a resource that can't compare tokens itself (an
external API, a file share): ask just before each write, and write only on exit 0 (any
other exit, 75 for an unreachable service too, means don't). Under leasehold exec,
LEASEHOLD_NAME and LEASEHOLD_TOKEN are the job's own:
  leasehold fence "$LEASEHOLD_NAME" && upload ./report.csv

  --semaphore      TOKEN is a permit's of the semaphore NAME (any current permit's is current)
${COMMON_HELP}

Exit: 0 current · 74 not current · 64 bad arguments · 75 service unavailable · 77 not allowed`;

export const STATE_HELP = `Usage: leasehold state NAME [--semaphore]
       leasehold state NAME VALUE [--lease L] [--semaphore]

The guarded state of the lock NAME: a value that outlives its grants (a cron job's last
successful run, a leader's checkpoint), written only by a current holder.

Without VALUE: prints {"found":true,"name","value","token","revision","updatedAt"}
("token": the fencing token of the grant that wrote it) and exits 0, or
{"found":false,"name"} and exits 3 when no holder has written one.

With VALUE: writes it (at most 65,536 bytes) in the same etcd transaction that checks
the lease's grant is still NAME's current one, and prints {"name","value","token",
"revision","updatedAt"}. A lease whose grant has ended (expired, released, forced) is
refused, exit 74, and nothing is written: a holder paused past its TTL can never
overwrite what the next holder wrote. Under leasehold exec the lease is the job's own:
  leasehold exec cron:job9 -- sh -c './job9.sh && leasehold state cron:job9 "ok $(date -u +%FT%TZ)"'

  --lease L        with VALUE: the grant's lease (default: LEASEHOLD_LEASE)
  --semaphore      the semaphore NAME's one state (the lease of any current permit writes it)
${COMMON_HELP}

Exit: 0 read or written · 3 none written yet · 74 the lease's grant is not current
(nothing written) · 64 bad arguments or a value over 65,536 bytes · 75 · 77`;

export async function fenceVerb(argv: string[]): Promise<number> {
  const { values, positionals } = parse({
    args: argv,
    allowPositionals: true,
    options: { ...COMMON_OPTIONS, semaphore: { type: "boolean" } },
  });
  if (values.help) return help(FENCE_HELP);
  const [name, given, ...rest] = positionals;
  if (name === undefined) throw new UsageError("fence needs a lock NAME");
  if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  const raw = given ?? process.env.LEASEHOLD_TOKEN;
  if (raw === undefined) throw new UsageError("fence needs the TOKEN to check, or LEASEHOLD_TOKEN in the environment");
  if (!/^\d{1,15}$/.test(raw))
    throw new UsageError(`TOKEN must be a whole number (a fencing token), got ${JSON.stringify(raw)}`);
  const token = Number(raw);
  try {
    const client = createClient(clientOptions(values));
    const current = values.semaphore ? await client.semaphore(name).fence(token) : await client.fence(name, token);
    printJson({ name, token, current });
    return current ? EXIT.OK : EXIT.LOST;
  } catch (err) {
    return failed(err);
  }
}

export async function stateVerb(argv: string[]): Promise<number> {
  const { values, positionals } = parse({
    args: argv,
    allowPositionals: true,
    options: { ...COMMON_OPTIONS, lease: { type: "string" }, semaphore: { type: "boolean" } },
  });
  if (values.help) return help(STATE_HELP);
  const [name, value, ...rest] = positionals;
  if (name === undefined) throw new UsageError("state needs a lock NAME");
  if (rest.length > 0)
    throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])} (quote a VALUE with spaces)`);
  const client = createClient(clientOptions(values));
  const semaphore = values.semaphore ? client.semaphore(name) : undefined;
  if (value === undefined) {
    if (values.lease !== undefined) throw new UsageError("--lease goes with a VALUE to write; reading needs none");
    try {
      const state = semaphore ? await semaphore.readState() : await client.readState(name);
      printJson(state ? { found: true, name, ...state } : { found: false, name });
      return state ? EXIT.OK : EXIT.NOT_HELD;
    } catch (err) {
      return failed(err);
    }
  }
  const lease = values.lease ?? process.env.LEASEHOLD_LEASE;
  if (!lease) throw new UsageError("writing needs the grant's lease: --lease L, or LEASEHOLD_LEASE in the environment");
  try {
    const state = semaphore ? await semaphore.writeState(lease, value) : await client.writeState(name, lease, value);
    printJson({ name, ...state });
    return EXIT.OK;
  } catch (err) {
    return failed(err);
  }
}
