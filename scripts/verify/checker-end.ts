/**
 * Clean-ups that must run however the checker ends: when it exits, and on SIGINT or
 * SIGTERM, which without a listener end a process without its "exit" event. What the
 * checker starts in process groups or network namespaces of its own is out of reach of
 * its Ctrl-C, so it is ended here. Returns the function that removes the clean-up (once
 * its resource is gone by itself).
 */
const cleanups = new Set<() => void>();
const runAll = () => {
  for (const c of cleanups) c();
};
const onSignal = (signal: NodeJS.Signals) => process.exit(signal === "SIGINT" ? 130 : 143);

export function atCheckerEnd(cleanup: () => void): () => void {
  if (cleanups.size === 0) {
    process.on("exit", runAll);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  }
  cleanups.add(cleanup);
  return () => {
    if (!cleanups.delete(cleanup) || cleanups.size > 0) return;
    process.off("exit", runAll);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}
