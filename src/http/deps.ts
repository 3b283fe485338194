import type { OpenAPIHono, RouteConfig } from "@hono/zod-openapi";
import type { Config } from "../config.js";
import type { EtcdClient } from "../etcd/types.js";
import type { LockService } from "../lock/service.js";
import type { Logger } from "./logger.js";

/** Static files the docs page needs (Swagger UI); each runtime provides its own reader. */
export type AssetReader = (file: string) => Promise<Uint8Array | string | undefined>;

/** Everything a route needs, built once by the runtime entry. */
export interface AppDeps {
  config: Config;
  etcd: EtcdClient;
  locks: LockService;
  log: Logger;
  docsAssets: AssetReader;
}

export type App = OpenAPIHono;

/**
 * The route as registered for handling: documented separately (see openapi.ts), and
 * without the body schema, because bodies are read by `readBody` inside the handler
 * so that scope is checked before the body (SPEC's check order) and forms work.
 */
export function forHandling<R extends RouteConfig>(route: R): R & { hide: true } {
  const { body: _body, ...request } = route.request ?? {};
  return { ...route, request, hide: true };
}
