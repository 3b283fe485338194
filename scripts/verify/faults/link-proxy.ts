import { type AddressInfo, createConnection, createServer, type Socket } from "node:net";

/**
 * A TCP proxy on loopback for one network link, which a partition can cut: while its
 * link is cut a connection stalls in both directions (nothing is read, so nothing is
 * sent; TCP's flow control holds the rest back), and a new one is accepted but not
 * passed on; once healed, everything continues where it stopped. That is what a
 * dropped link looks like to the programs at both ends (nothing is reset), as far as a
 * proxy can show it: the fallback for machines where network namespaces cannot be made.
 *
 * `sniff`: an etcd peer link. etcd's members talk to each other over HTTP, and every
 * request of its raft transport names its sender in an `X-Server-From` header (the
 * member ID in hex); the proxy reads the head of a connection's first request and asks
 * `blocked` about that sender. Requests without it (etcd's probes, and lease renewals a
 * follower passes to the leader) are asked about with `undefined`.
 */
export interface LinkProxy {
  readonly port: number;
  /** Re-asks `blocked` for every connection: stalls or resumes them. */
  refresh(): void;
  stop(): Promise<void>;
}

export interface LinkProxyOptions {
  /** The port on 127.0.0.1 to pass connections to, asked at each new connection. */
  target: () => number;
  /** Whether connections from `from` (the sniffed sender, or undefined) are cut now. */
  blocked: (from: string | undefined) => boolean;
  sniff?: boolean;
}

interface Link {
  client: Socket;
  upstream?: Socket;
  from: string | undefined;
  stalled: boolean;
  /** Read from the client before the upstream connection was made. */
  pending: Buffer[];
  ready: boolean;
}

export async function startLinkProxy(o: LinkProxyOptions): Promise<LinkProxy> {
  const links = new Set<Link>();

  const pipe = (from: Socket, to: Socket, link: Link) => {
    from.on("data", (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause();
    });
    to.on("drain", () => {
      if (!link.stalled) from.resume();
    });
    from.once("end", () => to.end());
  };

  const connect = (link: Link) => {
    const upstream = createConnection({ host: "127.0.0.1", port: o.target() });
    link.upstream = upstream;
    upstream.on("error", () => link.client.destroy());
    upstream.once("close", () => link.client.destroy());
    for (const chunk of link.pending) upstream.write(chunk);
    link.pending = [];
    pipe(link.client, upstream, link);
    pipe(upstream, link.client, link);
    if (link.stalled) upstream.pause();
  };

  const apply = (link: Link) => {
    if (!link.ready) return;
    const stall = o.blocked(link.from);
    if (stall === link.stalled && (stall || link.upstream)) return;
    link.stalled = stall;
    if (stall) {
      link.client.pause();
      link.upstream?.pause();
      return;
    }
    if (!link.upstream) connect(link);
    link.client.resume();
    link.upstream?.resume();
  };

  const server = createServer((client) => {
    const link: Link = { client, from: undefined, stalled: false, pending: [], ready: !o.sniff };
    links.add(link);
    client.on("error", () => link.upstream?.destroy());
    client.once("close", () => {
      link.upstream?.destroy();
      links.delete(link);
    });
    if (!o.sniff) {
      client.pause();
      link.stalled = true;
      apply(link);
      return;
    }
    // Read the first request's head to learn who sends it.
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0 && head.length < 16_384) return;
      client.off("data", onHead);
      client.pause();
      const text = head.subarray(0, end < 0 ? head.length : end).toString("latin1");
      link.from = /^x-server-from:\s*([0-9a-f]+)\s*$/im.exec(text)?.[1];
      link.pending.push(head);
      link.ready = true;
      link.stalled = true;
      apply(link);
    };
    client.on("data", onHead);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    refresh() {
      for (const link of links) apply(link);
    },
    async stop() {
      for (const link of links) {
        link.client.destroy();
        link.upstream?.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
