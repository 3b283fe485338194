/**
 * A signal that fires at `deadline` (ms since the epoch) or when any of the other
 * signals fires, and a `done` to release its timer and listeners. (Built by hand: on
 * Node 20 a signal from AbortSignal.any over AbortSignal.timeout can be garbage-collected
 * before it fires.)
 */
export function untilDeadline(deadline: number, ...others: (AbortSignal | undefined)[]) {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const timer = setTimeout(abort, Math.max(0, deadline - Date.now()));
  const sources = others.filter((s): s is AbortSignal => s !== undefined);
  for (const s of sources) {
    if (s.aborted) abort();
    else s.addEventListener("abort", abort, { once: true });
  }
  return {
    signal: controller.signal,
    done() {
      clearTimeout(timer);
      for (const s of sources) s.removeEventListener("abort", abort);
    },
  };
}
