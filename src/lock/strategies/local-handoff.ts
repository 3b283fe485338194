/**
 * Local handoff: this instance's waiters, by line, so that a release on this instance
 * whose next participant is one of them makes it the holder in the releasing txn
 * (`Txn(if mod_revision(holder) == grant's and mod_revision(waiter) == waiter's then
 * Delete(holder), Put(waiter, holder value, grant lease))`) and answers its request at
 * once, instead of a guarded delete, a watch event to the waiter and the waiter's own
 * txn (see LineEngine.handOver for why that is safe).
 *
 * What it saves: a contended handoff otherwise costs three raft writes (the waiter's
 * join, the holder's delete, the waiter's turn) and a watch round trip between the last
 * two; measured in BENCHMARKS.md before this existed, 3.27 raft proposals per handoff
 * for 64 callers on one name and 1.65 for 1,000 waiters on 10 names (one instance),
 * against etcd's lock API's one write per handoff. This takes one write and the watch
 * round trip off every handoff to a waiter of the releasing instance.
 *
 * The registry only says who waits here and lets one release claim a waiter: the claim
 * takes it out synchronously (one JS thread: nothing else can act on it in between), so
 * its own turn, its giving up and other releases all find it gone, and it waits for the
 * claim's outcome before doing anything else.
 */

/** A waiter registered while it waits for its turn. */
export interface WaitingHere<O> {
  /**
   * It stops waiting (whatever ended the wait): `undefined` when no release claimed it
   * (none can any more); otherwise the claim's outcome, once the releasing txn settled.
   */
  leave(): Promise<O> | undefined;
}

/** A waiter a release claimed: it is the release's to convert until `settle`. */
export interface Claimed<W, O> {
  waiter: W;
  /** Tells the waiter how the handoff ended; called exactly once. */
  settle(outcome: O): void;
}

/** `W`: what the engine needs to convert a waiter; `O`: what it tells the waiter. */
export interface LocalHandoff<W, O> {
  /**
   * `key`, a waiter of this instance, waits for its turn in the line starting `line`;
   * `wake` stops that wait at once when a release claims it (called with the reason to
   * abort with). `undefined` when this runtime hands nothing over (or the key waits here
   * already).
   */
  enter(line: string, key: string, waiter: W, wake: (reason: unknown) => void): WaitingHere<O> | undefined;
  /** Takes the waiter `key` of `line` out for a release, when it waits here and `fits`. */
  claim(line: string, key: string, fits: (waiter: W) => boolean): Claimed<W, O> | undefined;
}

/**
 * Why a claimed waiter's wait is aborted: one reason for every claim, since aborting
 * without one makes a new DOMException (and captures its stack) on each handoff.
 */
const CLAIMED = new DOMException("a release claimed this waiter", "AbortError");

interface Entry<W, O> {
  waiter: W;
  wake: (reason: unknown) => void;
  outcome?: Promise<O>;
}

/** Node: one process serves the waiting request and the release, so one can answer the other. */
export class LocalWaiters<W, O> implements LocalHandoff<W, O> {
  private readonly lines = new Map<string, Map<string, Entry<W, O>>>();

  enter(line: string, key: string, waiter: W, wake: (reason: unknown) => void): WaitingHere<O> | undefined {
    let here = this.lines.get(line);
    if (here?.has(key)) return undefined;
    if (!here) {
      here = new Map();
      this.lines.set(line, here);
    }
    const entry: Entry<W, O> = { waiter, wake };
    here.set(key, entry);
    return {
      leave: () => {
        if (entry.outcome) return entry.outcome;
        this.remove(line, key, entry);
        return undefined;
      },
    };
  }

  claim(line: string, key: string, fits: (waiter: W) => boolean): Claimed<W, O> | undefined {
    const entry = this.lines.get(line)?.get(key);
    if (!entry || !fits(entry.waiter)) return undefined;
    this.remove(line, key, entry);
    let settle: (o: O) => void = () => {};
    entry.outcome = new Promise<O>((resolve) => {
      settle = resolve;
    });
    entry.wake(CLAIMED);
    return { waiter: entry.waiter, settle };
  }

  private remove(line: string, key: string, entry: Entry<W, O>): void {
    const here = this.lines.get(line);
    if (here?.get(key) !== entry) return;
    here.delete(key);
    if (here.size === 0) this.lines.delete(line);
  }
}

/**
 * Workers: a release and a waiting request are different requests, and I/O (or a
 * promise) one request started cannot settle another's there; each waiter takes its
 * own turn.
 */
export class NoLocalHandoff<W, O> implements LocalHandoff<W, O> {
  enter(): undefined {
    return undefined;
  }

  claim(): undefined {
    return undefined;
  }
}
