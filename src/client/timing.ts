/** Waiting, backing off and chaining aborts, the same wherever the client retries. */

/**
 * Delay before retry number `attempt` (0-based): `Retry-After` when the service gave
 * one, else exponential from 100 ms up to `capMs`; either way with jitter, so callers
 * that failed together do not come back together.
 */
export function backoff(attempt: number, capMs: number, retryAfterS?: number): number {
  if (retryAfterS !== undefined) return retryAfterS * 1000 + Math.random() * 250;
  const ceiling = Math.min(capMs, 100 * 2 ** attempt);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Aborts `target` when `source` fires (with its reason); returns the unlink. */
export function follow(source: AbortSignal | undefined, target: AbortController): () => void {
  if (!source) return () => {};
  if (source.aborted) {
    target.abort(source.reason);
    return () => {};
  }
  const onAbort = () => target.abort(source.reason);
  source.addEventListener("abort", onAbort, { once: true });
  return () => source.removeEventListener("abort", onAbort);
}
