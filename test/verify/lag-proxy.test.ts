import { type AddressInfo, createConnection, createServer, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type LagProxy, startLagProxy } from "../../scripts/verify/lag-proxy.js";

// The lock-set scenario stalls the clients' connections to one instance through this
// proxy, so that requests in flight arrive after their grant expired: a stall must hold
// every chunk until it ends, then deliver them all in order.
let echo: Server;
let proxy: LagProxy;
beforeAll(async () => {
  echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  proxy = await startLagProxy(`http://127.0.0.1:${(echo.address() as AddressInfo).port}`, 0);
});
afterAll(async () => {
  await proxy?.stop();
  await new Promise<void>((r) => echo.close(() => r()));
});

/** Resolves with everything read once `n` characters have arrived. */
const read = (s: Socket, n: number) =>
  new Promise<string>((resolve) => {
    let got = "";
    s.on("data", (d: Buffer) => {
      got += d.toString();
      if (got.length >= n) resolve(got);
    });
  });

it("passes data through at once, and holds it all during a stall, then delivers it in order", async () => {
  const port = Number(new URL(proxy.endpoint).port);
  const s = createConnection({ host: "127.0.0.1", port });
  try {
    await new Promise<void>((r) => s.once("connect", () => r()));
    const first = read(s, 1);
    s.write("x");
    expect(await first).toBe("x");
    s.removeAllListeners("data");

    const started = performance.now();
    const stalled = proxy.stall(400);
    const all = read(s, 5);
    for (const c of "abcde") s.write(c);
    const got = await all;
    expect(performance.now() - started).toBeGreaterThanOrEqual(395);
    expect(got).toBe("abcde");
    await stalled;
  } finally {
    s.destroy();
  }
});
