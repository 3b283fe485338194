import type { EtcdClient, WatchEvent, WatchOptions } from "../../src/etcd/types.js";

/**
 * Watches that collect what they report, on any EtcdClient (a transport or the fake).
 * `ended` is awaited by the tests that expect an end; a rejection must not go unhandled
 * meanwhile.
 */

/** A watchDeletes stream, collecting the revisions it reports. */
export function watching(c: EtcdClient, key: string, from: number) {
  const ac = new AbortController();
  const deletes: number[] = [];
  const ended = c.watchDeletes(key, from, (revision) => deletes.push(revision), ac.signal);
  ended.catch(() => {});
  return { deletes, ended, stop: () => ac.abort() };
}

/** A watchRange stream, collecting each revision's events. */
export function watchingRange(c: EtcdClient, start: string, end: string, from: number, options?: WatchOptions) {
  const ac = new AbortController();
  const calls: [number, WatchEvent[]][] = [];
  const ended = c.watchRange(
    start,
    end,
    from,
    (revision, events) => calls.push([revision, events]),
    ac.signal,
    options,
  );
  ended.catch(() => {});
  return { calls, ended, stop: () => ac.abort() };
}
