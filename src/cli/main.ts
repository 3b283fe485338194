import { readFileSync } from "node:fs";
import { COMMON_HELP, EXIT, UsageError, warn } from "./args.js";
import { EXEC_HELP, execVerb } from "./exec.js";
import { EXIT_CODES_HELP } from "./exit-codes.js";
import { FENCE_HELP, fenceVerb, STATE_HELP, stateVerb } from "./fences.js";
import { ELECT_HELP, electVerb, WATCH_HELP, watchVerb } from "./leaders.js";
import { acquireVerb, help, releaseVerb, renewVerb, statusVerb } from "./locks.js";

/** The `leasehold` command: bin/leasehold.mjs runs it (compiled, dist/cli/main.js, where installed). */

export const HELP = `leasehold: named locks and semaphores over HTTP, on etcd

Usage:
  leasehold serve                               run the service (the same as npm start)
  leasehold exec NAME [options] -- CMD [ARGS…]  run CMD while holding the lock NAME
                                                (--limit N: a permit of a semaphore;
                                                --queue: wait in line as long as it takes)
  leasehold acquire NAME [options]              take the lock; prints the grant as JSON
  leasehold renew NAME [--lease L]              keep it; prints the renewed grant
  leasehold release NAME [--lease L]            give it back
  leasehold status [NAME]                       who holds NAME (or list every held lock;
                                                --semaphore: semaphores)
  leasehold watch [PREFIX]                      print every change of holders, one JSON
                                                line per event, as it happens
  leasehold elect NAME [--value V] -- CMD       leader election: run CMD while leader of
                                                NAME, publishing V
  leasehold fence NAME [TOKEN]                  is TOKEN (default: LEASEHOLD_TOKEN) the
                                                current holder's? exit 0 yes, 74 no
  leasehold state NAME [VALUE]                  read the lock's guarded state, or write it
                                                as its holder (--lease L, or LEASEHOLD_LEASE)
  leasehold VERB --help                         the options of one verb

Every verb but serve finds the service at --url, else LEASEHOLD_URL, else
http://127.0.0.1:8080, and sends LEASEHOLD_API_KEY (when set) as a bearer token.
Results are JSON on stdout; messages go to stderr.

${EXIT_CODES_HELP}`;

const SERVE_HELP = `Usage: leasehold serve

Runs the leasehold service, exactly as \`npm start\`: configured by the environment
(ETCD_ENDPOINTS, PORT, LEASEHOLD_API_KEYS, …; see the README). Without ETCD_ENDPOINTS it
is development mode and starts a local etcd. Stops gracefully on SIGTERM/SIGINT.
  -h, --help       this help`;

const VERBS: Record<string, (argv: string[]) => Promise<number | undefined>> = {
  serve: serveVerb,
  exec: execVerb,
  acquire: acquireVerb,
  renew: renewVerb,
  release: releaseVerb,
  status: statusVerb,
  watch: watchVerb,
  elect: electVerb,
  fence: fenceVerb,
  state: stateVerb,
};

/** Runs one command line and exits with its code (`serve` keeps running). */
export async function cli(argv: string[]): Promise<void> {
  const code = await run(argv);
  if (code === undefined) return;
  // Let what was written reach a pipe before exiting.
  process.stdout.write("", () => process.exit(code));
}

export async function run(argv: string[]): Promise<number | undefined> {
  // `--url U` may also come before the verb.
  const lead = argv[0] === "--url" ? 2 : argv[0]?.startsWith("--url=") ? 1 : 0;
  const [verb, ...after] = argv.slice(lead);
  const rest = [...argv.slice(0, lead), ...after];
  if (verb === undefined || verb === "-h" || verb === "--help" || verb === "help") return help(HELP);
  if (verb === "--version" || verb === "-v") return help(version());
  const handler = VERBS[verb];
  if (!handler) {
    warn(`unknown command ${JSON.stringify(verb)}; see leasehold --help`);
    return EXIT.USAGE;
  }
  try {
    return await handler(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      warn(`${err.message} (see leasehold ${verb} --help)`);
      return EXIT.USAGE;
    }
    warn(err instanceof Error ? (err.stack ?? err.message) : String(err));
    return EXIT.ERROR;
  }
}

async function serveVerb(argv: string[]): Promise<number | undefined> {
  if (argv.includes("-h") || argv.includes("--help")) return help(SERVE_HELP);
  if (argv.length > 0) throw new UsageError(`serve takes no arguments (configure it with the environment)`);
  const { main } = await import("../node/main.js");
  await main(process.env);
  return undefined;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

// The help texts of verbs defined elsewhere, for tests and docs.
export { COMMON_HELP, ELECT_HELP, EXEC_HELP, FENCE_HELP, STATE_HELP, WATCH_HELP };
