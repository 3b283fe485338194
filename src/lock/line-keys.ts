import { prefixEnd } from "../etcd/types.js";
import type { LineKind, LineRef } from "./types.js";

/**
 * Where lines live in etcd. Every participant of a line (holder or waiter) is one key:
 *
 *     <prefix><kind dir><name>#<key ID>        e.g. leasehold/lock/cron:job9#3f09c1d2a4b5e6f7
 *
 * `#` sorts below every character a name may hold, so a line's keys are contiguous and
 * lines sort in name order ("a#…" < "a-b#…"), which is what listings page over. A name
 * cannot hold `#` or `/`, so no name reaches another line's keys or leaves the prefix.
 * Order *within* a line is not the key order but the create revision: the order in
 * which etcd recorded the joins.
 */
const DIRS: Record<LineKind, string> = { lock: "lock/", semaphore: "sem/" };
const SEPARATOR = "#";

export class LineKeys {
  constructor(private readonly prefix: string) {}

  /** Where the lines of one kind start (names follow). */
  kindStart(kind: LineKind): string {
    return this.prefix + DIRS[kind];
  }

  /** The line's key range [start, end). */
  range(line: LineRef): { start: string; end: string } {
    const start = this.kindStart(line.kind) + line.name + SEPARATOR;
    return { start, end: prefixEnd(start) };
  }

  participant(line: LineRef, keyId: string): string {
    return this.kindStart(line.kind) + line.name + SEPARATOR + keyId;
  }

  /**
   * A lock's lock-delay marker: while it exists the name is granted to nobody new. It
   * lives outside every line (no read, view or feed of a line sees it), under its own
   * lease that outlives the grant's by the lock-delay (see the engine).
   */
  delayMarker(line: LineRef): string {
    return `${this.prefix}delay/${DIRS[line.kind]}${line.name}`;
  }

  /** A line's guarded state: a value written only by a current holder, outliving grants. */
  state(line: LineRef): string {
    return `${this.prefix}state/${DIRS[line.kind]}${line.name}`;
  }

  /** The first key after every key of the line named `name` (for paging past it). */
  after(kind: LineKind, name: string): string {
    return prefixEnd(this.kindStart(kind) + name + SEPARATOR);
  }

  /** The line of a participant key; `undefined` for any other key. */
  lineOf(key: string): LineRef | undefined {
    for (const kind of Object.keys(DIRS) as LineKind[]) {
      const name = this.nameOf(kind, key);
      if (name !== undefined) return { kind, name };
    }
    return undefined;
  }

  /** The line name of a participant key of `kind`; `undefined` for any other key. */
  nameOf(kind: LineKind, key: string): string | undefined {
    const start = this.kindStart(kind);
    if (!key.startsWith(start)) return undefined;
    const sep = key.indexOf(SEPARATOR, start.length);
    return sep < 0 ? undefined : key.slice(start.length, sep);
  }
}
