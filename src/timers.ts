/**
 * The two timing tools the service needs, on plain timers so they run on Node and
 * Workers alike: an abortable pause, and a deadline that bounds an operation.
 */

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    // The listener goes with the timer: a pause repeated on one long-lived signal (a
    // polling loop) must not pile listeners up on it.
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * A point in time by which an operation must be over, enforced either through `signal`
 * (for whatever takes a signal: fetch, a watch) or through `race` (for a promise that
 * takes none). `done()` releases the timer and the listeners: call it in a `finally`.
 *
 * Built on one plain timer rather than AbortSignal.timeout/any: a timeout signal keeps
 * itself and everything listening to it reachable until it fires (on Node 20 a signal
 * from AbortSignal.any can even be collected before it fires), and an AbortController
 * costs about ten times a timer, so the signal is only made when something asks for it.
 */
export class Deadline {
  private timedOut = false;
  private readonly timer: ReturnType<typeof setTimeout>;
  private controller: AbortController | undefined;
  private expiry: { promise: Promise<never>; reject(): void } | undefined;
  private readonly sources: AbortSignal[] | undefined;
  private readonly abortFromSource: (() => void) | undefined;

  constructor(at: number, sources?: AbortSignal[]) {
    this.timer = setTimeout(() => this.expire(), Math.max(0, at - Date.now()));
    if (!sources?.length) return;
    const controller = new AbortController();
    // The source's reason, as AbortSignal.any gives it: abort() without one would make a
    // DOMException, whose stack capture is most of what firing a signal costs.
    const abort = () => controller.abort(sources.find((s) => s.aborted)?.reason);
    this.controller = controller;
    this.sources = sources;
    this.abortFromSource = abort;
    for (const s of sources) {
      if (s.aborted) abort();
      else s.addEventListener("abort", abort, { once: true });
    }
  }

  /** Fires when the time runs out or when any of the signals it was linked to fires. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.timedOut) this.controller.abort();
    }
    return this.controller.signal;
  }

  /** The time ran out (as opposed to a linked signal firing). */
  get expired(): boolean {
    return this.timedOut;
  }

  /**
   * Settles as `p` does, or rejects with `error()` when the time runs out first. Only the
   * time counts here, not the linked signals.
   */
  race<T>(p: Promise<T>, error: () => Error): Promise<T> {
    if (!this.expiry) {
      let reject: () => void = () => {};
      const promise = new Promise<never>((_, rej) => {
        reject = () => rej(new Error("deadline"));
      });
      this.expiry = { promise, reject };
      if (this.timedOut) reject();
    }
    return Promise.race([
      p,
      this.expiry.promise.catch(() => {
        throw error();
      }),
    ]);
  }

  /** Fires `signal` now (with `reason`, if given), ending what it bounds (a connection no longer needed). */
  abort(reason?: unknown): void {
    // No controller yet: nothing has been handed the signal, so nothing to end.
    this.controller?.abort(reason);
  }

  /** Stops the clock; linked signals still fire `signal` (until `done`). */
  stopClock(): void {
    clearTimeout(this.timer);
  }

  done(): void {
    clearTimeout(this.timer);
    const abort = this.abortFromSource;
    if (abort) for (const s of this.sources ?? []) s.removeEventListener("abort", abort);
  }

  private expire(): void {
    this.timedOut = true;
    this.controller?.abort();
    this.expiry?.reject();
  }
}

/**
 * A deadline at `at` (ms since the epoch), also cut short by any of `others` firing
 * (an absent one is skipped).
 */
export function untilDeadline(at: number, ...others: (AbortSignal | undefined)[]): Deadline {
  return new Deadline(
    at,
    others.filter((s): s is AbortSignal => s !== undefined),
  );
}
