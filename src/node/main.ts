import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { apiKeysFromConfig } from "../auth/api-keys.js";
import { ConfigError, parseConfig } from "../config.js";
import { EtcdAuthError } from "../etcd/types.js";
import { buildNodeApp } from "./build.js";
import { answerHttpErrors } from "./http-errors.js";
import { EtcdDataDirInUseError, type LocalEtcd, startLocalEtcd } from "./local-etcd.js";
import { pinoLogger } from "./logger.js";

/** Node entry: configuration, etcd (a local one in development mode), HTTP server, shutdown. */
export async function main(env: Record<string, string | undefined> = process.env): Promise<void> {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`leasehold: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }

  const log = pinoLogger(config.LOG_LEVEL);
  let auth: Awaited<ReturnType<typeof apiKeysFromConfig>>;
  try {
    auth = await apiKeysFromConfig(config, (path) => readFileSync(path, "utf8"));
  } catch (err) {
    console.error(`leasehold: ${(err as Error).message}`);
    process.exit(1);
    return;
  }

  let devEtcd: LocalEtcd | undefined;
  let endpoints = config.ETCD_ENDPOINTS;
  if (!endpoints) {
    try {
      devEtcd = await startLocalEtcd({ dataDir: resolve(".leasehold", "etcd"), log: "ignore" });
    } catch (err) {
      const hint =
        err instanceof EtcdDataDirInUseError
          ? `; is another \`npm start\` running in this folder? Stop it, or share its etcd with ETCD_ENDPOINTS=${err.url ?? "<its URL>"}`
          : "";
      console.error(`leasehold: ${(err as Error).message}${hint}`);
      process.exit(1);
      return;
    }
    endpoints = [devEtcd.endpoint];
    log.warn("development mode: started a local etcd (set ETCD_ENDPOINTS to use a real cluster)", {
      etcd: devEtcd.endpoint,
      dataDir: devEtcd.dataDir,
    });
  }

  const shutdown = new AbortController();
  // Every waiting acquire listens to it until it stops waiting, so up to the waiter cap
  // listeners at once are normal; past that Node may still warn of a leak.
  setMaxListeners(config.LEASEHOLD_MAX_WAITERS + 10, shutdown.signal);
  let built: Awaited<ReturnType<typeof buildNodeApp>>;
  try {
    built = await buildNodeApp(config, { endpoints, log, shutdownSignal: shutdown.signal, ...(auth ? { auth } : {}) });
  } catch (err) {
    console.error(`leasehold: ${(err as Error).message}`);
    await devEtcd?.stop();
    process.exit(1);
    return;
  }
  const { app, etcd } = built;
  // One round trip at start-up: wrong etcd credentials stop start-up with a clear
  // message; an unreachable etcd does not (readyz says 503 until it answers).
  try {
    await etcd.ping();
  } catch (err) {
    if (err instanceof EtcdAuthError) {
      console.error(`leasehold: etcd refused the credentials in ETCD_USERNAME/ETCD_PASSWORD: ${err.message}`);
      await etcd.close().catch(() => {});
      await devEtcd?.stop();
      process.exit(1);
      return;
    }
    log.warn("etcd is not reachable yet; /readyz answers 503 until it is", { err: (err as Error).message });
  }
  if (auth) log.info("auth is on", { keys: auth.size });
  else if (isLoopback(config.HOST)) {
    log.warn("auth is off: any caller on this host may take any lock (set LEASEHOLD_API_KEYS to turn it on)");
  } else {
    log.warn(
      `auth is off and HOST=${config.HOST}: the service is reachable from other hosts with no authentication; ` +
        "anyone who can connect may take and hold any lock (set LEASEHOLD_API_KEYS, or HOST=127.0.0.1)",
    );
  }

  const server: ServerType = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, (info) => {
    log.info("listening", {
      url: `http://${config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST}:${info.port}`,
      etcd: endpoints,
      transport: config.ETCD_TRANSPORT,
    });
  });
  // No request outlives its purpose: the longest legitimate one is a waiting acquire
  // (max wait, plus a few etcd deadlines for the calls around it).
  const longest = config.LEASEHOLD_MAX_WAIT * 1000 + 4 * config.ETCD_TIMEOUT_MS + 5_000;
  const http = server as unknown as { requestTimeout: number; headersTimeout: number };
  http.requestTimeout = longest;
  http.headersTimeout = Math.min(longest, 30_000);
  answerHttpErrors(server, app.fetch, log);
  server.on("error", async (err) => {
    console.error(`leasehold: cannot listen on port ${config.PORT}: ${err.message}`);
    await devEtcd?.stop();
    process.exit(1);
  });

  let stopping = false;
  const stop = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { reason });
    // Waiters are answered now (503, retry elsewhere) rather than held until `wait` ends.
    shutdown.abort();
    const closed = new Promise<void>((r) => server.close(() => r()));
    const grace = setTimeout(() => {
      log.warn("in-flight requests did not finish within 10 s; closing connections");
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    }, 10_000);
    grace.unref();
    await closed;
    await built.close().catch(() => {});
    await devEtcd?.stop();
    log.info("stopped");
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
  // The npm scripts `exec` node, so SIGTERM to npm's PID (what Docker, systemd and
  // Kubernetes send) reaches this process and npm waits for it. Should npm go away
  // without passing a signal on (killed outright, or a shell that did not exec), this
  // process is orphaned: stop as if signalled rather than keep the port (and in
  // development mode the local etcd) with nobody left to stop them. Only under npm:
  // a plain `nohup node dist/main.js &` is meant to outlive its shell.
  if (env.npm_lifecycle_event !== undefined) onParentExit(() => void stop("parent process exited"));
}

/** Whether `host` (HOST) is reachable from this machine only. */
function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "localhost" || h === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h);
}

/** Calls `gone` once this process's parent has exited (it is re-parented); polls cheaply. */
function onParentExit(gone: () => void): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    gone();
  }, 500);
  timer.unref();
}

if (process.argv[1] && import.meta.url === new URL(`file://${resolve(process.argv[1])}`).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
