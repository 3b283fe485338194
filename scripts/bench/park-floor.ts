/**
 * The memory floor of a parked request: what N requests that wait for an answer cost a
 * Node server before any lock logic, on a bare `node:http` server and on Hono served by
 * @hono/node-server with 0 and 2 middleware levels (the service has three: request id
 * and log, auth, a route's checks). The requests come from a child process, so only the server's memory is
 * counted; both figures are read after a full collection, so they are the live floor,
 * lower than the peak the bench's waiters10k case reads.
 *
 *   npx tsx scripts/bench/park-floor.ts [--n=10000]   (needs ulimit -n above 2 × N)
 */
import { fork } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { Hono } from "hono";

const BODY = '{"wait":60}';
const REQUEST = `POST /x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`;
const self = fileURLToPath(import.meta.url);
const arg = (name: string) =>
  new RegExp(`^--${name}=(.+)$`).exec(process.argv.find((a) => a.startsWith(`--${name}=`)) ?? "")?.[1];
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Mode = "bare" | "hono-0" | "hono-2";

async function opener(port: number, n: number): Promise<void> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, "127.0.0.1");
    s.on("error", () => {});
    s.write(REQUEST);
    sockets.push(s);
    // At most a few hundred connecting at once, as a crowd that arrives.
    if (i % 200 === 199) await pause(5);
  }
  process.on("message", () => process.exit(0));
}

async function server(mode: Mode, n: number): Promise<void> {
  const parked: unknown[] = [];
  let port = 0;
  if (mode === "bare") {
    const s = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => parked.push(res));
    });
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    port = (s.address() as net.AddressInfo).port;
  } else {
    const app = new Hono();
    const levels = mode === "hono-2" ? 2 : 0;
    for (let i = 0; i < levels; i++) app.use((_c, next) => next());
    app.post("/x", async (c) => {
      await c.req.json();
      await new Promise((r) => parked.push(r));
      return c.json({ ok: true }, 201);
    });
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
    await new Promise<void>((r) => s.once("listening", r));
    port = (s.address() as net.AddressInfo).port;
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc");
  await pause(200);
  gc();
  const before = process.memoryUsage();
  const child = fork(self, ["--open", `--port=${port}`, `--n=${n}`], { execArgv: ["--import", "tsx"] });
  while (parked.length < n) await pause(100);
  await pause(500);
  gc();
  const after = process.memoryUsage();
  const kb = (bytes: number) => (bytes / n / 1024).toFixed(1);
  const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
  console.log(
    `${mode.padEnd(7)} ${n} parked: RSS ${mb(before.rss)} → ${mb(after.rss)} MB (${kb(after.rss - before.rss)} KB each), ` +
      `heap ${mb(before.heapUsed)} → ${mb(after.heapUsed)} MB (${kb(after.heapUsed - before.heapUsed)} KB each)`,
  );
  child.send("done");
  process.exit(0);
}

if (process.argv.includes("--open")) {
  await opener(Number(arg("port")), Number(arg("n")));
} else if (arg("mode")) {
  await server(arg("mode") as Mode, Number(arg("n") ?? 10_000));
} else {
  // Each mode in a fresh process, so one's heap does not carry into the next.
  const n = Number(arg("n") ?? 10_000);
  for (const mode of ["bare", "hono-0", "hono-2"] as const) {
    const child = fork(self, [`--mode=${mode}`, `--n=${n}`], { execArgv: ["--import", "tsx", "--expose-gc"] });
    await new Promise((r) => child.once("exit", r));
  }
}
