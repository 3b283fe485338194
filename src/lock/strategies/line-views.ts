import type { EtcdClient, WatchEvent } from "../../etcd/types.js";
import { holds, type Member, mayHold, member, positionOf } from "../standing.js";

/** How a waiter's wait for its turn ended. */
export type TurnOutcome =
  /** It may hold now: `member` is its key as the line shows it (its mod revision guards the grant). */
  | { turn: "hold"; member: Member }
  /** Its key is no longer in the line (its queue lease ended, or someone removed it). */
  | { turn: "gone" }
  | { turn: "aborted" };

export interface LineRange {
  start: string;
  end: string;
}

/**
 * How waiters learn that their turn came. Implementations keep a copy of the line built
 * from one read plus a watch from the revision after it: etcd delivers every change since
 * in order, so the copy is always the line as it was at some revision at or after the
 * read, and a turn seen in it is real. A turn can only end by the waiter's own key
 * changing (joins go to the back), which the grant's txn guards against.
 */
export interface LineWaits {
  /** Whether this instance watches the line (it has waiters there): the line is likely busy. */
  watching(start: string): boolean;
  /**
   * Resolves when `key` may hold, when it has left the line, or ("aborted") when `signal`
   * fires. `joined`: the revision the key was written at; nothing is judged from a copy
   * older than that. Rejects when etcd cannot be read or watched (unavailable).
   */
  awaitTurn(range: LineRange, key: string, limit: number, joined: number, signal: AbortSignal): Promise<TurnOutcome>;
  /**
   * Waiters ahead of `key` in the copy of its line; `undefined` when not watched here, or
   * when the copy is older than revision `atLeast`.
   */
  position(start: string, key: string, atLeast: number): number | undefined;
  /**
   * This instance's copy of the line, oldest first, as it is now (the line as it was at
   * some revision: every key that existed then, as it was then); `undefined` when there
   * is none to share. Read it at once: it changes with the next watch event.
   */
  copy(start: string): readonly Member[] | undefined;
}

interface Turn {
  key: string;
  limit: number;
  joined: number;
  settle(o: TurnOutcome): void;
  fail(err: unknown): void;
}

/** One line's participants, oldest first, kept current by a watch. */
export class LineView {
  private members: Member[] = [];
  private readonly byKey = new Map<string, Member>();
  /** The revision the copy is at (0 until the first read). */
  private revision = 0;
  /**
   * Every wait in progress. One key may have several: the attempts of one idempotent
   * request, or the redeems of one ticket, each wait for the same place.
   */
  private readonly turns = new Set<Turn>();
  /** The same waits by key, for judging only those a revision can have changed (see apply). */
  private readonly turnsOf = new Map<string, Set<Turn>>();
  /** Waits judged before the copy reached the revision they joined at: judged again at each revision. */
  private readonly early = new Set<Turn>();
  private readonly stop = new AbortController();

  constructor(
    private readonly etcd: EtcdClient,
    readonly range: LineRange,
    private readonly onEnd: () => void,
  ) {
    void this.run();
  }

  get waiting(): number {
    return this.turns.size;
  }

  get closed(): boolean {
    return this.stop.signal.aborted;
  }

  awaitTurn(key: string, limit: number, joined: number, signal: AbortSignal): Promise<TurnOutcome> {
    if (signal.aborted) return Promise.resolve({ turn: "aborted" });
    return new Promise((resolve, reject) => {
      const onAbort = () => turn.settle({ turn: "aborted" });
      const forget = () => {
        this.turns.delete(turn);
        this.early.delete(turn);
        const same = this.turnsOf.get(key);
        same?.delete(turn);
        if (same?.size === 0) this.turnsOf.delete(key);
        signal.removeEventListener("abort", onAbort);
      };
      const turn: Turn = {
        key,
        limit,
        joined,
        settle: (o) => {
          forget();
          resolve(o);
        },
        fail: (err) => {
          forget();
          reject(err);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.turns.add(turn);
      let same = this.turnsOf.get(key);
      if (!same) {
        same = new Set();
        this.turnsOf.set(key, same);
      }
      same.add(turn);
      this.judge(turn);
    });
  }

  position(key: string, atLeast: number): number | undefined {
    // A copy older than what the caller has seen could count a waiter ahead that this
    // very caller saw become a holder (a ticket redeemed just before): not good enough.
    if (this.revision < atLeast) return undefined;
    return this.byKey.has(key) ? positionOf(this.members, key) : undefined;
  }

  /** The participants, oldest first, once the line was read. */
  get line(): readonly Member[] | undefined {
    return this.revision > 0 ? this.members : undefined;
  }

  close(): void {
    this.stop.abort();
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        const read = await this.etcd.scan(this.range.start, this.range.end, { byCreate: true });
        if (this.closed) return;
        this.members = read.kvs.map(member);
        this.byKey.clear();
        for (const m of this.members) this.byKey.set(m.kv.key, m);
        this.revision = read.revision;
        this.judgeAll();
        const end = await this.etcd.watchRange(
          this.range.start,
          this.range.end,
          read.revision + 1,
          (revision, events) => this.apply(revision, events),
          this.stop.signal,
        );
        // History we had not seen was compacted away: read the line again.
        if (end !== "compacted") return;
      }
    } catch (err) {
      for (const t of [...this.turns.values()]) t.fail(err);
    } finally {
      this.stop.abort();
      for (const t of [...this.turns.values()]) t.settle({ turn: "aborted" });
      this.onEnd();
    }
  }

