import { type ChildProcess, spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { gatewayOnNode } from "../../src/node/gateway.js";

// Found by the verify partition scenarios: an instance on the JSON gateway transport cut
// off from etcd (its SYNs dropped) answered 503 after 10.5 s instead of after its 1 s
// etcd deadline, because undici heeds a request's abort only once it has a connection,
// and a connect that gets no answer lasts undici's 10 s connect timeout. Here the
// connect hangs on a listener whose process is stopped and whose accept queue is full:
// the kernel drops further SYNs, as a partition does.
let listener: ChildProcess;
let port = 0;
const fillers: Socket[] = [];
beforeAll(async () => {
  listener = spawn(process.execPath, [
    "-e",
    `require("node:net").createServer().listen({ port: 0, host: "127.0.0.1", backlog: 1 }, function () { console.log(this.address().port) })`,
  ]);
  port = await new Promise<number>((resolve) => listener.stdout?.once("data", (d) => resolve(Number(String(d)))));
  listener.kill("SIGSTOP");
  // The kernel completes the handshakes the accept queue holds; the next SYNs are dropped.
  await Promise.all(
    Array.from({ length: 3 }, () => {
      const s = connect(port, "127.0.0.1").on("error", () => {});
      fillers.push(s);
      return new Promise<void>((resolve) => {
        s.once("connect", () => resolve());
        setTimeout(resolve, 300); // the ones beyond the queue never connect
      });
    }),
  );
});
afterAll(() => {
  for (const s of fillers) s.destroy();
  listener?.kill("SIGKILL");
});

it("answers a call whose connection cannot be made within the call's deadline, not undici's connect timeout", {
  timeout: 20_000,
}, async () => {
  const etcd = gatewayOnNode({ endpoints: [`http://127.0.0.1:${port}`], timeoutMs: 500 });
  try {
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const err = await etcd.get("k").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EtcdUnavailableError);
      expect(performance.now() - started).toBeLessThan(2_000);
    }
  } finally {
    await etcd.close();
  }
});
