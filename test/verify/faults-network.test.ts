import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLinkProxy } from "../../scripts/verify/faults/link-proxy.js";
import { createNamespaces, namespacesUnavailable, sweepStale } from "../../scripts/verify/faults/netns.js";
import { startNetwork } from "../../scripts/verify/faults/network.js";
import { until } from "../support/http.js";

// The partition scenarios' networks: real namespaces where the machine allows, and the
// TCP proxy per link that replaces them where it does not. Both are tested here: the
// namespaces whenever they can be made (else it is asserted that the scenarios fall back
// to the proxies), the proxies always.

const tsx = new URL("../../node_modules/.bin/tsx", import.meta.url).pathname;
const child = new URL("./fixtures/netns-child.ts", import.meta.url).pathname;
const namespaces = () => {
  try {
    return readdirSync("/run/netns");
  } catch {
    return [];
  }
};

/** Lines a TCP peer received, and a way to send it more. */
function line(socket: Socket) {
  const got: string[] = [];
  socket.setEncoding("utf8");
  socket.on("data", (d: string) => got.push(...d.split("\n").filter(Boolean)));
  return { got, send: (s: string) => socket.write(`${s}\n`) };
}

/** Waits for `arrived`, and asserts that it came only after `heal` ran. */
async function arrivesOnlyOnceHealed(arrived: () => boolean, what: string, heal: () => void) {
  const events: string[] = [];
  const arriving = until(arrived, what).then(() => events.push("arrived"));
  // Nothing to wait for while cut (a partition delivers nothing): give it time to leak.
  await new Promise((r) => setTimeout(r, 300));
  events.push("healed");
  heal();
  await arriving;
  expect(events).toEqual(["healed", "arrived"]);
}