  private apply(revision: number, events: WatchEvent[]): void {
    const deleted: string[] = [];
    for (const e of events) {
      if (e.type === "put") {
        const m = member(e.kv);
        const old = this.byKey.get(e.kv.key);
        this.byKey.set(e.kv.key, m);
        if (old) {
          this.members[this.indexOf(old)] = m;
        } else {
          // A new key is the newest (its create revision is this one): it joins at the back.
          this.members.push(m);
        }
      } else {
        const old = this.byKey.get(e.key);
        if (!old) continue;
        this.byKey.delete(e.key);
        this.members.splice(this.indexOf(old), 1);
        deleted.push(e.key);
      }
    }
    this.revision = revision;
    this.judgeChanged(deleted);
  }

  /**
   * Where `m` is in the copy: a binary search on its create revision (the copy is in
   * create-revision order), then a step forward past keys that share it.
   */
  private indexOf(m: Member): number {
    const members = this.members;
    const rev = m.kv.createRevision;
    let lo = 0;
    let hi = members.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((members[mid]?.kv.createRevision ?? 0) < rev) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < members.length; i++) if (members[i] === m) return i;
    return members.indexOf(m);
  }

  private judgeAll(): void {
    for (const turn of [...this.turns]) this.judge(turn);
  }

  /**
   * Judges the waits a revision can have settled, not all of them (a line of 1,000
   * waiters gets a revision per handoff): those whose key it deleted (gone), those at the
   * front of the line up to its first participant that does not hold (nobody behind that
   * one may hold, and every other key is still there), and those judged early.
   */
  private judgeChanged(deleted: readonly string[]): void {
    const due = new Set<Turn>(this.early);
    const add = (key: string) => {
      for (const t of this.turnsOf.get(key) ?? []) due.add(t);
    };
    for (const key of deleted) add(key);
    for (const m of this.members) {
      add(m.kv.key);
      if (!holds(m)) break;
    }
    for (const turn of due) this.judge(turn);
  }

  private judge(turn: Turn): void {
    if (this.revision < turn.joined) {
      this.early.add(turn);
      return;
    }
    this.early.delete(turn);
    const m = this.byKey.get(turn.key);
    if (!m) turn.settle({ turn: "gone" });
    else if (mayHold(this.members, turn.key, turn.limit)) turn.settle({ turn: "hold", member: m });
  }
}

/**
 * Node: one copy of each line per instance, shared by all of this instance's waiters
 * in it: one read and one watch per line however many wait, and a release costs each
 * instance one watch event, not one read per waiter. Only the waiter whose turn came is
 * woken. The copy is kept `lingerMs` after its last waiter left, so a busy line's
 * handoffs do not each re-read it.
 */
export class SharedLineViews implements LineWaits {
  private readonly views = new Map<string, LineView>();
  private readonly idle = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(
    private readonly etcd: EtcdClient,
    private readonly lingerMs = 1_000,
  ) {}

  watching(start: string): boolean {
    return (this.views.get(start)?.waiting ?? 0) > 0;
  }

  position(start: string, key: string, atLeast: number): number | undefined {
    return this.views.get(start)?.position(key, atLeast);
  }

  copy(start: string): readonly Member[] | undefined {
    return this.views.get(start)?.line;
  }

  async awaitTurn(
    range: LineRange,
    key: string,
    limit: number,
    joined: number,
    signal: AbortSignal,
  ): Promise<TurnOutcome> {
    let view = this.views.get(range.start);
    if (!view || view.closed) {
      const created: LineView = new LineView(this.etcd, range, () => {
        if (this.views.get(range.start) === created) this.views.delete(range.start);
      });
      view = created;
      this.views.set(range.start, view);
    }
    clearTimeout(this.idle.get(range.start));
    try {
      return await view.awaitTurn(key, limit, joined, signal);
    } finally {
      if (view.waiting === 0) this.linger(range.start, view);
    }
  }

  private linger(start: string, view: LineView): void {
    clearTimeout(this.idle.get(start));
    const timer = setTimeout(() => {
      this.idle.delete(start);
      if (view.waiting > 0) return;
      if (this.views.get(start) === view) this.views.delete(start);
      view.close();
    }, this.lingerMs);
    (timer as { unref?: () => void }).unref?.();
    this.idle.set(start, timer);
  }
}

/**
 * Workers: a copy of the line per waiter, since I/O one request started cannot be
 * awaited by another there. Costs a read and a watch per waiter.
 */
export class LineViewPerWaiter implements LineWaits {
  watching(): boolean {
    return false;
  }

  position(): undefined {
    return undefined;
  }

  /** Each waiter's copy is its own request's: none is shared. */
  copy(): undefined {
    return undefined;
  }

  constructor(private readonly etcd: EtcdClient) {}

  async awaitTurn(
    range: LineRange,
    key: string,
    limit: number,
    joined: number,
    signal: AbortSignal,
  ): Promise<TurnOutcome> {
    const view = new LineView(this.etcd, range, () => {});
    try {
      return await view.awaitTurn(key, limit, joined, signal);
    } finally {
      view.close();
    }
  }
}
