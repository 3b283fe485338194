/**
 * Structured JSON log lines. Callers pass only fields that are safe to log: never a
 * lease handle, an API key, or a URL with its query string (it may carry `?lease=`).
 */
export interface Logger {
  /** Whether `info` lines are written (so callers can skip building their fields). */
  readonly infoEnabled: boolean;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function jsonLogger(write: (line: string) => void = (l) => console.log(l), level = "info"): Logger {
  const order = ["debug", "info", "warn", "error", "silent"];
  const min = Math.max(0, order.indexOf(level));
  const emit = (lvl: string) => (msg: string, fields?: Record<string, unknown>) => {
    if (order.indexOf(lvl) < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }));
  };
  return { infoEnabled: min <= 1, info: emit("info"), warn: emit("warn"), error: emit("error") };
}
