import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { apiKeysFromConfig } from "../../src/auth/api-keys.js";
import { parseConfig } from "../../src/config.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import type { EtcdClient } from "../../src/etcd/types.js";
import { buildNodeApp } from "../../src/node/build.js";
import { answerHttpErrors } from "../../src/node/http-errors.js";
import { pinoLogger } from "../../src/node/logger.js";
import { startTestEtcd } from "./etcd.js";

export type Transport = "grpc" | "http";

export interface TestService {
  url: string;
  etcd: Awaited<ReturnType<typeof startTestEtcd>>;
  /** A direct etcd client for assertions on what the service stored. */
  direct: EtcdClient;
  /** Every log line the service wrote. */
  logs: string[];
  prefix: string;
  /** This instance's waiter count, where the test can see into the process (Node). */
  activeWaiters?: () => number;
  /** How many TCP connections callers have opened to the service so far (Node). */
  connections?: () => number;
  /**
   * How many acquires wait on this instance now, as a test can observe it on every
   * runtime: the engine's count on Node; on the Worker, which has no metrics but gives
   * each waiter a watch of its own, the watches open in its etcd.
   */
  waiters(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A real etcd plus the Node app served over real HTTP on a free loopback port, so
 * disconnects, streaming and headers behave as in production.
 */
export async function startTestService(
  opts: { env?: Record<string, string>; transport?: Transport } = {},
): Promise<TestService> {
  const etcd = await startTestEtcd();
  const app = await serveTestApp({
    ETCD_ENDPOINTS: etcd.endpoint,
    ETCD_TRANSPORT: opts.transport ?? "grpc",
    ...opts.env,
  });
  const direct = createGrpcEtcd({ endpoints: [etcd.endpoint], timeoutMs: 3000 });
  return {
    ...app,
    etcd,
    direct,
    stop: async () => {
      await app.close();
      await direct.close();
      await etcd.destroy();
    },
  };
}

/**
 * The Node app as `npm start` builds it (configuration parsed from `env`, etcd reached
 * through src/node/etcd.ts with its TLS and credentials), served on a free port.
 */
export async function serveTestApp(env: Record<string, string>) {
  const config = parseConfig({ ETCD_TIMEOUT_MS: "1500", LEASEHOLD_PREFIX: "test-locks/", ...env });
  const logs: string[] = [];
  const log = pinoLogger("info", { write: (line) => logs.push(line) });
  const auth = await apiKeysFromConfig(config);
  const { app, lines, close } = await buildNodeApp(config, {
    endpoints: config.ETCD_ENDPOINTS ?? [],
    log,
    ...(auth ? { auth } : {}),
  });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    answerHttpErrors(s, app.fetch, log);
  });
  let connections = 0;
  server.on("connection", () => {
    connections++;
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    logs,
    prefix: config.LEASEHOLD_PREFIX,
    activeWaiters: () => lines.activeWaiters,
    connections: () => connections,
    waiters: async () => lines.activeWaiters,
    close: async () => {
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      await close();
    },
  };
}
