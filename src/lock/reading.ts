import { type EtcdClient, type KeyValue, prefixEnd } from "../etcd/types.js";
import { untilDeadline } from "../timers.js";
import { CallerGone, TooManyStreams, TooManyWaiters } from "./errors.js";
import { type ChangeFeed, openChangeFeed } from "./feed.js";
import type { LineKeys } from "./line-keys.js";
import { listingScopes } from "./listing.js";
import { byCreate, holds, lineLimit, type Member, member } from "./standing.js";
import type { LineChanges } from "./strategies/line-changes.js";
import type { LineRange } from "./strategies/line-views.js";
import type { ReportedExpiry } from "./strategies/local-knowledge.js";
import type {
  EngineOptions,
  Feed,
  FeedOptions,
  HolderView,
  LineInfo,
  LineKind,
  LineRef,
  LineState,
  ListOptions,
  ReadOptions,
} from "./types.js";

/** Default cap on open feeds per instance. */
const MAX_FEEDS = 1_000;

/** A read of a line's oldest participants. */
export interface LineRead {
  revision: number;
  oldest: Member[];
  count: number;
}

/**
 * What anyone may see of lines, without changing them: inspect (optionally blocking
 * until a change), listings and change feeds. Holders are shown without their handles;
 * a holder whose lease has already ended is not shown.
 */
