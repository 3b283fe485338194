import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../../src/node/local-etcd.js";
import { atCheckerEnd } from "../checker-end.js";

/**
 * A private network of Linux network namespaces for real partitions: one namespace per
 * node (an etcd member or a service instance), each joined by a veth pair to a bridge in
 * a hub namespace of its own. Every node has one loopback-range address (127.77.0.N/24)
 * on its veth, which routes between namespaces once the namespace's `lo` holds only
 * 127.0.0.1/32 (so 127.0.0.0/8 is no longer all local) and `route_localnet` lets 127/8
 * leave through the veth; the host's own network (the root namespace) gets no address,
 * route, rule or interface. Partitions are nft rules in the nodes' namespaces that drop
 * packets to and from the other side (a real partition: connections stall, nothing
 * resets). The checker reaches a node's port through a Unix socket (see forward.mjs),
 * never through the partitioned network, so clients still reach an instance cut off from
 * etcd.
 *
 * Everything is named after the checker's PID and a random tag: cleaned up by `destroy`,
 * on the checker's exit or SIGINT/SIGTERM, and, after a SIGKILL, by the next run, which
 * deletes the namespaces of checkers no longer alive (and stops what still runs in them).
 */
export interface Namespaces {
  /** This run's name prefix. */
  readonly id: string;
  /** The node's address on the private network. */
  address(node: string): string;
  /** The command prefix that runs a program inside the node's namespace. */
  wrapper(node: string): string[];
  /**
   * Picks a port free on this host's loopback and makes 127.0.0.1:<port> inside the
   * node's namespace reachable at 127.0.0.1:<port> here; returns the port, for the
   * node's process to listen on inside its namespace.
   */
  expose(node: string): Promise<number>;
  /** Drops every packet between any node of `a` and any node of `b` (both ways). */
  partition(a: readonly string[], b: readonly string[]): Promise<void>;
  /** Removes every drop. */
  heal(): Promise<void>;
  /** Names of this run's namespaces that exist now. */
  existing(): string[];
  /** Stops what runs in the namespaces and deletes them. */
  destroy(): Promise<void>;
}

const PREFIX = "lhv-";
const TABLE = "lhv";
const forwardScript = new URL("./forward.mjs", import.meta.url).pathname;

const exec = (cmd: string, args: string[], input?: string) =>
  new Promise<string>((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: "utf8", timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });

const nftTable = `table inet ${TABLE} {
  chain input { type filter hook input priority 0; policy accept; }
  chain output { type filter hook output priority 0; policy accept; }
}
`;

/** Every namespace name in the system. */
function allNamespaces(): string[] {
  try {
    return readdirSync("/run/netns");
  } catch {
    return [];
  }
}

/**
 * Why namespaces with nft drops cannot be used on this machine (not root, no `ip`, no
 * `nft`, a kernel without them...), or undefined when a probe namespace could be made,
 * given an nft table and deleted.
 */
export async function namespacesUnavailable(): Promise<string | undefined> {
  const probe = `${PREFIX}${process.pid.toString(36)}-probe${Math.random().toString(36).slice(2, 6)}`;
  try {
    await exec("ip", ["netns", "add", probe]);
  } catch (err) {
    return `a network namespace could not be created (${(err as Error).message})`;
  }
  try {
    await exec("ip", ["netns", "exec", probe, "nft", "-f", "-"], nftTable);
    return undefined;
  } catch (err) {
    return `nft could not add a table in a namespace (${(err as Error).message}; Debian: apt-get install nftables)`;
  } finally {
    await exec("ip", ["netns", "del", probe]).catch(() => {});
  }
}

/** PID of the checker that made a namespace, from its name. */
const ownerOf = (name: string) => Number.parseInt(name.slice(PREFIX.length).split("-")[0] ?? "", 36);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** SIGKILLs whatever runs in the namespace and deletes it (synchronously: usable on exit). */
function removeNow(name: string): void {
  try {
    const pids = execFileSync("ip", ["netns", "pids", name], { encoding: "utf8", timeout: 5_000 });
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
  } catch {}
  try {
    execFileSync("ip", ["netns", "del", name], { stdio: "ignore", timeout: 5_000 });
  } catch {}
}

/** Namespaces (and socket dirs) of checkers that died without cleaning up. */
export function sweepStale(): string[] {
  const swept: string[] = [];
  for (const name of allNamespaces()) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = ownerOf(name);
    if (!Number.isFinite(pid) || alive(pid)) continue;
    removeNow(name);
    swept.push(name);
  }
  for (const dir of readdirSync(tmpdir())) {
    if (!dir.startsWith(PREFIX)) continue;
    const pid = ownerOf(dir);
    if (Number.isFinite(pid) && !alive(pid)) rmSync(join(tmpdir(), dir), { recursive: true, force: true });
  }
  return swept;
}

