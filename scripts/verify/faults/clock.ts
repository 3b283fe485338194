import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A service process's clocks, skewed with libfaketime (Debian: `apt-get install
 * faketime`), preloaded into it: `offset` moves its wall clock (`Date.now()`), `rate`
 * makes its clocks run faster or slower than real time, and `jumps` lets the checker
 * set a new wall-clock offset while it runs (`setOffset`), as an NTP step or a VM
 * resumed from a snapshot would.
 */
export interface Skew {
  /** Wall-clock offset at the start, in seconds (may be negative). */
  offsetS: number;
  /** How fast its clocks run (1 = real time); with `timers`, the monotonic clock too. */
  rate?: number;
  /** The monotonic clock (every timer, every timeout of the service) runs at `rate` too. */
  timers?: boolean;
  /** The wall-clock offset may be changed while it runs (`setOffset`). */
  jumps?: boolean;
}

/** The preloaded library: the multi-threaded build (Node runs several threads). */
export function libfaketime(): string {
  const fromEnv = process.env.LIBFAKETIME;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`LIBFAKETIME=${fromEnv} does not exist`);
    return fromEnv;
  }
  const dirs = ["/usr/lib/faketime", "/usr/local/lib/faketime"];
  try {
    for (const d of readdirSync("/usr/lib")) dirs.push(join("/usr/lib", d, "faketime"));
  } catch {}
  for (const d of dirs) {
    for (const f of ["libfaketimeMT.so.1", "libfaketime.so.1"]) {
      if (existsSync(join(d, f))) return join(d, f);
    }
  }
  throw new Error(
    "libfaketime was not found (Debian/Ubuntu: `apt-get install -y faketime`; or set LIBFAKETIME to libfaketimeMT.so.1)",
  );
}

let dir: string | undefined;
const files = () => {
  if (!dir) {
    const made = mkdtempSync(join(tmpdir(), "leasehold-verify-clock-"));
    dir = made;
    process.on("exit", () => rmSync(made, { recursive: true, force: true }));
  }
  return dir;
};

/** libfaketime's spec of an offset and a rate: "+90 x1.4" (seconds; an explicit offset is required). */
const spec = (offsetS: number, rate = 1) =>
  `${offsetS < 0 ? "-" : "+"}${Math.abs(Math.round(offsetS))}${rate === 1 ? "" : ` x${rate}`}`;

/** The environment that runs a process with `skew`, and how to change its offset later. */
export function skewed(skew: Skew): { env: Record<string, string>; setOffset(offsetS: number): void } {
  const env: Record<string, string> = { LD_PRELOAD: libfaketime() };
  if (!skew.timers) env.FAKETIME_DONT_FAKE_MONOTONIC = "1";
  if (!skew.jumps) {
    env.FAKETIME = spec(skew.offsetS, skew.rate);
    return {
      env,
      setOffset() {
        throw new Error("this clock was not made to jump");
      },
    };
  }
  // Read again every second: a file read per clock call would slow the service down.
  const file = join(files(), `${Math.random().toString(36).slice(2)}.rc`);
  writeFileSync(file, `${spec(skew.offsetS, skew.rate)}\n`);
  env.FAKETIME_TIMESTAMP_FILE = file;
  env.FAKETIME_CACHE_DURATION = "1";
  return {
    env,
    setOffset(offsetS) {
      writeFileSync(file, `${spec(offsetS, skew.rate)}\n`);
    },
  };
}

/** How far a service's wall clock is from ours (s), from the `Date` header of its answer. */
export async function observedOffsetS(url: string): Promise<number | undefined> {
  const before = Date.now();
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
    await res.arrayBuffer();
    const date = res.headers.get("date");
    if (!date) return undefined;
    // The header has whole seconds: compare with the middle of the exchange.
    return (Date.parse(date) - (before + Date.now()) / 2) / 1000;
  } catch {
    return undefined;
  }
}
