import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FrameReader } from "../../src/etcd/grpc/channel.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { startTestEtcd } from "../support/etcd.js";
import { eventually } from "../support/http.js";

/**
 * The gRPC transport's own HTTP/2 channel (src/etcd/grpc/channel.ts). The conformance
 * suite (transport.test.ts) covers what every transport does; these cover what is the
 * channel's own: the framing, and a connection that stops answering.
 */

const framed = (...messages: string[]) =>
  Buffer.concat(
    messages.map((m) => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(Buffer.byteLength(m), 1);
      return Buffer.concat([head, Buffer.from(m)]);
    }),
  );

describe("FrameReader", () => {
  it("splits messages out of chunks cut anywhere, several to a chunk or one across many", () => {
    const bytes = framed("first", "", "the third message");
    for (let cut = 0; cut <= bytes.length; cut++) {
      for (let cut2 = cut; cut2 <= bytes.length; cut2++) {
        const r = new FrameReader();
        const got = [
          ...r.push(bytes.subarray(0, cut)),
          ...r.push(bytes.subarray(cut, cut2)),
          ...r.push(bytes.subarray(cut2)),
        ];
        expect(got.map(String)).toEqual(["first", "", "the third message"]);
      }
    }
  });

  it("refuses a compressed message (none was asked for) and one over 4 MiB", () => {
    const compressed = framed("x");
    compressed[0] = 1;
    expect(() => new FrameReader().push(compressed)).toThrow(/compressed/);
    const huge = Buffer.alloc(5);
    huge.writeUInt32BE(4 * 1024 * 1024 + 1, 1);
    expect(() => new FrameReader().push(huge)).toThrow(/larger than max/);
  });
});

/** A TCP proxy whose `freeze()` stops forwarding on the connections open now, without closing them. */
async function freezingProxy(upstream: string) {
  const target = new URL(upstream);
  const pairs: { client: Socket; up: Socket }[] = [];
  const server = createServer((client) => {
    const up = connect(Number(target.port), target.hostname);
    for (const s of [client, up]) s.on("error", () => {});
    client.pipe(up);
    up.pipe(client);
    pairs.push({ client, up });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => pairs.length,
    freeze() {
      for (const { client, up } of pairs) {
        client.unpipe(up);
        up.unpipe(client);
        client.pause();
        up.pause();
      }
    },
    async stop() {
      for (const { client, up } of pairs) {
        client.destroy();
        up.destroy();
      }
      await new Promise((r) => server.close(r));
    },
  };
}

describe("a connection that stops answering", () => {
  let etcd: Awaited<ReturnType<typeof startTestEtcd>>;
  beforeAll(async () => {
    etcd = await startTestEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it("is dropped once a call misses its deadline and a ping goes unanswered: later calls connect anew", async () => {
    const proxy = await freezingProxy(etcd.endpoint);
    const client = createGrpcEtcd({ endpoints: [proxy.url], timeoutMs: 1_000 });
    try {
      await client.ping();
      expect(proxy.connections()).toBe(1);
      proxy.freeze();
      await expect(client.get("k")).rejects.toBeInstanceOf(EtcdUnavailableError);
      // Nothing ends the frozen connection from outside (no FIN, no RST): only the
      // channel's own check can move the calls to a new one.
      await eventually(() => client.get("k"), "a read over a new connection");
      expect(proxy.connections()).toBe(2);
    } finally {
      await client.close();
      await proxy.stop();
    }
  });
});
