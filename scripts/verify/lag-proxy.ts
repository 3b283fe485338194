import { type AddressInfo, createConnection, createServer, type Socket } from "node:net";

/**
 * A TCP proxy on loopback that delays every chunk by `delayMs` in each direction (order
 * kept): an instance that reaches etcd through it lags behind etcd by a few
 * milliseconds, which widens every read-then-act window in it (e.g. a force release's
 * read of a lease and what it does next) as a busy network would.
 */
export interface LagProxy {
  /** `http://127.0.0.1:<port>` to give the instance in place of the upstream endpoint. */
  readonly endpoint: string;
  stop(): Promise<void>;
}

export async function startLagProxy(upstream: string, delayMs: number): Promise<LagProxy> {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  };
  /** Writes each chunk of `from` to `to` `delayMs` after it arrived, in arrival order. */
  const pipeLate = (from: Socket, to: Socket) => {
    from.on("data", (chunk: Buffer) => {
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, delayMs);
    });
    from.once("end", () => setTimeout(() => to.end(), delayMs));
    from.once("error", () => to.destroy());
    from.once("close", () => setTimeout(() => to.destroy(), delayMs));
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
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