export class LineReader {
  private readers = 0;
  private readonly feeds = new Set<ChangeFeed>();
  /** Feeds doing their first read: counted, so concurrent opens cannot pass the cap together. */
  private openingFeeds = 0;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly keys: LineKeys,
    private readonly changes: LineChanges,
    private readonly expiry: ReportedExpiry,
    private readonly opts: EngineOptions,
  ) {}

  get activeReads(): number {
    return this.readers;
  }

  get activeFeeds(): number {
    for (const f of this.feeds) if (f.stale) this.feeds.delete(f);
    return this.feeds.size + this.openingFeeds;
  }

  /** The oldest `limit` participants of a line, and how many it has. */
  async readOldest(range: LineRange, limit: number): Promise<LineRead> {
    const r = await this.etcd.scan(range.start, range.end, { byCreate: true, limit });
    return { revision: r.revision, oldest: r.kvs.map(member), count: r.count };
  }

  /**
   * The current holders' fencing tokens, oldest first: one linearizable read (two for a
   * semaphore). A holder's key exists only while its lease does (etcd deletes a lease's
   * keys in the step that ends it), so no lease check is needed.
   */
  async holderTokens(line: LineRef): Promise<number[]> {
    const range = this.keys.range(line);
    let read = await this.readOldest(range, 1);
    const limit = lineLimit(read.oldest) ?? 1;
    if (limit > 1) read = await this.readOldest(range, limit);
    const tokens: number[] = [];
    for (const m of read.oldest.slice(0, limit)) {
      if (!holds(m)) break;
      tokens.push(m.kv.createRevision);
    }
    return tokens;
  }

  async inspect(line: LineRef): Promise<LineInfo | undefined> {
    return (await this.state(line, this.keys.range(line))).info;
  }

  async read(line: LineRef, o: ReadOptions = {}): Promise<LineState> {
    const range = this.keys.range(line);
    const { changes } = this;
    if (o.after === undefined || !o.wait || o.wait <= 0) return this.state(line, range);
    // Blocked readers are capped like waiters, and apart from them: readers must not
    // crowd out acquires.
    const max = this.opts.maxWaiters;
    if (this.readers >= max) {
      throw new TooManyWaiters(
        max,
        `this instance already has ${max} blocking reads; retry later or with a shorter wait`,
      );
    }
    this.readers++;
    const stop = untilDeadline(Date.now() + o.wait * 1000, o.signal, this.opts.shutdownSignal);
    try {
      await changes.awaitChange(range, o.after, stop.signal);
    } finally {
      stop.done();
      this.readers--;
    }
    if (o.signal?.aborted) throw new CallerGone();
    return changes.share(range, () => this.state(line, range));
  }

  /** The line as one read shows it (two for a semaphore: its oldest, then its first `limit`). */
  private async state(line: LineRef, range: LineRange): Promise<LineState> {
    let read = await this.readOldest(range, 1);
    const limit = lineLimit(read.oldest);
    if (limit === undefined) return { index: read.revision };
    if (limit > 1) read = await this.readOldest(range, limit);
    const info = await this.infoOf(line.name, read.oldest, read.count);
    return { index: read.revision, ...(info ? { info } : {}) };
  }

  async openFeed(o: FeedOptions): Promise<Feed> {
    const max = this.opts.maxFeeds ?? MAX_FEEDS;
    if (this.activeFeeds >= max) throw new TooManyStreams(max);
    this.openingFeeds++;
    try {
      const feed = await openChangeFeed(this.etcd, this.keys, o, this.opts.shutdownSignal, (f) => this.feeds.delete(f));
      this.feeds.add(feed);
      return feed;
    } finally {
      this.openingFeeds--;
    }
  }

  async list(kind: LineKind, o: ListOptions): Promise<{ items: LineInfo[]; next?: string }> {
    const items: LineInfo[] = [];
    for (const scope of listingScopes(o.prefix, o.within)) {
      const base = this.keys.kindStart(kind);
      const end = prefixEnd(base + scope);
      const start = o.after !== undefined && o.after >= scope ? this.keys.after(kind, o.after) : base + scope;
      if (start >= end) continue;
      for await (const group of this.lineGroups(kind, start, end)) {
        const last = items.at(-1);
        if (items.length >= o.limit && last) return { items, next: last.name };
        const members = group.kvs.map(member).sort(byCreate);
        const info = await this.infoOf(group.name, members, members.length);
        if (info) items.push(info);
      }
    }
    return { items };
  }

  /** The keys in [start, end) grouped by line, in key (so name) order, each line whole. */
  private async *lineGroups(
    kind: LineKind,
    start: string,
    end: string,
  ): AsyncGenerator<{ name: string; kvs: KeyValue[] }> {
    let group: { name: string; kvs: KeyValue[] } | undefined;
    let from = start;
    for (;;) {
      const page = await this.etcd.range(from, end, 512);
      for (const kv of page.kvs) {
        const name = this.keys.nameOf(kind, kv.key);
        if (name === undefined) continue;
        if (group && group.name !== name) {
          yield group;
          group = undefined;
        }
        group ??= { name, kvs: [] };
        group.kvs.push(kv);
      }
      const last = page.kvs.at(-1);
      if (!page.more || !last) break;
      from = `${last.key}\0`;
    }
    if (group) yield group;
  }

  /** What anyone may see of a line, from its oldest participants (at least `limit`). */
  private async infoOf(name: string, oldest: Member[], count: number): Promise<LineInfo | undefined> {
    const limit = lineLimit(oldest) ?? 1;
    const holders = oldest.slice(0, limit).filter(holds);
    const views = await Promise.all(holders.map((m) => this.holderView(m)));
    const live = views.filter((v): v is HolderView => v !== undefined);
    if (live.length === 0) return undefined;
    return { name, limit, holders: live, waiters: Math.max(0, count - holders.length) };
  }

  private async holderView(m: Member): Promise<HolderView | undefined> {
    if (m.kv.lease === 0n) return undefined;
    const sent = Date.now();
    const { ttl } = await this.etcd.leaseTimeToLive(m.kv.lease);
    if (ttl < 0) return undefined;
    return {
      token: m.kv.createRevision,
      ttl,
      expiresAt: this.expiry.estimate(m.kv.key, m.kv.createRevision, sent, ttl),
      ...(m.v.owner !== undefined ? { owner: m.v.owner } : {}),
      ...(m.v.val !== undefined ? { value: m.v.val } : {}),
    };
  }
}
