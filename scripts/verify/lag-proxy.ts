import { type AddressInfo, createConnection, createServer, type Socket } from "node:net";
import { performance } from "node:perf_hooks";

/**
 * A TCP proxy on loopback that delays every chunk by `delayMs` in each direction (order
 * kept): an instance that reaches etcd through it lags behind etcd by a few
 * milliseconds, which widens every read-then-act window in it (e.g. a force release's
 * read of a lease and what it does next) as a busy network would. It can also stall:
 * hold everything for a while, then deliver it all in order, as a network that stops
 * moving (or a paused process on the other end) would.
 */
export interface LagProxy {
  /** `http://127.0.0.1:<port>` to give the instance in place of the upstream endpoint. */
  readonly endpoint: string;
  /**
   * Holds every chunk in both directions (and new connections' data) for `ms`, then
   * delivers what was held in arrival order; resolves when the stall ends.
   */
  stall(ms: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startLagProxy(upstream: string, delayMs: number): Promise<LagProxy> {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  let stalledUntil = 0;
  const track = (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  };
  /** Writes each chunk of `from` to `to` `delayMs` after it arrived (or when a stall ends), in arrival order. */
  const pipeLate = (from: Socket, to: Socket) => {
    let last = 0;
    const later = (act: () => void) => {
      const now = performance.now();
      last = Math.max(now + delayMs, stalledUntil, last);
      setTimeout(act, last - now);
    };
    from.on("data", (chunk: Buffer) => {
      later(() => {
        if (!to.destroyed) to.write(chunk);
      });
    });
    from.once("end", () => later(() => to.end()));
    from.once("error", () => to.destroy());
    from.once("close", () => later(() => to.destroy()));
  };
  const server = createServer((client) => {
    track(client);
    const up = createConnection({ host: target.hostname, port: Number(target.port) });
    track(up);
    pipeLate(client, up);
    pipeLate(up, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stall(ms) {
      stalledUntil = Math.max(stalledUntil, performance.now() + ms);
      return new Promise((r) => setTimeout(r, ms));
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
