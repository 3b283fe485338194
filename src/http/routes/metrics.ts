import { createRoute, z } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { documented, type Route } from "../route.js";
import { internalError, problem, unauthorized } from "../schemas.js";

const doc = createRoute({
  method: "get",
  path: "/metrics",
  operationId: "getMetrics",
  tags: ["operations"],
  summary: "Prometheus metrics",
  description:
    "Prometheus text exposition, where the runtime keeps metrics (Node; not Workers). Open unless " +
    "LEASEHOLD_METRICS_AUTH is set: then it takes an API key, and per-name series show only the names that " +
    "key may use.",
  responses: {
    200: {
      description: "The metrics",
      content: {
        "text/plain": {
          schema: z.string().openapi({ example: "# TYPE leasehold_locks_held gauge\nleasehold_locks_held 3\n" }),
        },
      },
    },
    401: unauthorized,
    404: problem("not-found: this runtime keeps no metrics (Workers)", ["not-found"]),
    500: internalError,
  },
});

/**
 * GET /metrics: Prometheus text, where the runtime provides it (Node). What it shows
 * depends on the scraping key (lock names are scoped); an open /metrics takes no key.
 */
export const metrics: Route = documented(doc, "metrics", (app, { metricsText }) => {
  app.get("/metrics", async (c) => {
    // A 404 of its own: unregistered, the path's 405 handling would say GET is not allowed, use GET.
    if (!metricsText) throw new Problem("not-found", "this runtime keeps no metrics");
    const { contentType, body } = await metricsText(c.get("apiKey"));
    return c.body(body, 200, { "content-type": contentType });
  });
});
