import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import type { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { warn } from "./args.js";

/**
 * Sends `signal` (0: none, only the check) to every process in the group `pgid`; false
 * once the group has no process left.
 *
 * Signalling a group by number is safe from reuse while the group has a member: Linux
 * (like other Unixes) does not hand out a process ID that is still some group's ID, and
 * it hands out IDs cyclically, so an emptied group's number comes back only after the
 * whole PID space has been used up.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    // EPERM: members remain that we may not signal (a setuid program it started).
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether the group `pgid` still has a process that can run. A process that has exited
 * stays in its group as a zombie until its parent (for an orphan, PID 1) reaps it, and
 * some container inits reap only every few seconds or never; on Linux /proc tells the
 * zombies apart, elsewhere they count as running.
 */
export function groupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  if (process.platform !== "linux") return true;
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return true;
  }
  let seen = false;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited since the listing
    }
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) !== pgid) continue;
    if (state !== "Z" && state !== "X") return true;
    seen = true;
  }
  // Members kill() found but /proc does not show (hidden by hidepid): assume they run.
  return !seen;
}

/**
 * The watchdog's script. It reads the job's group ID from the pipe, then waits: a second
 * line means the job ended normally (exit quietly); end of input without one means the
 * process that started it died (a SIGKILL it could not catch): SIGTERM the group (with
 * SIGCONT, in case it was stopped), poll until it is gone, SIGKILL it after $1 tenths of a
 * second. Polling (rather than one long sleep) keeps the last signal from landing on a
 * group number that was freed during the grace period.
 */
const WATCHDOG = `# leasehold exec: stops the job if leasehold dies
IFS= read -r pgid || exit 0
IFS= read -r line && exit 0
kill -s TERM -- "-$pgid" 2>/dev/null || exit 0
kill -s CONT -- "-$pgid" 2>/dev/null
tick=0.1 left=$1
sleep 0.1 2>/dev/null || { tick=1 left=$2; }
while kill -s 0 -- "-$pgid" 2>/dev/null; do
  if [ "$left" -le 0 ]; then kill -s KILL -- "-$pgid" 2>/dev/null; exit 0; fi
  sleep $tick
  left=$((left - 1))
done
`;

export interface Watchdog {
  /** Watch the group `pgid` from now on; `then` once the watchdog is sure to have been told. */
  watch(pgid: number, then: () => void): void;
  /** The job ended normally (or never started): the watchdog exits without signalling. */
  done(): void;
}

/**
 * Starts a watchdog that stops a job's process group, as `exec` does on a lost lock,
 * if this process dies without saying the job is done: Node cannot ask the kernel to
 * signal its children when it dies (Linux's PR_SET_PDEATHSIG), but the end of a pipe is
 * seen by its reader whatever way the writer died. The watchdog runs in a session of its
 * own, so signals meant for this process's group (Ctrl-C at a terminal) do not reach it,
 * and holds none of this process's stdio, so a pipe reading our output sees its end.
 * Start it before the job, so that the job does not inherit the pipe (Node's pipes are
 * close-on-exec, and the job is started afterwards).
 */
export function startWatchdog(graceSeconds: number): Watchdog {
  const tenths = Math.ceil(graceSeconds * 10);
  const proc = spawn(
    "/bin/sh",
    ["-c", WATCHDOG, "leasehold-watchdog", String(tenths), String(Math.ceil(tenths / 10))],
    {
      detached: true,
      stdio: ["pipe", "ignore", "ignore"],
    },
  );
  proc.unref();
  proc.once("error", (err) => warn(`no watchdog (${err.message}): if leasehold is killed, the command keeps running`));
  const pipe = proc.stdin;
  pipe?.on("error", () => {}); // the watchdog is gone: nothing to tell it
  unref(pipe);
  let watching = false;
  let ended = false;
  return {
    watch(pgid, then) {
      if (ended || watching || !pipe) return then();
      watching = true;
      // Once written into the pipe, it is read before the end of input, however we die.
      pipe.write(`${pgid}\n`, () => then());
    },
    done() {
      if (ended) return;
      ended = true;
      // Nothing watched: the end of input alone sends it away.
      pipe?.end(watching ? "done\n" : undefined);
    },
  };
}

/** Process groups and sessions are POSIX: on Windows the command is signalled alone. */
const GROUPS = process.platform !== "win32";

/**
 * Waits for the go on fd 3, closes it, and becomes the command ($0 names us in the
 * shell's own "not found" and "Permission denied" messages, exit 127 and 126). (Where
 * /bin/sh is bash, a command whose name starts with "-" is read as an option of exec.)
 */
const GATE = 'IFS= read -r go <&3 || exit 1; exec "$@" 3<&-';

/** Lets the process exit with `stream` open (we end it; an exit ends it anyway). */
function unref(stream: unknown): void {
  (stream as { unref?: () => void } | null)?.unref?.();
}

/**
 * A command run as a job: in a session (hence a process group) of its own, so that it
 * and everything it starts can be signalled together, watched by a watchdog that stops
 * the group should this process die first.
 */
