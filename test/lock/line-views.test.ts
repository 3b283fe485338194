import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { type EtcdClient, EtcdUnavailableError, prefixEnd } from "../../src/etcd/types.js";
import { createIfAbsent, deleteIfUnchanged } from "../../src/lock/strategies/group-commit.js";
import {
  type LineRange,
  LineViewPerWaiter,
  type LineWaits,
  SharedLineViews,
  type TurnOutcome,
} from "../../src/lock/strategies/line-views.js";
import { startTestEtcd, untilWatches } from "../support/etcd.js";
import { stillAfter, until } from "../support/http.js";

/**
 * Line views against a real etcd on both transports. `opens` counts the copies made
 * (scan + watchRange each); on the gateway, `streams` counts the `/v3/watch` requests
 * actually sent, reconnects included.
 */
let etcd: Awaited<ReturnType<typeof startTestEtcd>>;
beforeAll(async () => {
  etcd = await startTestEtcd();
});
afterAll(async () => {
  await etcd?.destroy();
});

const transports = [
  {
    name: "grpc",
    create: (endpoint: string, timeoutMs: number) => createGrpcEtcd({ endpoints: [endpoint], timeoutMs }),
  },
  {
    name: "gateway",
    create: (endpoint: string, timeoutMs: number, onWatch?: () => void) =>
      createGatewayEtcd({
        endpoints: [endpoint],
        timeoutMs,
        fetch: (input, init) => {
          if (String(input).endsWith("/v3/watch")) onWatch?.();
          return fetch(input, init);
        },
      }),
  },
];

let seq = 0;
const HOLDS = JSON.stringify({ h: 1 });
const WAITS = JSON.stringify({ ttl: 30 });

function newLine(label: string): LineRange {
  const start = `views/lock/${label}-${Date.now()}-${seq++}#`;
  return { start, end: prefixEnd(start) };
}