describe("link proxy (the fallback)", () => {
  let echo: Server;
  let port = 0;
  beforeAll(async () => {
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    port = (echo.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => echo.close(() => r())));

  it("stalls a cut link's connection both ways and lets it continue, intact, once healed", async () => {
    let cut = false;
    const proxy = await startLinkProxy({ target: () => port, blocked: () => cut });
    const socket = createConnection({ host: "127.0.0.1", port: proxy.port });
    const c = line(socket);
    try {
      c.send("one");
      await until(() => c.got.includes("one"), "the echo through the proxy");
      cut = true;
      proxy.refresh();
      c.send("two");
      await arrivesOnlyOnceHealed(
        () => c.got.includes("two"),
        "the stalled line",
        () => {
          cut = false;
          proxy.refresh();
        },
      );
      expect(c.got).toEqual(["one", "two"]);
    } finally {
      socket.destroy();
      await proxy.stop();
    }
  });

  it("tells etcd peers apart by X-Server-From and cuts only the named sender's connections", async () => {
    let cutFrom: string | undefined = "a1";
    const proxy = await startLinkProxy({ target: () => port, sniff: true, blocked: (from) => from === cutFrom });
    const open = (from: string | undefined) => {
      const s = createConnection({ host: "127.0.0.1", port: proxy.port });
      const c = line(s);
      s.write(`GET /raft/stream/message/1 HTTP/1.1\r\nHost: x\r\n${from ? `X-Server-From: ${from}\r\n` : ""}\r\n`);
      return { s, c };
    };
    const a = open("a1");
    const b = open("b2");
    const anon = open(undefined);
    try {
      await until(() => b.c.got.some((l) => l.startsWith("X-Server-From: b2")), "b2's request echoed");
      await until(() => anon.c.got.some((l) => l.startsWith("GET")), "an unnamed sender's request echoed");
      await arrivesOnlyOnceHealed(
        () => a.c.got.some((l) => l.startsWith("X-Server-From: a1")),
        "a1's request",
        () => {
          cutFrom = undefined;
          proxy.refresh();
        },
      );
    } finally {
      for (const x of [a, b, anon]) x.s.destroy();
      await proxy.stop();
    }
  });
});

describe("network namespaces", async () => {
  const unavailable = await namespacesUnavailable();

  it("are used for partitions where they can be made, else the scenarios fall back to proxies (and say why)", async () => {
    const network = await startNetwork(1, 1);
    try {
      if (unavailable) {
        expect(network.kind).toBe("proxy");
        expect(network.description).toContain(unavailable);
      } else {
        expect(network.kind).toBe("netns");
      }
    } finally {
      await network.destroy();
    }
  });

  if (unavailable) return;

  it("route loopback-range addresses between namespaces, drop a partitioned link both ways, and heal", async () => {
    const n = await createNamespaces(["a", "b"]);
    const servers: ReturnType<typeof spawn>[] = [];
    try {
      expect(n.existing().length).toBe(3); // a, b and the hub
      const port = await n.expose("b");
      const [cmd = "ip", ...args] = n.wrapper("b");
      const server = spawn(cmd, [
        ...args,
        process.execPath,
        "-e",
        `require("node:http").createServer((q, s) => s.end(q.socket.remoteAddress)).listen(${port}, "0.0.0.0")`,
      ]);
      servers.push(server);
      const fromChecker = async () => {
        try {
          return await (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1_000) })).text();
        } catch {
          return "";
        }
      };
      /** b's answer to a request from a's namespace ("timeout" when none comes within 1 s). */
      const fromA = () =>
        new Promise<string>((resolve) => {
          const [c = "ip", ...a] = n.wrapper("a");
          const p = spawn(c, [
            ...a,
            process.execPath,
            "-e",
            `fetch("http://${n.address("b")}:${port}/", { signal: AbortSignal.timeout(1000) }).then((r) => r.text()).then((t) => process.stdout.write(t), (e) => process.stdout.write(e.name === "TimeoutError" ? "timeout" : String(e)))`,
          ]);
          let out = "";
          p.stdout.on("data", (d: Buffer) => {
            out += d.toString();
          });
          p.once("exit", () => resolve(out));
        });
      await until(async () => (await fromChecker()) === "127.0.0.1", "b answering the checker through its socket");
      expect(await fromA()).toBe(n.address("a"));
      await n.partition(["a"], ["b"]);
      expect(await fromA()).toBe("timeout");
      expect(await fromChecker()).toBe("127.0.0.1"); // the checker's path is never cut
      await n.heal();
      expect(await fromA()).toBe(n.address("a"));
    } finally {
      for (const s of servers) s.kill("SIGKILL");
      await n.destroy();
    }
    expect(n.existing()).toEqual([]);
  });

  /** Starts a checker that makes a network and returns its id once it has. */
  async function checker() {
    // In a process group of its own: tsx runs the script in a child process, and a
    // SIGKILL must take both (as when a test runner kills its worker's group).
    const p = spawn(tsx, [child], { stdio: ["pipe", "pipe", "inherit"], detached: true });
    let out = "";
    p.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    await until(() => out.includes("\n") || p.exitCode !== null, "the child checker's network", 30_000);
    const id = out.trim();
    expect(id).toMatch(/^lhv-/);
    expect(namespaces().filter((x) => x.startsWith(id)).length).toBe(3);
    return { p, id, exited };
  }
  const mine = (id: string) => namespaces().filter((x) => x.startsWith(`${id}-`));

  it("are removed when the checker exits without cleaning up, or is stopped by SIGTERM or SIGINT", async () => {
    const a = await checker();
    a.p.stdin?.write("exit\n");
    await a.exited;
    expect(mine(a.id)).toEqual([]);
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      const b = await checker();
      b.p.kill(signal);
      await b.exited;
      expect(mine(b.id)).toEqual([]);
    }
  });

  it("left behind by a SIGKILLed checker are removed by the next one", async () => {
    const c = await checker();
    process.kill(-(c.p.pid as number), "SIGKILL");
    await c.exited;
    // Its script's process (tsx's child) goes a moment after tsx itself.
    const owner = Number.parseInt(c.id.split("-")[1] ?? "", 36);
    await until(() => {
      try {
        process.kill(owner, 0);
        return false;
      } catch {
        return true;
      }
    }, "the killed checker's process to be gone");
    expect(mine(c.id).length).toBe(3);
    expect(sweepStale()).toEqual(expect.arrayContaining(mine(c.id)));
    expect(mine(c.id)).toEqual([]);
  });
});
