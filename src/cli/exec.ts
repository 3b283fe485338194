import { constants } from "node:os";
import { createClient, type HeldLock, LeaseholdError } from "../client/index.js";
import {
  ACQUIRE_FLAGS,
  acquireOptions,
  COMMON_HELP,
  COMMON_OPTIONS,
  EXIT,
  failed,
  parse,
  seconds,
  semaphoreLimit,
  UsageError,
  warn,
} from "./args.js";
import { EXIT_CODES_HELP } from "./exit-codes.js";
import { clientOptions, help } from "./locks.js";
import { Job } from "./process-group.js";

export const EXEC_HELP = `Usage: leasehold exec NAME [--limit N] [--queue] [options] -- CMD [ARGS…]

Runs CMD only while holding the lock NAME: acquires it, runs CMD with LEASEHOLD_NAME,
LEASEHOLD_TOKEN (the fencing token) and LEASEHOLD_LEASE in its environment, renews every
ttl/3 while it runs, releases it when CMD ends, and exits with CMD's exit code. With
--limit N it holds one of the N permits of the semaphore NAME instead (at most N CMDs at
once, everywhere), with a fencing token of its own; "the lock" below is then the permit.

CMD runs in a process group (and session) of its own; everything it starts there is
the job. SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH are passed on to the group.
SIGTSTP (Ctrl-Z) stops the group and leasehold; on SIGCONT the group resumes, or, if
the lease may have run out meanwhile, is stopped as on a lost lock. When CMD exits, what
it left running in the group gets SIGTERM, SIGKILL after --grace, before the lock is
released. If leasehold is killed, even by SIGKILL, a watchdog process stops the group
the same way (SIGKILL after --grace: it does not know the lock's validity). Out of
reach: a process that leaves the group (setsid, a daemon). CMD has no controlling
terminal: it uses the terminal through stdin and stdout, but a program that opens
/dev/tty (a sudo or ssh password prompt) finds none.

If someone else holds the lock (after --wait), CMD is not run: exit 73 (see --held-exit).
With --queue it waits in line instead, served in arrival order, for as long as it takes
(or up to --wait S), and leaves the line if it is interrupted.

The lock is valid until the send time of the last successful renew + ttl − a safety
margin (5 % of ttl for clock-rate differences with etcd's leader, + 0.5 s for
scheduling and the network: 2 s at ttl 30), short of the earliest time its lease can
end. Whenever the lock is lost, CMD's group is dead by the end of its validity:
- a renew answered 410 (the lock is gone): SIGTERM at once, SIGKILL after --grace
  seconds or at the end of validity, whichever comes first;
- renewals get no answer (the service or etcd unreachable): SIGTERM --grace seconds
  before the end of validity, but not before the renewals have failed for a while
  (half the ttl after the last successful one), and SIGKILL at the end of validity
  (if a renew succeeds after the SIGTERM, after --grace within the new validity).
Either way leasehold exits 74 whatever CMD's exit code. With --ttl 30 and the default
--grace 10, a job whose renewals stop answering gets SIGTERM about 18 s and SIGKILL
about 28 s after the last renew that succeeded.

  --ttl S          lease TTL in seconds (service default 30). A crashed host's lock
                   frees itself about this long after its last renew, or later: etcd
                   restarts every lease's countdown when it elects a new leader or
                   restarts. Only the fencing token (LEASEHOLD_TOKEN) is a guarantee
  --limit N        a permit of the semaphore NAME: at most N holders at once (every
                   caller of one semaphore must give the same N)
  --queue          wait in line (first come, first served) as long as it takes, with
                   a ticket renewed by long polls; with --wait S, at most S seconds
  --wait S         wait up to S seconds for the lock (default 0: give up at once)
  --owner X        free text shown to others (default: this host's name)
  --value V        a value to publish while CMD runs (shown by status and watch)
  --lock-delay S   locks only, 0–60 whole seconds: if the lock ends without a release
                   (this host died or hung and its lease expired, or it was forced),
                   nobody gets NAME for S more seconds, time for a stray CMD to stop
                   before the next one starts; a release frees it at once (with
                   --no-release the lock always expires, so the delay always follows)
  --grace S        SIGKILL CMD's group S seconds after its SIGTERM (default 10), or
                   sooner when the lock's validity ends first
  --retry S        keep retrying an unavailable service for S seconds (default 10)
  --held-exit N    exit code when the lock is held (default 73; 0 suits cron)
  --quiet          say nothing when the lock is held (or while waiting in line)
  --no-release     leave the lock to expire one TTL after CMD ends instead of releasing
                   it, so a host whose cron fires a little late does not run CMD again
${COMMON_HELP}

Example (the same line in every host's crontab; one host runs job9 each time):
  */5 * * * * leasehold exec cron:job9 --ttl 120 --held-exit 0 --quiet -- /opt/jobs/job9.sh
Example (a worker pool: at most 4 renders at once across every host, in turn):
  leasehold exec render --limit 4 --queue -- ./render.sh scene.blend

${EXIT_CODES_HELP}`;

