import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../../src/node/local-etcd.js";
import { type LinkProxy, startLinkProxy } from "./link-proxy.js";
import { createNamespaces, type Namespaces, namespacesUnavailable } from "./netns.js";

/**
 * The network the partition and membership scenarios run on: etcd member slots `m0`…
 * and service instances `i0`…, each a node that a partition can cut off from others.
 * Real network namespaces where the machine allows (see netns.ts), else a TCP proxy on
 * every link (see link-proxy.ts). Either way the checker itself reaches every member
 * (to read etcd) and every instance (its clients) outside the partitioned network.
 */
export interface FaultNetwork {
  readonly kind: "netns" | "proxy";
  /** What ran, for the report (and why the fallback, if it ran). */
  readonly description: string;
  /** How to start a new etcd process for member slot `slot` (see `startLocalEtcd`). */
  launchMember(slot: number): Promise<{ bin?: string; clientPort: number; peerPort: number; args: string[] }>;
  /** The peer URL member slot `slot` advertises (the same for every member started there). */
  peerUrl(slot: number): string;
  /** Where the checker reaches member slot `slot`'s client API (never cut). */
  adminEndpoint(slot: number): string;
  /** ETCD_ENDPOINTS of instance `k`: every member slot, through the partitioned network. */
  instanceEndpoints(k: number): string[];
  /** How to start instance `k` (the same port at each start). */
  launchInstance(k: number): Promise<{ port?: number; wrapper?: string[] }>;
  /** Learns the member ID (hex) of the member now in slot `slot` (the proxies tell senders apart by it). */
  memberId(slot: number, hex: string): void;
  /** Cuts every link between a node of `a` and a node of `b` (`m0`, `i1`...), both ways. */
  partition(a: readonly string[], b: readonly string[]): Promise<void>;
  heal(): Promise<void>;
  destroy(): Promise<void>;
}

const CLIENT_PORT = 2379;
const PEER_PORT = 2380;

/**
 * Namespaces if `VERIFY_PARTITIONS` is not `proxy` and they can be made here; proxies if
 * it is `proxy` or they cannot (unless it is `netns`: then that is an error).
 */
export async function startNetwork(members: number, instances: number): Promise<FaultNetwork> {
  const want = process.env.VERIFY_PARTITIONS;
  if (want !== undefined && want !== "netns" && want !== "proxy") {
    throw new Error(`VERIFY_PARTITIONS must be netns or proxy, not ${JSON.stringify(want)}`);
  }
  if (want === "proxy") return proxyNetwork(members, instances, "VERIFY_PARTITIONS=proxy");
  const why = await namespacesUnavailable();
  if (why === undefined) return netnsNetwork(members, instances);
  if (want === "netns") throw new Error(`VERIFY_PARTITIONS=netns, but ${why}`);
  return proxyNetwork(members, instances, why);
}

