import { readFileSync } from "node:fs";
import type { Config } from "../config.js";
import { ConfigError } from "../config.js";
import type { EtcdClient, EtcdConnectionOptions } from "../etcd/types.js";

/**
 * The etcd client the configuration asks for (ETCD_TRANSPORT), with TLS files read from
 * disk. Only the chosen transport's libraries are loaded: etcd3 (gRPC) and undici (the
 * gateway's connection pools) each cost an instance 3–5 MB of heap it would never use.
 */
export async function connectEtcd(config: Config, endpoints: string[]): Promise<EtcdClient> {
  const opts: EtcdConnectionOptions = {
    endpoints,
    timeoutMs: config.ETCD_TIMEOUT_MS,
    ...(config.ETCD_USERNAME !== undefined ? { username: config.ETCD_USERNAME } : {}),
    ...(config.ETCD_PASSWORD !== undefined ? { password: config.ETCD_PASSWORD } : {}),
  };
  const ca = readPem("ETCD_CA_FILE", config.ETCD_CA_FILE);
  const cert = readPem("ETCD_CERT_FILE", config.ETCD_CERT_FILE);
  const key = readPem("ETCD_KEY_FILE", config.ETCD_KEY_FILE);
  if (ca || cert || key) {
    opts.tls = { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
  }
  if (config.ETCD_TRANSPORT === "grpc") return (await import("../etcd/grpc.js")).createGrpcEtcd(opts);
  return (await import("./gateway.js")).gatewayOnNode(opts);
}

function readPem(variable: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`${variable}: cannot read ${path}: ${(err as Error).message}`);
  }
}
