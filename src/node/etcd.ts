import { readFileSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";
import type { Config } from "../config.js";
import { ConfigError } from "../config.js";
import { createGatewayEtcd } from "../etcd/gateway.js";
import { createGrpcEtcd } from "../etcd/grpc.js";
import type { EtcdClient, EtcdConnectionOptions } from "../etcd/types.js";

/** The etcd client the configuration asks for (ETCD_TRANSPORT), with TLS files read from disk. */
export function connectEtcd(config: Config, endpoints: string[]): EtcdClient {
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
  if (config.ETCD_TRANSPORT === "grpc") return createGrpcEtcd(opts);
  if (!opts.tls) return createGatewayEtcd(opts);
  // Node's built-in fetch takes no CA or client certificate; undici's Agent does.
  const agent = new Agent({ connect: { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key } });
  const tlsFetch = ((input: string | URL | Request, init?: RequestInit) =>
    undiciFetch(input as string, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch;
  return createGatewayEtcd({ ...opts, fetch: tlsFetch });
}

function readPem(variable: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`${variable}: cannot read ${path}: ${(err as Error).message}`);
  }
}
