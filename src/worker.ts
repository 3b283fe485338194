import { apiKeysFromConfig } from "./auth/api-keys.js";
import { parseConfig } from "./config.js";
import { createGatewayEtcd } from "./etcd/gateway.js";
import { createApp } from "./http/app.js";
import type { App, AssetReader } from "./http/deps.js";
import { jsonLogger } from "./http/logger.js";
import { createLocks, workerStrategies } from "./lock/index.js";

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
  const etcd = createGatewayEtcd({
    endpoints: config.ETCD_ENDPOINTS,
    timeoutMs: config.ETCD_TIMEOUT_MS,
    ...(config.ETCD_USERNAME !== undefined ? { username: config.ETCD_USERNAME } : {}),
    ...(config.ETCD_PASSWORD !== undefined ? { password: config.ETCD_PASSWORD } : {}),
  });
  const log = jsonLogger((line) => console.log(line), config.LOG_LEVEL);
  const locks = createLocks(etcd, {
    prefix: config.LEASEHOLD_PREFIX,
    maxWaiters: config.LEASEHOLD_MAX_WAITERS,
    // I/O started by one request cannot be awaited by another on Workers.
    strategies: workerStrategies,
  });
  // API keys come from the LEASEHOLD_API_KEYS secret (Workers have no files).
  const auth = await apiKeysFromConfig(config);
  if (!auth) log.warn("auth is off: any caller may take any lock (set the LEASEHOLD_API_KEYS secret)");
  return createApp({ config, etcd, locks, log, docsAssets: workerAssets(env), ...(auth ? { auth } : {}) });
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
      const detail = (err as Error).message;
      return new Response(
        JSON.stringify({
          type: "/problems/internal-error",
          title: "Misconfigured",
          status: 500,
          detail,
          code: "internal-error",
        }),
        { status: 500, headers: { "content-type": "application/problem+json" } },
      );
    }
    return app.fetch(request, env, ctx as never);
  },
};
