import type { App, AppDeps } from "../deps.js";

/** GET /metrics: Prometheus text, where the runtime provides it (Node). */
export function registerMetrics(app: App, { metricsText }: AppDeps) {
  if (!metricsText) return;
  app.get("/metrics", async (c) => {
    const { contentType, body } = await metricsText();
    return c.body(body, 200, { "content-type": contentType });
  });
}
