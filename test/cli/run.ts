import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const repo = new URL("../..", import.meta.url).pathname;
/** The real command, as `npx leasehold` runs it. */
export const bin = join(repo, "bin", "leasehold.mjs");

export interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Exit code; 128 + signal number when the process itself died of a signal. */
  exited: Promise<number>;
}

/** The environment without the caller's LEASEHOLD_* and ETCD_* settings, plus `env`. */
export function cleanEnv(env: Record<string, string> = {}): Record<string, string> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(
      (e): e is [string, string] => e[1] !== undefined && !e[0].startsWith("LEASEHOLD_") && !e[0].startsWith("ETCD_"),
    ),
  );
  return { ...clean, ...env };
}

export function startCli(args: string[], env: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [bin, ...args], { env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    err += d;
  });
  const exited = new Promise<number>((resolve) => {
    child.once("close", (code, signal) => resolve(code ?? 128 + (signal === "SIGKILL" ? 9 : 15)));
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests inspect arbitrary JSON
  json: any;
}

/**
 * At most two `cli()` runs at a time in a test file, so a batch of them does not starve
 * the timing-sensitive tests running beside it. (`startCli` is not limited.)
 */
let running = 0;
const queue: (() => void)[] = [];
async function slot(): Promise<() => void> {
  if (running >= 2) await new Promise<void>((r) => queue.push(r));
  running++;
  return () => {
    running--;
    queue.shift()?.();
  };
}

/** Runs the command to the end. */
export async function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const free = await slot();
  const run = startCli(args, env);
  const code = await run.exited.finally(free);
  const stdout = run.stdout();
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr: run.stderr(), json };
}

/** A directory holding a `leasehold` command (the real bin), to put first on PATH. */
export function binDir(): string {
  const dir = join(tmpdir(), `leasehold-bin-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir, { recursive: true });
  symlinkSync(bin, join(dir, "leasehold"));
  return dir;
}

/** The non-empty lines of a file the commands append to; none while it does not exist. */
export function fileLines(file: string): string[] {
  try {
    return readFileSync(file, "utf8").trim().split("\n").filter(Boolean);
  } catch {
    return [];
  }
}
