import { readFileSync } from "node:fs";
import type { Config } from "../config.js";
import { ConfigError } from "../config.js";
import type { EtcdClient } from "../etcd/types.js";
import { etcdOptions } from "../setup.js";

/**
 * The etcd client the configuration asks for (ETCD_TRANSPORT), with TLS files read from
 * disk. Only the chosen transport's libraries are loaded: etcd3 (gRPC) and undici (the
 * gateway's connection pools) each cost an instance 3–5 MB of heap it would never use.
 */
export async function connectEtcd(config: Config, endpoints: string[]): Promise<EtcdClient> {
  const ca = readPem("ETCD_CA_FILE", config.ETCD_CA_FILE);
  const cert = readPem("ETCD_CERT_FILE", config.ETCD_CERT_FILE);
  const key = readPem("ETCD_KEY_FILE", config.ETCD_KEY_FILE);
  const tls =
    ca || cert || key ? { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } : undefined;
  const opts = etcdOptions(config, endpoints, tls);
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