describe.each(transports)("line views over $name", (transport) => {
  let raw: EtcdClient;
  let streams = 0;
  let scans = 0;
  /** The watches the views opened, in order, and whether each has ended. */
  const opened: { settled: boolean }[] = [];
  let client: EtcdClient;

  beforeAll(() => {
    raw = transport.create(etcd.endpoint, 2_000, () => streams++);
    client = new Proxy(raw, {
      get(obj, prop, receiver) {
        if (prop === "scan") {
          return (...args: Parameters<EtcdClient["scan"]>) => {
            scans++;
            return obj.scan(...args);
          };
        }
        if (prop === "watchRange") {
          return (...args: Parameters<EtcdClient["watchRange"]>) => {
            const state = { settled: false };
            opened.push(state);
            return obj.watchRange(...args).finally(() => {
              state.settled = true;
            });
          };
        }
        return Reflect.get(obj, prop, receiver);
      },
    });
  });
  afterAll(async () => {
    await raw?.close();
  });

  const counts = () => ({ scans, opens: opened.length, streams });
  const since = (before: ReturnType<typeof counts>) => ({
    scans: scans - before.scans,
    opens: opened.length - before.opens,
    streams: transport.name === "gateway" ? streams - before.streams : 0,
  });

  /** A participant key of `line`; `join` puts it (waiting), as a waiter's join does. */
  function participant(line: LineRange, id: string) {
    const key = `${line.start}${id}`;
    let modRevision = 0;
    return {
      key,
      async join(value = WAITS): Promise<number> {
        const r = await createIfAbsent(raw, key, value, 0n);
        if (!r.created) throw new Error(`${key} exists`);
        modRevision = r.revision;
        return r.revision;
      },
      /** Put again as a holder, in place (a conversion). */
      async hold(): Promise<void> {
        modRevision = await raw.putIfUnchanged({ key, modRevision, value: HOLDS, lease: 0n });
        if (modRevision === 0) throw new Error(`${key} changed`);
      },
      async leave(): Promise<void> {
        if (!(await deleteIfUnchanged(raw, key, modRevision))) throw new Error(`${key} changed`);
      },
    };
  }

  function waiter(waits: LineWaits, line: LineRange, key: string, joined: number, limit = 1) {
    const ac = new AbortController();
    // A test that fails half-way must not leave its watch open for the next ones.
    onTestFinished(() => ac.abort());
    const state: { outcome?: TurnOutcome | unknown } = {};
    const done = waits.awaitTurn(line, key, limit, joined, ac.signal).then(
      (o) => {
        state.outcome = o;
      },
      (err: unknown) => {
        state.outcome = err;
      },
    );
    const turn = () => (state.outcome as { turn?: string } | undefined)?.turn;
    return { state, done, turn, leave: () => ac.abort() };
  }

  it("one copy (one read, one watch) serves many waiters across several releases, waking one per release in order", async () => {
    const waits = new SharedLineViews(client);
    const line = newLine("many");
    const holder = participant(line, "h");
    await holder.join(HOLDS);
    const people = Array.from({ length: 5 }, (_, i) => participant(line, `w${i}`));
    const joined: number[] = [];
    for (const p of people) joined.push(await p.join());
    const before = counts();
    const waiters = people.map((p, i) => waiter(waits, line, p.key, joined[i] ?? 0));
    // The watch replays history from the copy's read: it need not be established in etcd
    // before a release, only opened.
    await until(() => since(before).opens === 1, "the five waiters to open one copy");
    const woken = () => waiters.filter((w) => w.turn() === "hold").length;
    let current = holder;
    for (let i = 1; i <= 4; i++) {
      // Other keys move the store revision between releases, as on a busy etcd.
      await createIfAbsent(raw, newLine("other").start, "y", 0n);
      await current.leave();
      await until(() => woken() >= i, `release ${i} to wake a waiter`);
      // ...and only one, the next in line.
      expect(await stillAfter(50, woken)).toBe(i);
      expect(waiters[i - 1]?.turn()).toBe("hold");
      // The woken waiter takes its turn: its key is put again, holding, in place.
      current = people[i - 1] as typeof holder;
      await current.hold();
    }
    expect(waiters.map((w) => w.turn())).toEqual(["hold", "hold", "hold", "hold", undefined]);
    expect(waits.watching(line.start)).toBe(true);
    // Once the copy has the last conversion, nobody waits ahead of the last waiter.
    await until(() => waits.position(line.start, people[4]?.key ?? "", 0) === 0, "the copy to show the last holder");
    expect(since(before)).toEqual({ scans: 1, opens: 1, streams: transport.name === "gateway" ? 1 : 0 });
    waiters[4]?.leave();
    await waiters[4]?.done;
  });

  it("the copy lingers after the last waiter leaves, so the next one finds it open; then it closes", async () => {
    const waits = new SharedLineViews(client, 400);
    const line = newLine("linger");
    const holder = participant(line, "h");
    await holder.join(HOLDS);
    const [a, b, c] = ["a", "b", "c"].map((id) => participant(line, id)) as [
      typeof holder,
      typeof holder,
      typeof holder,
    ];
    const before = counts();
    const wa = waiter(waits, line, a.key, await a.join());
    await until(() => since(before).opens === 1, "a to make a copy");
    await holder.leave();
    await wa.done;
    expect(waits.watching(line.start)).toBe(false);
    await a.hold();
    const wb = waiter(waits, line, b.key, await b.join());
    await until(() => waits.watching(line.start), "b to wait");
    await a.leave();
    await wb.done;
    expect(wb.turn()).toBe("hold");
    expect(since(before)).toMatchObject({ scans: 1, opens: 1 });
    const first = opened[opened.length - 1];
    await until(() => first?.settled === true, "the copy to close after lingering", 2_000);
    await b.hold();
    const wc = waiter(waits, line, c.key, await c.join());
    await until(() => since(before).opens >= 2, "c to make a copy of its own");
    expect(since(before)).toMatchObject({ scans: 2, opens: 2 });
    wc.leave();
    await wc.done;
    expect(wc.state.outcome).toEqual({ turn: "aborted" });
  });

  it("a key that leaves the line is reported gone; a semaphore's waiter holds among the first limit", async () => {
    const waits = new SharedLineViews(client);
    const line = newLine("sem");
    const h = participant(line, "h");
    // A semaphore's participants carry its limit (a holder of another limit is waited out).
    await h.join(JSON.stringify({ h: 1, limit: 2 }));
    const [x, y, z] = ["x", "y", "z"].map((id) => participant(line, id)) as [typeof h, typeof h, typeof h];
    const waits2 = JSON.stringify({ ttl: 30, limit: 2 });
    const wx = waiter(waits, line, x.key, await x.join(waits2), 2);
    const wy = waiter(waits, line, y.key, await y.join(waits2), 2);
    const wz = waiter(waits, line, z.key, await z.join(waits2), 2);
    await wx.done;
    expect(wx.turn()).toBe("hold");
    // x leaves instead of taking its turn: y moves up, and z is told its key is gone when it goes.
    await x.leave();
    await wy.done;
    expect(wy.turn()).toBe("hold");
    await z.leave();
    await wz.done;
    expect(wz.state.outcome).toEqual({ turn: "gone" });
  });

  it("a copy whose watch must start from compacted history reads the line again", async () => {
    // The copy's read is answered, then held back while the line changes and etcd compacts.
    let hold: Promise<void> | undefined;
    let reached: () => void = () => {};
    let resume: () => void = () => {};
    const lagging = new Proxy(client, {
      get(obj, prop, receiver) {
        if (prop !== "scan") return Reflect.get(obj, prop, receiver);
        return async (...args: Parameters<EtcdClient["scan"]>) => {
          const r = await obj.scan(...args);
          if (hold) {
            const h = hold;
            hold = undefined;
            reached();
            await h;
          }
          return r;
        };
      },
    });
    const waits = new SharedLineViews(lagging);
    const line = newLine("compacted");
    const holder = participant(line, "h");
    await holder.join(HOLDS);
    const me = participant(line, "me");
    const joined = await me.join();
    hold = new Promise<void>((r) => {
      resume = r;
    });
    const read = new Promise<void>((r) => {
      reached = r;
    });
    const before = counts();
    const w = waiter(waits, line, me.key, joined);
    await read;
    await holder.leave();
    const { revision } = await createIfAbsent(raw, newLine("bump").start, "y", 0n);
    await fetch(`${etcd.endpoint}/v3/kv/compaction`, {
      method: "POST",
      body: JSON.stringify({ revision: String(revision), physical: true }),
    });
    resume();
    await w.done;
    expect(w.turn()).toBe("hold");
    expect(since(before).scans).toBe(2);
  });

  it("without sharing, every waiter has its own copy, closed when its wait ends", async () => {
    const waits = new LineViewPerWaiter(client);
    const line = newLine("solo");
    const holder = participant(line, "h");
    await holder.join(HOLDS);
    const people = ["a", "b", "c"].map((id) => participant(line, id));
    const joined: number[] = [];
    for (const p of people) joined.push(await p.join());
    const before = counts();
    const waiters = people.map((p, i) => waiter(waits, line, p.key, joined[i] ?? 0));
    await until(() => since(before).opens === 3, "three copies");
    expect(waits.watching()).toBe(false);
    await holder.leave();
    await waiters[0]?.done;
    expect(waiters[0]?.turn()).toBe("hold");
    for (const w of waiters.slice(1)) w.leave();
    await Promise.all(waiters.map((w) => w.done));
    expect(since(before)).toMatchObject({ scans: 3, opens: 3 });
    await until(() => opened.slice(before.opens).every((o) => o.settled), "every watch to close", 2_000);
  });

  it("a watch that cannot be reopened after etcd went away fails its waiters", async () => {
    const c = transport.create(etcd.endpoint, 1_000);
    try {
      const waits = new SharedLineViews(c);
      const line = newLine("down");
      const holder = participant(line, "h");
      await holder.join(HOLDS);
      const people = ["a", "b"].map((id) => participant(line, id));
      const joined: number[] = [];
      for (const p of people) joined.push(await p.join());
      const waiters = people.map((p, i) => waiter(waits, line, p.key, joined[i] ?? 0));
      // Established in etcd (earlier tests' watches closed), so etcd going away breaks it.
      await untilWatches(etcd.endpoint, 1, "the waiters' watch to be open in etcd");
      await etcd.stop();
      try {
        await Promise.all(waiters.map((w) => w.done));
        for (const w of waiters) expect(w.state.outcome).toBeInstanceOf(EtcdUnavailableError);
        expect(waits.watching(line.start)).toBe(false);
      } finally {
        await etcd.restart();
      }
    } finally {
      await c.close();
    }
  });
});
