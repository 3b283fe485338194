import { apiKeysFromConfig } from "./auth/api-keys.js";
import { parseConfig } from "./config.js";
import { createGatewayEtcd } from "./etcd/gateway.js";
import type { App, AssetReader } from "./http/deps.js";
import { problemResponse } from "./http/errors.js";
import { jsonLogger } from "./http/logger.js";
import { workerStrategies } from "./lock/index.js";
import { Problem } from "./problems.js";
import { buildService, etcdOptions } from "./setup.js";

/**
 * Cloudflare Workers entry. Workers have no gRPC, so etcd is reached through its
 * HTTP/JSON gateway with fetch. Vars and secrets arrive as `env`; they are fixed for
 * the isolate's life, so the app is built once per isolate.
 */
interface WorkerEnv {
  /** Static-assets binding holding Swagger UI's files (wrangler.toml [assets]). */
  ASSETS?: { fetch(req: Request): Promise<Response> };
  [variable: string]: unknown;
}

let built: Promise<App> | undefined;

async function build(env: WorkerEnv): Promise<App> {
  const strings: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (typeof v === "string") strings[k] = v;
  const config = parseConfig(strings);
  if (!config.ETCD_ENDPOINTS) throw new Error("ETCD_ENDPOINTS must be set for the Worker (wrangler.toml [vars])");
  // Workers have no gRPC: etcd through its JSON gateway, with fetch.
  const etcd = createGatewayEtcd(etcdOptions(config, config.ETCD_ENDPOINTS));
  const log = jsonLogger((line) => console.log(line), config.LOG_LEVEL);
  // API keys come from the LEASEHOLD_API_KEYS secret (Workers have no files).
  const auth = await apiKeysFromConfig(config);
  if (!auth) log.warn("auth is off: any caller may take any lock (set the LEASEHOLD_API_KEYS secret)");
  return buildService(config, etcd, {
    log,
    // I/O started by one request cannot be awaited by another on Workers.
    strategies: workerStrategies,
    docsAssets: workerAssets(env),
    ...(auth ? { auth } : {}),
  }).app;
}

function workerAssets(env: WorkerEnv): AssetReader {
  return async (file) => {
    if (!env.ASSETS) return undefined;
    const res = await env.ASSETS.fetch(new Request(`https://assets.invalid/${file}`));
    return res.ok ? new Uint8Array(await res.arrayBuffer()) : undefined;
  };
}

export default {
  async fetch(request: Request, env: WorkerEnv, ctx: unknown): Promise<Response> {
    let app: App;
    try {
      built ??= build(env);
      app = await built;
    } catch (err) {
      built = undefined;
      // Bad configuration: say so on every request (Workers have no start-up to stop).
      return problemResponse(new Problem("internal-error", `misconfigured: ${(err as Error).message}`));
    }
    return app.fetch(request, env, ctx as never);
  },
};