/** Passed on to the command's group while it runs; before it starts, they abandon the acquire. */
const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const;

/** How CMD's run ended. */
export type Outcome =
  | { kind: "exited"; code: number | null; signal: NodeJS.Signals | null; lost?: LeaseholdError }
  | { kind: "not-started"; code: number; message: string }
  | { kind: "interrupted" };

/** `VERB NAME [options] -- CMD [ARGS…]`: leasehold's own arguments, and the command's after `--`. */
export function splitCommand(argv: string[]): { own: string[]; command: string[] } {
  const split = argv.indexOf("--");
  return split === -1 ? { own: argv, command: [] } : { own: argv.slice(0, split), command: argv.slice(split + 1) };
}

/** NAME (the one positional before `--`) and CMD with its arguments, checked. */
export function nameAndCommand(verb: string, positionals: string[], command: string[]) {
  const [name, ...extra] = positionals;
  if (name === undefined) throw new UsageError(`${verb} needs a lock NAME`);
  if (extra.length > 0) throw new UsageError(`put -- before the command: leasehold ${verb} ${name} [options] -- CMD`);
  const [cmd, ...args] = command;
  if (cmd === undefined) throw new UsageError(`${verb} needs a command after --`);
  return { name, cmd, args };
}

export async function execVerb(argv: string[]): Promise<number> {
  const { own, command } = splitCommand(argv);
  const { values, positionals } = parse({
    args: own,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      ...ACQUIRE_FLAGS,
      grace: { type: "string" },
      "held-exit": { type: "string" },
      quiet: { type: "boolean", short: "q" },
      "no-release": { type: "boolean" },
      queue: { type: "boolean" },
    },
  });
  if (values.help) return help(EXEC_HELP);
  const { name, cmd, args } = nameAndCommand("exec", positionals, command);
  const options = acquireOptions(values);
  const limit = semaphoreLimit(values.limit);
  // What CMD runs under, for messages.
  const held = limit === undefined ? `the lock ${name}` : `a permit of semaphore ${name}`;
  const grace = seconds(values.grace, "grace") ?? 10;
  const heldExit = values["held-exit"] === undefined ? EXIT.HELD : Number(values["held-exit"]);
  if (!Number.isInteger(heldExit) || heldExit < 0 || heldExit > 255) {
    throw new UsageError("--held-exit must be a whole number from 0 to 255");
  }

  // In line: say so once (a long wait should not look like a hang), never the ticket.
  let told = false;
  const onQueued = (position: number) => {
    if (told || values.quiet) return;
    told = true;
    warn(`waiting in line for ${held} (${position} ahead); ${cmd} runs at its turn`);
  };
  const withOptions = {
    ...options,
    ...(values["no-release"] ? { release: false } : {}),
    // Without --queue no --wait means "don't wait"; with it, "as long as it takes".
    ...(values.queue ? { queue: true, onQueued } : {}),
  };
  const client = createClient(clientOptions(values));
  return supervise(
    { cmd, args, grace, held },
    (run, signal) =>
      limit === undefined
        ? client.withLock(name, run, { ...withOptions, signal })
        : client.withPermit(name, limit, run, { ...withOptions, signal }),
    (err) => {
      if (!(err instanceof LeaseholdError && err.code === "lock-held")) return undefined;
      if (!values.quiet) warn(`${heldMessage(name, err)}; not running ${cmd}`);
      return heldExit;
    },
  );
}

