import pino from "pino";
import type { Logger } from "../http/logger.js";

/** Structured JSON logs on Node (pino). Fields are what callers pass: never secrets. */
export function pinoLogger(level: string, destination?: { write(line: string): void }): Logger {
  const base = pino(
    { level, base: { service: "leasehold" }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ? { write: (line: string) => destination.write(line.trimEnd()) } : undefined,
  );
  return {
    infoEnabled: base.isLevelEnabled("info"),
    info: (msg, fields) => base.info(fields ?? {}, msg),
    warn: (msg, fields) => base.warn(fields ?? {}, msg),
    error: (msg, fields) => base.error(fields ?? {}, msg),
  };
}
