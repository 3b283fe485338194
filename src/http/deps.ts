import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiKey, ApiKeys } from "../auth/api-keys.js";
import type { Config } from "../config.js";
import type { EtcdClient } from "../etcd/types.js";
import type { Lines } from "../lock/index.js";
import type { Logger } from "./logger.js";

/** Static files the docs page needs (Swagger UI); each runtime provides its own reader. */
export type AssetReader = (file: string) => Promise<Uint8Array | string | undefined>;

/** Everything a route needs, built once by the runtime entry. */
export interface AppDeps {
  config: Config;
  etcd: EtcdClient;
  /** The engine: locks and semaphores. */
  lines: Lines;
  log: Logger;
  docsAssets: AssetReader;
  /** The configured API keys; undefined = auth off. */
  auth?: ApiKeys;
  /**
   * Prometheus exposition for GET /metrics (Node) as `caller` may see it (undefined: a
   * scrape without a key); undefined = no /metrics route.
   */
  metricsText?: (caller: ApiKey | undefined) => Promise<{ contentType: string; body: string }>;
}

/** Per-request values: the caller's API key once authenticated (auth on). */
export interface AppEnv {
  Variables: {
    apiKey?: ApiKey;
    /** The caller's API key secret as sent (auth on); binds Idempotency-Keys to their caller. */
    caller?: string;
    requestId: string;
    /** The fencing token a request granted or showed, for the request log. */
    token?: number;
  };
}

export type App = OpenAPIHono<AppEnv>;