/** CMD, and what it runs under (for messages: "the lock NAME"). */
export interface Supervised {
  cmd: string;
  args: string[];
  /** Seconds from SIGTERM to SIGKILL of CMD's group. */
  grace: number;
  held: string;
}

/**
 * Runs CMD under a lock that `hold` takes and keeps (exec: withLock or withPermit; elect:
 * campaign), passing it `run`, which starts CMD with the lock's environment and settles
 * when CMD and its group are gone. Signals abandon `hold` (through `signal`) before CMD
 * starts and go to CMD's group after; a lost lock stops the group. Returns leasehold's
 * exit code: CMD's own, 74 when the lock was lost, 128+N when interrupted by signal N,
 * `refused(err)` when `hold` fails and that says so, else the code for the error.
 */
export async function supervise(
  { cmd, args, grace, held }: Supervised,
  hold: (run: (lock: HeldLock) => Promise<Outcome>, signal: AbortSignal) => Promise<Outcome>,
  refused: (err: unknown) => number | undefined = () => undefined,
): Promise<number> {
  // Before CMD starts a signal abandons the acquire; once it runs, signals go to its group.
  const starting = new AbortController();
  let job: Job | undefined;
  let interruptedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (job) {
      job.signal(signal);
      return;
    }
    interruptedBy ??= signal;
    starting.abort(new Error(`interrupted by ${signal}`));
  };
  for (const s of FORWARDED) process.on(s, onSignal);

  const run = (lock: HeldLock) =>
    new Promise<Outcome>((resolve) => {
      if (lock.signal.aborted) {
        // A signal arrived, or the lock was lost, between the grant and the start.
        resolve(
          interruptedBy
            ? { kind: "interrupted" }
            : { kind: "not-started", code: EXIT.LOST, message: `lost ${held} before ${cmd} started` },
        );
        return;
      }
      // Whatever the way the job ends, it is dead by the end of the lock's validity.
      const killBy = () => lock.validUntil - KILL_AHEAD_MS;
      const current = new Job(
        cmd,
        args,
        { ...process.env, LEASEHOLD_NAME: lock.name, LEASEHOLD_TOKEN: String(lock.token), LEASEHOLD_LEASE: lock.lease },
        grace,
        killBy,
      );
      job = current;
      let lost: LeaseholdError | undefined;
      let expiring: ReturnType<typeof setTimeout> | undefined;
      const lose = (reason: LeaseholdError, why = `lost ${held} (${reason.message})`) => {
        if (lost) return;
        lost = reason;
        clearTimeout(expiring);
        const left = killBy() - Date.now();
        const end = clockTime(lock.validUntil);
        const kill =
          left <= 0
            ? `SIGKILL now: its validity ended at ${end}`
            : left <= grace * 1000
              ? `SIGKILL by ${end}, when its validity ends`
              : `SIGKILL after ${grace} s`;
        warn(`${why}; stopping ${cmd} (SIGTERM, ${kill})`);
        current.stop();
      };
      // Renewals that get no answer (the service or etcd unreachable) end only at the end
      // of validity: stop the job before that, leaving it --grace to finish.
      const watchRenewals = () => {
        if (lost) return;
        const at = stopAt(lock, grace);
        if (Date.now() < at) {
          expiring = setTimeout(watchRenewals, at - Date.now());
          return;
        }
        const silent = ((Date.now() - lock.renewedAt) / 1000).toFixed(1);
        const reason = new LeaseholdError("lock-expired", `no successful renew of ${held} for ${silent} s`);
        lose(reason, reason.message);
      };
      watchRenewals();
      const onLost = () =>
        lose(
          lock.signal.reason instanceof LeaseholdError
            ? lock.signal.reason
            : new LeaseholdError("lock-lost", String(lock.signal.reason)),
        );
      lock.signal.addEventListener("abort", onLost, { once: true });
      // CMD is not in the terminal's foreground group, so Ctrl-Z (SIGTSTP) reaches only
      // us: stop CMD's group, then ourselves, as the terminal would have. Nothing renews
      // while we are stopped, so on SIGCONT CMD resumes only if the lease can't have run out.
      const onSuspend = () => {
        if (current.stopping) return;
        current.suspend();
        process.kill(process.pid, "SIGSTOP");
      };
      const onContinue = () => {
        if (lost || current.stopping) return;
        if (Date.now() < lock.validUntil) current.resume();
        else lose(new LeaseholdError("lock-expired", `suspended past the lease of ${held}; it may have expired`));
      };
      // A terminal's size changes reach its foreground group (us) alone too.
      const onResize = () => current.signal("SIGWINCH");
      const listeners = [
        ["SIGTSTP", onSuspend],
        ["SIGCONT", onContinue],
        ["SIGWINCH", onResize],
      ] as const;
      if (process.platform !== "win32") for (const [s, f] of listeners) process.on(s, f);
      let finished = false;
      const done = async (outcome: Outcome) => {
        if (finished) return;
        finished = true;
        if (current.leftovers && !lost) {
          warn(`${cmd} ended; stopping what it left running (SIGTERM, SIGKILL after ${grace} s)`);
        }
        // The lock is released only once nothing CMD started still runs.
        if (!(await current.drain())) warn(`processes ${cmd} started outlived SIGKILL; releasing the lock anyway`);
        lock.signal.removeEventListener("abort", onLost);
        clearTimeout(expiring);
        for (const [s, f] of listeners) process.off(s, f);
        resolve(outcome.kind === "exited" && lost ? { ...outcome, lost } : outcome);
      };
      current.proc.once("error", (err: NodeJS.ErrnoException) => {
        const code = err.code === "ENOENT" ? EXIT.NOT_FOUND : EXIT.CANNOT_EXECUTE;
        void done({ kind: "not-started", code, message: `cannot run ${cmd}: ${err.message}` });
      });
      current.proc.once("exit", (code, signal) => void done({ kind: "exited", code, signal }));
    });

  try {
    const outcome = await hold(run, starting.signal);
    if (outcome.kind === "interrupted") return signalExit(interruptedBy ?? "SIGTERM");
    if (outcome.kind === "not-started") {
      warn(outcome.message);
      return outcome.code;
    }
    if (outcome.lost) return EXIT.LOST;
    return outcome.code ?? signalExit(outcome.signal ?? "SIGKILL");
  } catch (err) {
    if (interruptedBy) return signalExit(interruptedBy);
    return refused(err) ?? failed(err, { json: false });
  } finally {
    for (const s of FORWARDED) process.off(s, onSignal);
  }
}

