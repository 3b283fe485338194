import { createApp } from "../../src/http/app.js";
import type { App, AppDeps } from "../../src/http/deps.js";

/**
 * The HTTP app with nothing behind it (no etcd, no docs assets, no metrics), for the
 * routes and answers that never reach a backend: routing, the docs' script, 404s.
 */
export function appWithoutBackend(): App {
  const deps = {
    config: {},
    log: { infoEnabled: false, info() {}, warn() {}, error() {} },
    docsAssets: async () => undefined,
  } as unknown as AppDeps;
  return createApp(deps);
}