async function netnsNetwork(members: number, instances: number): Promise<FaultNetwork> {
  const m = Array.from({ length: members }, (_, i) => `m${i}`);
  const k = Array.from({ length: instances }, (_, i) => `i${i}`);
  const ns: Namespaces = await createNamespaces([...m, ...k]);
  const bins = mkdtempSync(join(tmpdir(), "leasehold-verify-netns-"));
  try {
    const admin: number[] = [];
    for (const node of m) admin.push(await ns.expose(node));
    const instancePorts = new Map<number, number>();
    const url = (node: string, port: number) => `http://${ns.address(node)}:${port}`;
    return {
      kind: "netns",
      description: `network namespaces (one per etcd member and service instance, veth pairs to a bridge, loopback-range addresses ${ns.address("m0")}… on them; partitions are nft drops)`,
      async launchMember(slot) {
        const node = `m${slot}`;
        // startLocalEtcd runs `bin`: a script that runs etcd in the member's namespace.
        const bin = join(bins, `etcd-${node}`);
        writeFileSync(bin, `#!/bin/sh\nexec ${ns.wrapper(node).join(" ")} "\${ETCD_BIN:-etcd}" "$@"\n`);
        chmodSync(bin, 0o755);
        const port = admin[slot] as number;
        return {
          bin,
          clientPort: port,
          peerPort: PEER_PORT,
          args: [
            "--listen-client-urls",
            `http://127.0.0.1:${port},${url(node, CLIENT_PORT)}`,
            "--advertise-client-urls",
            url(node, CLIENT_PORT),
            "--listen-peer-urls",
            url(node, PEER_PORT),
            "--initial-advertise-peer-urls",
            url(node, PEER_PORT),
          ],
        };
      },
      peerUrl: (slot) => url(`m${slot}`, PEER_PORT),
      adminEndpoint: (slot) => `http://127.0.0.1:${admin[slot]}`,
      instanceEndpoints: () => m.map((node) => url(node, CLIENT_PORT)),
      async launchInstance(i) {
        let port = instancePorts.get(i);
        if (port === undefined) {
          port = await ns.expose(`i${i}`);
          instancePorts.set(i, port);
        }
        return { port, wrapper: ns.wrapper(`i${i}`) };
      },
      memberId() {},
      partition: (a, b) => ns.partition(a, b),
      heal: () => ns.heal(),
      async destroy() {
        await ns.destroy();
        rmSync(bins, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await ns.destroy();
    rmSync(bins, { recursive: true, force: true });
    throw err;
  }
}

async function proxyNetwork(members: number, instances: number, why: string): Promise<FaultNetwork> {
  /** Cut links, as "a|b" with a < b. */
  const cuts = new Set<string>();
  const pair = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);
  const cut = (a: string, b: string) => cuts.has(pair(a, b));
  const real = Array.from({ length: members }, () => ({ client: 0, peer: 0 }));
  const slotOf = new Map<string, number>();
  const proxies: LinkProxy[] = [];
  const start = async (o: Parameters<typeof startLinkProxy>[0]) => {
    const p = await startLinkProxy(o);
    proxies.push(p);
    return p;
  };
  try {
    const peer: LinkProxy[] = [];
    const admin: LinkProxy[] = [];
    for (let s = 0; s < members; s++) {
      const to = `m${s}`;
      peer.push(
        await start({
          target: () => real[s]?.peer ?? 0,
          sniff: true,
          blocked: (from) => {
            const f = from === undefined ? undefined : slotOf.get(from);
            if (f !== undefined) return cut(`m${f}`, to);
            // A sender it cannot name: cut while this member is cut from any other member.
            return [...cuts].some((c) => c.split("|").includes(to) && c.split("|").every((n) => n.startsWith("m")));
          },
        }),
      );
      admin.push(await start({ target: () => real[s]?.client ?? 0, blocked: () => false }));
    }
    const client: LinkProxy[][] = [];
    for (let k = 0; k < instances; k++) {
      const row: LinkProxy[] = [];
      for (let s = 0; s < members; s++) {
        row.push(await start({ target: () => real[s]?.client ?? 0, blocked: () => cut(`i${k}`, `m${s}`) }));
      }
      client.push(row);
    }
    const refresh = () => {
      for (const p of proxies) p.refresh();
    };
    return {
      kind: "proxy",
      description: `TCP proxies on loopback, one per link (each etcd member's peer links, told apart by etcd's X-Server-From header, and each instance's link to each member), which stall a cut link's connections; network namespaces were not used: ${why}`,
      async launchMember(slot) {
        const ports = { client: await freePort(), peer: await freePort() };
        real[slot] = ports;
        return {
          clientPort: ports.client,
          peerPort: ports.peer,
          args: ["--initial-advertise-peer-urls", `http://127.0.0.1:${peer[slot]?.port}`],
        };
      },
      peerUrl: (slot) => `http://127.0.0.1:${peer[slot]?.port}`,
      adminEndpoint: (slot) => `http://127.0.0.1:${admin[slot]?.port}`,
      instanceEndpoints: (k) => (client[k] ?? []).map((p) => `http://127.0.0.1:${p.port}`),
      async launchInstance() {
        return {};
      },
      memberId(slot, hex) {
        slotOf.set(hex, slot);
      },
      async partition(a, b) {
        for (const x of a) for (const y of b) cuts.add(pair(x, y));
        refresh();
      },
      async heal() {
        cuts.clear();
        refresh();
      },
      async destroy() {
        await Promise.all(proxies.map((p) => p.stop()));
      },
    };
  } catch (err) {
    await Promise.all(proxies.map((p) => p.stop()));
    throw err;
  }
}