/** How far ahead of the end of validity SIGKILL is sent, so that it has landed by then on a busy host. */
const KILL_AHEAD_MS = 100;

/**
 * When a job whose lock gets no successful renew is sent SIGTERM: `grace` s before
 * SIGKILL at the end of validity, but not before renewals have really failed (the renew
 * due at a third of the ttl has had until half of it) — a job that needs most of the
 * ttl to stop gets what is left. Each successful renew moves it on.
 */
export function stopAt(lock: Pick<HeldLock, "validUntil" | "renewedAt" | "grant">, grace: number): number {
  const killAt = lock.validUntil - KILL_AHEAD_MS;
  return Math.min(killAt, Math.max(killAt - grace * 1000, lock.renewedAt + (lock.grant.ttl * 1000) / 2));
}

/** An epoch-ms time of this host's clock, for messages. */
const clockTime = (ms: number) => new Date(ms).toISOString();

/** The shell's convention for a process ended by a signal: 128 + its number. */
function signalExit(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 15);
}

function heldMessage(name: string, err: LeaseholdError): string {
  if (err.reason === "lock-delay") {
    const left = err.retryAfter === undefined ? "" : ` for about ${err.retryAfter} s more`;
    return `lock ${name} is held back by its lock-delay${left} (its last holder ended without releasing it)`;
  }
  const holder = err.problem?.holder;
  if (!holder) return err.message;
  const who = holder.owner === undefined ? "another holder" : JSON.stringify(holder.owner);
  const left = Math.max(0, Math.round((Date.parse(holder.expiresAt) - Date.now()) / 1000));
  return `lock ${name} is held by ${who} (token ${holder.token}, expires in about ${left} s)`;
}