export class Job {
  readonly proc: ChildProcess;
  readonly #pgid: number | undefined;
  readonly #graceMs: number;
  readonly #killBy: () => number;
  readonly #watchdog: Watchdog | undefined;
  #suspended = false;
  /** When stop() sent SIGTERM; undefined until then. */
  #termAt: number | undefined;
  /** When SIGKILL follows; undefined until stop(). */
  #killAt: number | undefined;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  #drained = false;

  /**
   * Runs `cmd` in a session of its own (Node's `detached`), hence a group of its own,
   * always, at a terminal too: a lost lock must stop the whole job wherever it runs, and
   * what one tries by hand should behave as it will under cron. Only a new group, in our
   * session, would be a background group of our terminal, and reading the terminal would
   * stop it (SIGTTIN). In a session of its own the terminal is not its controlling
   * terminal: it reads and writes it through the inherited stdio as before, and the keys
   * that signal the terminal's foreground group (Ctrl-C, Ctrl-\, Ctrl-Z) and resizes
   * reach us, who pass them on. The cost: a program that opens /dev/tty itself (sudo's or
   * ssh's password prompt) finds none.
   *
   * The job's group ID is its first process's ID, known only once it runs; so that the
   * watchdog knows it before `cmd` can start anything, that process is a shell that waits
   * at a gate (fd 3) until the watchdog has been told, then becomes `cmd` (exec, same
   * process). If we die first, the gate reads end of input and `cmd` never runs.
   *
   * `killBy` (epoch ms, read again whenever it matters, since a renewed lock moves it
   * on) is when the group must be dead: SIGKILL never waits past it for the grace period.
   */
  constructor(
    cmd: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    graceSeconds: number,
    killBy: () => number = () => Number.POSITIVE_INFINITY,
  ) {
    this.#graceMs = graceSeconds * 1000;
    this.#killBy = killBy;
    if (!GROUPS) {
      this.proc = spawn(cmd, args, { stdio: "inherit", env });
      return;
    }
    this.#watchdog = startWatchdog(graceSeconds);
    this.proc = spawn("/bin/sh", ["-c", GATE, "leasehold exec", cmd, ...args], {
      stdio: ["inherit", "inherit", "inherit", "pipe"],
      env,
      detached: true,
    });
    this.#pgid = this.proc.pid;
    const gate = this.proc.stdio[3] as Writable | null;
    gate?.on("error", () => {}); // the job is gone already
    unref(gate);
    if (this.#pgid === undefined) this.#watchdog.done();
    else this.#watchdog.watch(this.#pgid, () => gate?.end("go\n"));
  }

  /** Sends `signal` to the whole group, until drain() has seen it end. */
  signal(signal: NodeJS.Signals): void {
    if (this.#drained) return; // its number may be another group's one day
    if (this.#pgid === undefined) this.proc.kill(signal);
    else signalGroup(this.#pgid, signal);
  }

  get stopping(): boolean {
    return this.#termAt !== undefined;
  }

  /** SIGTERM to the group, SIGKILL after the grace period or at `killBy`, whichever comes first; once. */
  stop(): void {
    if (this.#termAt !== undefined) return;
    this.#termAt = Date.now();
    this.signal("SIGTERM");
    // A stopped process acts on SIGTERM only once continued.
    this.resume();
    this.#armKill();
  }

  /** Arms SIGKILL for the earlier of the grace period's end and `killBy`; at once when that has passed. */
  #armKill(): void {
    this.#killAt = Math.min((this.#termAt ?? Date.now()) + this.#graceMs, this.#killBy());
    const wait = this.#killAt - Date.now();
    // On time, a timer may fire a millisecond early: SIGKILL then rather than re-arm.
    if (wait <= 1) this.signal("SIGKILL");
    // Rechecked when it fires: `killBy` may have moved on meanwhile, never back.
    else this.#killTimer = setTimeout(() => this.#armKill(), wait);
  }

  /** Stops (SIGSTOP) the group, as a terminal's Ctrl-Z would have if it were in the foreground. */
  suspend(): void {
    if (this.#pgid === undefined) return;
    this.#suspended = true;
    this.signal("SIGSTOP");
  }

  resume(): void {
    if (!this.#suspended) return;
    this.#suspended = false;
    this.signal("SIGCONT");
  }

  /** Whether processes the command started still run in its group (after it exited). */
  get leftovers(): boolean {
    return this.#pgid !== undefined && groupAlive(this.#pgid);
  }

  /**
   * Once the command has exited: stop() what it left running in its group and wait for
   * it to end, then let the watchdog go. False when something outlived SIGKILL by more
   * than a moment (a setuid program we may not signal, a process stuck in the kernel):
   * waiting longer would not help.
   */
  async drain(): Promise<boolean> {
    if (this.leftovers) {
      this.stop();
      while (this.leftovers && Date.now() < (this.#killAt ?? 0) + 2_000) await sleep(50);
    }
    clearTimeout(this.#killTimer);
    this.#watchdog?.done();
    const gone = !this.leftovers;
    this.#drained = true;
    return gone;
  }
}
