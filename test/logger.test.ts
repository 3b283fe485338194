import { describe, expect, it } from "vitest";
import { jsonLogger } from "../src/http/logger.js";
import { pinoLogger } from "../src/node/logger.js";

describe("loggers below info", () => {
  for (const [kind, make] of [
    ["json", (level: string, out: string[]) => jsonLogger((l) => out.push(l), level)],
    ["pino", (level: string, out: string[]) => pinoLogger(level, { write: (l) => out.push(l) })],
  ] as const) {
    it(`${kind}: at warn, info is off and says so (request logs skip building their fields)`, () => {
      const out: string[] = [];
      const log = make("warn", out);
      expect(log.infoEnabled).toBe(false);
      log.info("request", { a: 1 });
      log.warn("careful");
      expect(out).toHaveLength(1);
      expect(make("info", []).infoEnabled).toBe(true);
    });
  }
});
