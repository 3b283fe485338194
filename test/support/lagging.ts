import type { EtcdClient } from "../../src/etcd/types.js";

/** The calls `lagging` can hold. */
export type Method = "scan" | "guardedWrite" | "get";

/**
 * Wraps a client so that the next call of a method (whose first argument `match`es) is
 * answered by etcd, then held until `release()`; with `before`, held before it is sent.
 */
export function lagging(inner: EtcdClient) {
  const holds: {
    method: Method;
    match: (arg: unknown) => boolean;
    before: boolean;
    gate: Promise<void>;
    reached(): void;
  }[] = [];
  const client = new Proxy(inner, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        const i = holds.findIndex((h) => h.method === prop && h.match(args[0]));
        const hold = i >= 0 ? holds.splice(i, 1)[0] : undefined;
        if (hold?.before) {
          hold.reached();
          await hold.gate;
        }
        const r = await value.apply(obj, args);
        if (hold && !hold.before) {
          hold.reached();
          await hold.gate;
        }
        return r;
      };
    },
  });
  return {
    client,
    pauseNext(method: Method, match: (arg: unknown) => boolean = () => true, before = false) {
      let release: () => void = () => {};
      let reached: () => void = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const arrived = new Promise<void>((r) => {
        reached = r;
      });
      holds.push({ method, match, before, gate, reached });
      return { reached: arrived, release };
    },
  };
}

/**
 * Wraps a client so that the watch events it delivers are held back from `hold()` until
 * `flush()`, as a loaded instance's are: the copies of lines built on it stay as they were.
 */
export function heldWatches(inner: EtcdClient) {
  let holding = false;
  let delivered = 0;
  const held: (() => void)[] = [];
  const deliver = (
    onEvents: Parameters<EtcdClient["watchRange"]>[3],
    revision: number,
    events: Parameters<Parameters<EtcdClient["watchRange"]>[3]>[1],
  ) => {
    onEvents(revision, events);
    delivered = Math.max(delivered, revision);
  };
  const client = new Proxy(inner, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver);
      if (typeof value !== "function") return value;
      if (prop !== "watchRange") return value.bind(obj);
      const watchRange: EtcdClient["watchRange"] = (start, end, from, onEvents, signal, options) =>
        inner.watchRange(
          start,
          end,
          from,
          (revision, events) => {
            if (holding) held.push(() => deliver(onEvents, revision, events));
            else deliver(onEvents, revision, events);
          },
          signal,
          options,
        );
      return watchRange;
    },
  });
  return {
    client,
    /** The highest revision whose watch events were delivered to the watcher. */
    get delivered() {
      return delivered;
    },
    hold() {
      holding = true;
    },
    flush() {
      holding = false;
      for (const deliver of held.splice(0)) deliver();
    },
  };
}
