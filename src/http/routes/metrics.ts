import type { Route } from "../route.js";

/**
 * GET /metrics: Prometheus text, where the runtime provides it (Node). What it shows
 * depends on the scraping key (lock names are scoped); an open /metrics takes no key.
 */
export const metrics: Route = {
  method: "get",
  path: "/metrics",
  access: "metrics",
  register(app, { metricsText }) {
    if (!metricsText) return;
    app.get("/metrics", async (c) => {
      const { contentType, body } = await metricsText(c.get("apiKey"));
      return c.body(body, 200, { "content-type": contentType });
    });
  },
};
