import { type EtcdClient, type KeyValue, prefixEnd, type WatchEvent } from "../etcd/types.js";
import type { LineKeys } from "./line-keys.js";
import { listingScopes } from "./listing.js";
import { decodeParticipant, type ParticipantValue } from "./participant.js";
import type { Feed, FeedBatch, FeedEvent, FeedOptions, LineKind } from "./types.js";

/** Keys per page of a feed's first read. */
const PAGE = 512;
/** Kinds in the order their key directories sort (lock/ < sem/). */
const KIND_ORDER: readonly LineKind[] = ["lock", "semaphore"];

/**
 * A stream of holder changes, derived from the participant keys of the lines it covers.
 *
 * One etcd watch over one key range (the lines of the requested kinds under the
 * caller's scopes, and whatever lies between them, filtered out here): with several
 * watches, their events could not be put in revision order without waiting on the
 * quietest. The watch asks for each key's previous version, so every event says what
 * changed by itself, with no copy of the lines to keep: a put that makes a key hold, or
 * changes a holder's value, is `held`; a delete of a key that held is `free` (release,
 * expiry and force look alike); waiters joining, leaving and being claimed are nothing.
 * A delete whose previous version etcd no longer has (compacted right then) cannot be
 * told apart, and neither can a resumption from compacted history: both start over
 * with a `reset` and the current holders, read at one revision.
 */
export async function openChangeFeed(
  etcd: EtcdClient,
  keys: LineKeys,
  o: FeedOptions,
  shutdown: AbortSignal | undefined,
  onClose: (feed: ChangeFeed) => void,
): Promise<ChangeFeed> {
  const feed = new ChangeFeed(etcd, keys, o, shutdown, onClose);
  try {
    await feed.open();
  } catch (err) {
    feed.close();
    throw err;
  }
  return feed;
}

