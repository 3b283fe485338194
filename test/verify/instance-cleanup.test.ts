import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { until } from "../support/http.js";

const tsx = new URL("../../node_modules/.bin/tsx", import.meta.url).pathname;
const child = new URL("./fixtures/instance-child.ts", import.meta.url).pathname;

const running = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// Service instances run in process groups of their own, out of reach of a Ctrl-C of the
// checker: they must end when the checker does (they once outlived a SIGINT of a long run).
describe("verify instances end with the checker", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`on ${signal}`, { timeout: 60_000 }, async () => {
      const proc = spawn(tsx, [child], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      proc.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
      });
      const exited = new Promise<void>((r) => proc.once("exit", () => r()));
      await until(() => /^\d+\n/.test(out), "the instance's PID", 45_000);
      const pid = Number(out.trim());
      expect(running(pid)).toBe(true);
      proc.kill(signal);
      await exited;
      await until(() => !running(pid), "the instance to end with the checker", 10_000);
    });
  }
});
