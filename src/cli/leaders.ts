import { hostname } from "node:os";
import { createClient } from "../client/index.js";
import { COMMON_HELP, COMMON_OPTIONS, EXIT, failed, parse, printJson, seconds, UsageError, warn } from "./args.js";
import { nameAndCommand, splitCommand, supervise } from "./exec.js";
import { EXIT_CODES_HELP } from "./exit-codes.js";
import { clientOptions, help } from "./locks.js";

/** `watch` (the event stream, one JSON line per event) and `elect` (run a command while leader). */

export const WATCH_HELP = `Usage: leasehold watch [PREFIX] [--name NAME] [--kind lock|semaphore] [--after ID]

Prints every change of the holders of names under PREFIX (default: every name the API
key may see) as it happens, one JSON line per event, until interrupted:
  {"type":"held","id","revision","kind","name","token","owner","value","ttl"}
      a new holder (token: its fencing token; ttl: the TTL it was given), or a holder
      that published a new value (same token)
  {"type":"free","id","revision","kind","name","token"}
      the grant with that token ended (released, expired or forced)
  {"type":"reset","id","revision","reason","index"}
      start over: a "held" line for every current holder follows
It starts with a reset and the current holders. A dropped connection is reopened and
resumes after the last line printed: no event is lost or printed twice (a reset says
the service could not resume and starts over).

  --name NAME      only the lock (or semaphore) NAME
  --kind K         only locks (lock) or only semaphores (semaphore)
  --after ID       resume after the event with this "id" (from an earlier watch)
  --retry S        give up after S seconds without reaching the service (default: never)
  --quiet          say nothing on stderr when reconnecting
${COMMON_HELP}

Exit: 0 when stopped (SIGINT, SIGTERM, or the reader of its output went away) · 64 bad
arguments or refused as invalid · 75 service unreachable for --retry S · 77 not allowed`;

export const ELECT_HELP = `Usage: leasehold elect NAME [--value V] [options] -- CMD [ARGS…]

Leader election: campaigns for the lock NAME (waits for it, again and again, as long as
it takes), publishing V as the leader's value, and once elected runs CMD as exec does:
LEASEHOLD_NAME, LEASEHOLD_TOKEN and LEASEHOLD_LEASE in its environment, renewals every
ttl/3, and on CMD's end it resigns (releases NAME) and exits with CMD's exit code. The
token is the leader's epoch: every new leader's is larger. Run the same line on every
member: one runs CMD at a time; when it ends, dies or loses its lease, the next takes over.

If the leadership is lost while CMD runs (a renew answered 410, or renewals fail until
the lease could expire), CMD's group gets SIGTERM, then SIGKILL, as exec does (see
leasehold exec --help): dead before the lease can have expired. leasehold exits 74. CMD can publish a new value (proclaim) with
  leasehold renew "$LEASEHOLD_NAME" --value V2
Everyone can follow the leader with \`leasehold watch --name NAME\` or \`leasehold status NAME\`.
Signals are handled as by exec (see leasehold exec --help); before CMD starts, SIGINT or
SIGTERM ends the campaign.

  --value V        the value to publish while leader, at most 4,096 bytes (default:
                   this host's name)
  --ttl S          lease TTL in seconds (service default 30): about how long a leader
                   that died keeps the others waiting
  --owner X        free text shown to others (default: this host's name)
  --lock-delay S   0–60 whole seconds: when a leader ends without resigning (it died,
                   hung, or lost its lease), nobody is elected for S more seconds
  --grace S        SIGKILL CMD's group S seconds after its SIGTERM (default 10)
  --retry S        keep retrying an unavailable service for S seconds per request
                   (default 10); the campaign itself goes on
  --quiet          say nothing while campaigning
${COMMON_HELP}

Example (one scheduler at a time among three hosts, each running this line):
  leasehold elect scheduler --value "$(hostname):8080" --ttl 15 -- ./scheduler

${EXIT_CODES_HELP}`;

export async function watchVerb(argv: string[]): Promise<number> {
  const { values, positionals } = parse({
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      name: { type: "string" },
      kind: { type: "string" },
      after: { type: "string" },
      retry: { type: "string" },
      quiet: { type: "boolean", short: "q" },
    },
  });
  if (values.help) return help(WATCH_HELP);
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])}`);
  const [prefix] = positionals;
  if (prefix !== undefined && values.name !== undefined) throw new UsageError("give either PREFIX or --name, not both");
  const kind = values.kind;
  if (kind !== undefined && kind !== "lock" && kind !== "semaphore") {
    throw new UsageError("--kind must be lock or semaphore");
  }
  const retry = seconds(values.retry, "retry");

  // SIGINT/SIGTERM, or a closed pipe (`watch | head -3`), end the watch normally.
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const onOutputError = (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.stdout.on("error", onOutputError);
  const stream = createClient(clientOptions(values)).observe(values.name ?? { prefix: prefix ?? "" }, {
    signal: stop.signal,
    ...(kind !== undefined ? { kind } : {}),
    ...(values.after !== undefined ? { after: values.after } : {}),
    ...(retry !== undefined ? { retryMs: retry * 1000 } : {}),
    onRetry: (err, delayMs) => {
      if (!values.quiet) warn(`event stream: ${err.message}; reconnecting in ${Math.round(delayMs)} ms`);
    },
  });
  try {
    for await (const event of stream) {
      if (stop.signal.aborted) break;
      printJson(event);
    }
    return EXIT.OK;
  } catch (err) {
    return failed(err, { json: false });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.stdout.off("error", onOutputError);
  }
}

export async function electVerb(argv: string[]): Promise<number> {
  const { own, command } = splitCommand(argv);
  const { values, positionals } = parse({
    args: own,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      value: { type: "string" },
      ttl: { type: "string" },
      owner: { type: "string" },
      grace: { type: "string" },
      retry: { type: "string" },
      "lock-delay": { type: "string" },
      quiet: { type: "boolean", short: "q" },
    },
  });
  if (values.help) return help(ELECT_HELP);
  const { name, cmd, args } = nameAndCommand("elect", positionals, command);
  const ttl = seconds(values.ttl, "ttl", { integer: true, min: 1 });
  const grace = seconds(values.grace, "grace") ?? 10;
  const retryMs = (seconds(values.retry, "retry") ?? 10) * 1000;
  const lockDelay = seconds(values["lock-delay"], "lock-delay", { integer: true });
  const value = values.value ?? hostname();
  const client = createClient(clientOptions(values));
  if (!values.quiet) warn(`campaigning for ${name}; ${cmd} runs once elected`);
  return supervise({ cmd, args, grace, held: `the leadership of ${name}` }, (run, signal) =>
    client.campaign(name, value, (_signal, leader) => run(leader), {
      owner: values.owner ?? hostname(),
      retryMs,
      signal,
      ...(ttl !== undefined ? { ttl } : {}),
      ...(lockDelay !== undefined ? { lockDelay } : {}),
    }),
  );
}