export class ChangeFeed implements Feed {
  first: FeedBatch | undefined;
  private readonly scopes: string[];
  private readonly kinds: LineKind[];
  private readonly range: { start: string; end: string } | undefined;
  /** The next revision to report. */
  private from = 0;
  private readonly stop = new AbortController();
  private closed = false;
  private readonly unlink: () => void;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly keys: LineKeys,
    private readonly o: FeedOptions,
    shutdown: AbortSignal | undefined,
    private readonly onClose: (feed: ChangeFeed) => void,
  ) {
    this.scopes = listingScopes(o.prefix, o.within);
    this.kinds = KIND_ORDER.filter((k) => o.kinds.includes(k));
    const first = this.kinds[0];
    const last = this.kinds.at(-1);
    const lowest = this.scopes[0];
    const highest = this.scopes.at(-1);
    this.range =
      first && last && lowest !== undefined && highest !== undefined
        ? { start: keys.kindStart(first) + lowest, end: prefixEnd(keys.kindStart(last) + highest) }
        : undefined;
    const end = () => this.stop.abort();
    const signals = [o.signal, ...(shutdown ? [shutdown] : [])];
    for (const s of signals) {
      if (s.aborted) end();
      else s.addEventListener("abort", end, { once: true });
    }
    this.unlink = () => {
      for (const s of signals) s.removeEventListener("abort", end);
    };
  }

  /** The first read: the current holders, or where a resumption stands. */
  async open(): Promise<void> {
    if (!this.range) {
      // No name the caller may see: nothing ever to report, but the stream's start.
      const { revision } = await this.etcd.get(this.keys.kindStart("lock"));
      this.first = { revision, events: [{ event: "reset", index: revision, reason: "start" }] };
      return;
    }
    if (this.o.after === undefined) {
      this.first = await this.snapshot("start");
      return;
    }
    const { revision } = await this.etcd.scan(this.range.start, this.range.end, { countOnly: true });
    // An id from the future (another cluster, a restored backup): resuming from it would
    // skip every change up to it.
    if (this.o.after > revision) this.first = await this.snapshot("ahead");
    else this.from = this.o.after + 1;
  }

  /** When the feed was last known to be served (ms since the epoch). */
  seen = Date.now();

  alive(): void {
    this.seen = Date.now();
  }

  /** Whether the feed no longer counts against its instance's cap. */
  get stale(): boolean {
    const after = this.o.staleAfterMs;
    return this.closed || (after !== undefined && Date.now() - this.seen > after);
  }

  async run(onBatch: (batch: FeedBatch) => void): Promise<void> {
    const range = this.range;
    if (!range) {
      await new Promise<void>((resolve) => {
        if (this.stop.signal.aborted) resolve();
        else this.stop.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      return;
    }
    while (!this.stop.signal.aborted) {
      // A watch of its own, so that a change it cannot tell ends it and starts over.
      const watch = new AbortController();
      const end = () => watch.abort();
      this.stop.signal.addEventListener("abort", end, { once: true });
      let lost = false;
      let result: Awaited<ReturnType<EtcdClient["watchRange"]>>;
      try {
        result = await this.etcd.watchRange(
          range.start,
          range.end,
          this.from,
          (revision, events) => {
            if (lost) return;
            const batch = this.derive(events);
            if (batch === "unknown") {
              lost = true;
              watch.abort();
              return;
            }
            this.from = revision + 1;
            if (batch.length > 0) onBatch({ revision, events: batch });
          },
          watch.signal,
          { prevKv: true },
        );
      } finally {
        this.stop.signal.removeEventListener("abort", end);
      }
      if (this.stop.signal.aborted) return;
      if (result === "compacted" || lost) onBatch(await this.snapshot("compacted"));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stop.abort();
    this.unlink();
    this.onClose(this);
  }

  /** One revision's events as feed events; "unknown" when one cannot be told. */
  private derive(events: WatchEvent[]): FeedEvent[] | "unknown" {
    const out: FeedEvent[] = [];
    for (const e of events) {
      const key = e.type === "put" ? e.kv.key : e.key;
      const line = this.lineOf(key);
      if (!line) continue;
      if (e.type === "put") {
        const now = decodeParticipant(e.kv.value);
        if (now.h !== 1) continue;
        const before = e.prev && decodeParticipant(e.prev.value);
        // Claimed (handed out again) or otherwise rewritten with the same value: no change.
        if (before?.h === 1 && before.val === now.val) continue;
        out.push(held(line.kind, line.name, e.kv, now));
      } else {
        if (!e.prev) return "unknown";
        if (decodeParticipant(e.prev.value).h !== 1) continue;
        out.push({ event: "free", kind: line.kind, name: line.name, token: e.prev.createRevision });
      }
    }
    return out;
  }

  /** The line a key of the watched range belongs to, if the feed covers it. */
  private lineOf(key: string): { kind: LineKind; name: string } | undefined {
    for (const kind of this.kinds) {
      const name = this.keys.nameOf(kind, key);
      if (name !== undefined) return this.scopes.some((s) => name.startsWith(s)) ? { kind, name } : undefined;
    }
    return undefined;
  }

  /**
   * A reset and the current holders, in kind, name and token order, read a page at a
   * time at one revision; reporting resumes after it.
   */
  private async snapshot(reason: "start" | "compacted" | "ahead"): Promise<FeedBatch> {
    const range = this.range as { start: string; end: string };
    const holders: FeedEvent[] = [];
    let revision = 0;
    let from = range.start;
    for (;;) {
      const page = await this.etcd.scan(from, range.end, { limit: PAGE, ...(revision ? { revision } : {}) });
      if (!revision) revision = page.revision;
      for (const kv of page.kvs) {
        const line = this.lineOf(kv.key);
        const v = line && decodeParticipant(kv.value);
        if (line && v?.h === 1) holders.push(held(line.kind, line.name, kv, v));
      }
      const last = page.kvs.at(-1);
      if (!page.more || !last) break;
      from = `${last.key}\0`;
    }
    holders.sort(inOrder);
    this.from = revision + 1;
    return { revision, events: [{ event: "reset", index: revision, reason }, ...holders] };
  }
}

function held(kind: LineKind, name: string, kv: KeyValue, v: ParticipantValue): FeedEvent {
  return {
    event: "held",
    kind,
    name,
    token: kv.createRevision,
    ...(v.owner !== undefined ? { owner: v.owner } : {}),
    ...(v.val !== undefined ? { value: v.val } : {}),
    ttl: v.ttl ?? 0,
  };
}

function inOrder(a: FeedEvent, b: FeedEvent): number {
  if (a.event !== "held" || b.event !== "held") return 0;
  const kinds = KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind);
  if (kinds !== 0) return kinds;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return a.token - b.token;
}
