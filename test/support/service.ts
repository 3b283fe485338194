import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { apiKeysFromConfig } from "../../src/auth/api-keys.js";
import { parseConfig } from "../../src/config.js";
import { createGatewayEtcd } from "../../src/etcd/gateway.js";
import { createGrpcEtcd } from "../../src/etcd/grpc.js";
import type { EtcdClient } from "../../src/etcd/types.js";
import { createApp } from "../../src/http/app.js";
import { jsonLogger } from "../../src/http/logger.js";
import { LockService } from "../../src/lock/service.js";
import { nodeDocsAssets } from "../../src/node/assets.js";
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
  const config = parseConfig({
    ETCD_ENDPOINTS: etcd.endpoint,
    ETCD_TIMEOUT_MS: "1500",
    LEASEHOLD_PREFIX: "test-locks/",
    ETCD_TRANSPORT: opts.transport ?? "grpc",
    ...opts.env,
  });
  const connection = { endpoints: [etcd.endpoint], timeoutMs: config.ETCD_TIMEOUT_MS };
  const client = config.ETCD_TRANSPORT === "http" ? createGatewayEtcd(connection) : createGrpcEtcd(connection);
  const direct = createGrpcEtcd({ endpoints: [etcd.endpoint], timeoutMs: 3000 });
  const logs: string[] = [];
  const log = jsonLogger((line) => logs.push(line), "info");
  const locks = new LockService(client, {
    prefix: config.LEASEHOLD_PREFIX,
    maxWaiters: config.LEASEHOLD_MAX_WAITERS,
  });
  const auth = await apiKeysFromConfig(config);
  const app = createApp({ config, etcd: client, locks, log, docsAssets: nodeDocsAssets(), ...(auth ? { auth } : {}) });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    etcd,
    direct,
    logs,
    prefix: config.LEASEHOLD_PREFIX,
    activeWaiters: () => locks.activeWaiters,
    stop: async () => {
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      await client.close();
      await direct.close();
      await etcd.destroy();
    },
  };
}
