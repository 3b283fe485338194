import { describe, expect, it } from "vitest";
import { type KeepAliveEvents, keepAliveLanes } from "../../src/etcd/keepalive-lanes.js";
import { until } from "../support/http.js";

/**
 * Unit tests of the lanes' bookkeeping with scripted streams: the races here (a stream
 * that finishes opening after its caller gave up, then breaks) cannot be produced on
 * demand with a real etcd. The transports' conformance suite covers the real streams.
 */
function scripted() {
  const opens: {
    events: KeepAliveEvents;
    written: string[];
    ended: boolean;
    resolve(): void;
    reject(err: Error): void;
  }[] = [];
  const connect = (events: KeepAliveEvents) =>
    new Promise<{ write(id: string): void; end(): void }>((resolve, reject) => {
      const o = {
        events,
        written: [] as string[],
        ended: false,
        resolve: () =>
          resolve({
            write: (id) => o.written.push(id),
            end: () => {
              o.ended = true;
            },
          }),
        reject,
      };
      opens.push(o);
    });
  return { opens, lanes: keepAliveLanes(connect, 1) };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("keep-alive lanes", () => {
  it("a stream dropped while it opened is ended, and its later break spares its successor's waiters", async () => {
    const { opens, lanes } = scripted();
    const first = lanes.send(7n);
    first.reply.catch(() => {});
    first.forget(); // the caller's deadline passed while the stream was still opening
    const second = lanes.send(7n);
    await tick();
    expect(opens).toHaveLength(2);
    opens[1]?.resolve();
    await tick();
    expect(opens[1]?.written).toEqual(["7"]);

    opens[0]?.resolve(); // the dropped stream opens after all
    // The lanes end it on a timer of their own; under load that may fire after `tick`'s.
    await until(() => opens[0]?.ended === true, "the dropped stream ended", 2_000);
    // The caller that gave up sent nothing on it and left no waiter behind.
    expect(opens[0]?.written).toEqual([]);
    await expect(first.reply).rejects.toThrow("abandoned");
    opens[0]?.events.broken(new Error("dropped stream ended"));

    opens[1]?.events.reply("7", 30);
    await expect(second.reply).resolves.toBe(30);
    second.forget();
  });

  it("a break of the current stream fails its waiters, and the next keep-alive opens a new stream", async () => {
    const { opens, lanes } = scripted();
    const a = lanes.send(1n);
    const b = lanes.send(2n);
    opens[0]?.resolve();
    await tick();
    opens[0]?.events.reply("2", 10);
    await expect(b.reply).resolves.toBe(10);
    opens[0]?.events.broken(new Error("stream broke"));
    await expect(a.reply).rejects.toThrow("stream broke");
    a.forget();
    b.forget();

    const c = lanes.send(1n);
    await tick();
    expect(opens).toHaveLength(2);
    opens[1]?.resolve();
    await tick();
    opens[1]?.events.reply("1", 0);
    await expect(c.reply).resolves.toBe(0);
  });

  it("replies for one lease go to its callers in order; a forgotten caller takes none", async () => {
    const { opens, lanes } = scripted();
    const x = lanes.send(5n);
    const y = lanes.send(5n);
    const z = lanes.send(5n);
    opens[0]?.resolve();
    await tick();
    y.forget();
    opens[0]?.events.reply("5", 11);
    opens[0]?.events.reply("5", 12);
    await expect(x.reply).resolves.toBe(11);
    await expect(z.reply).resolves.toBe(12);
  });
});