/** Makes the namespaces of `nodes` (an address each, in order) and the hub between them. */
export async function createNamespaces(nodes: readonly string[]): Promise<Namespaces> {
  sweepStale();
  const id = `${PREFIX}${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  const hub = `${id}-hub`;
  const ns = (node: string) => `${id}-${node}`;
  const addresses = new Map(nodes.map((n, i) => [n, `127.77.0.${10 + i}`]));
  const made: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), `${id}-`));
  const helpers: ChildProcess[] = [];
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const dirty = new Set<string>();

  const cleanupNow = () => {
    for (const h of helpers) h.kill("SIGKILL");
    for (const name of [...made].reverse()) removeNow(name);
    made.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };
  // Removed on the checker's exit, SIGINT or SIGTERM; after a SIGKILL, by the next run.
  const untrack = atCheckerEnd(cleanupNow);
  const node = (n: string) => {
    if (!addresses.has(n)) throw new Error(`no node ${n} in this network`);
    return ns(n);
  };

  try {
    await exec("ip", ["netns", "add", hub]);
    made.push(hub);
    await exec("ip", ["-n", hub, "link", "add", "br0", "type", "bridge"]);
    await exec("ip", ["-n", hub, "link", "set", "br0", "up"]);
    for (const [i, n] of nodes.entries()) {
      const name = ns(n);
      await exec("ip", ["netns", "add", name]);
      made.push(name);
      const port = `v${i}`;
      await exec("ip", ["-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name]);
      await exec("ip", ["-n", hub, "link", "set", port, "master", "br0", "up"]);
      await exec("ip", ["-n", name, "link", "set", "lo", "up"]);
      // 127.0.0.1/8 on lo makes all of 127/8 local; keep only 127.0.0.1 so the rest routes.
      await exec("ip", ["-n", name, "addr", "del", "127.0.0.1/8", "dev", "lo"]);
      await exec("ip", ["-n", name, "addr", "add", "127.0.0.1/32", "dev", "lo"]);
      await exec("ip", [
        "netns",
        "exec",
        name,
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet",
      ]);
      await exec("ip", ["-n", name, "addr", "add", `${addresses.get(n)}/24`, "dev", "eth0"]);
      await exec("ip", ["-n", name, "link", "set", "eth0", "up"]);
      await exec("ip", ["netns", "exec", name, "nft", "-f", "-"], nftTable);
    }
  } catch (err) {
    cleanupNow();
    untrack();
    throw err;
  }

  const startHelper = async (n: string, port: number, socket: string) => {
    const child = spawn("ip", ["netns", "exec", node(n), process.execPath, forwardScript, socket, String(port)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    helpers.push(child);
    let err = "";
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once("data", () => resolve());
      child.once("exit", (code) => reject(new Error(`the forwarder in ${n} exited (${code}): ${err.trim()}`)));
    });
  };

  return {
    id,
    address: (n) => {
      node(n);
      return addresses.get(n) as string;
    },
    wrapper: (n) => ["ip", "netns", "exec", node(n)],
    async expose(n) {
      const server = createServer((client) => {
        sockets.add(client);
        const upstream = createConnection(socketOf(port));
        sockets.add(upstream);
        client.pipe(upstream);
        upstream.pipe(client);
        client.on("error", () => upstream.destroy());
        upstream.on("error", () => client.destroy());
        client.on("close", () => {
          upstream.destroy();
          sockets.delete(client);
        });
        upstream.on("close", () => {
          client.destroy();
          sockets.delete(upstream);
        });
      });
      const socketOf = (p: number) => join(dir, `${n}.${p}.sock`);
      let port = 0;
      // A port found free can be taken before it is bound: try others.
      for (let attempt = 1; port === 0; attempt++) {
        const candidate = await freePort();
        try {
          await new Promise<void>((resolve, reject) => {
            server.once("error", reject);
            server.listen(candidate, "127.0.0.1", () => {
              server.off("error", reject);
              resolve();
            });
          });
          port = candidate;
        } catch (err) {
          if (attempt >= 10) throw err;
        }
      }
      servers.push(server);
      await startHelper(n, port, socketOf(port));
      return port;
    },
    async partition(a, b) {
      for (const x of a) {
        const rules = b.flatMap((y) => {
          const addr = addresses.get(y);
          if (!addr) throw new Error(`no node ${y} in this network`);
          return [
            `add rule inet ${TABLE} input ip saddr ${addr} drop`,
            `add rule inet ${TABLE} output ip daddr ${addr} drop`,
          ];
        });
        await exec("ip", ["netns", "exec", node(x), "nft", "-f", "-"], `${rules.join("\n")}\n`);
        dirty.add(x);
      }
    },
    async heal() {
      for (const x of dirty) {
        await exec(
          "ip",
          ["netns", "exec", node(x), "nft", "-f", "-"],
          `flush chain inet ${TABLE} input\nflush chain inet ${TABLE} output\n`,
        );
      }
      dirty.clear();
    },
    existing: () => allNamespaces().filter((n) => n.startsWith(`${id}-`)),
    async destroy() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      await Promise.all(
        helpers.map(
          (h) =>
            new Promise<void>((resolve) => {
              if (h.exitCode !== null || h.signalCode !== null) return resolve();
              h.once("exit", () => resolve());
              h.kill("SIGTERM");
            }),
        ),
      );
      cleanupNow();
      untrack();
    },
  };
}
