import { createRoute } from "@hono/zod-openapi";
import { EtcdAuthError, EtcdUnavailableError } from "../../etcd/types.js";
import { documented, forHandling, type Route } from "../route.js";
import { Health, internalError, invalidRequest, problem } from "../schemas.js";

const noQuery = invalidRequest("a query parameter (these routes take none)");

export const healthzRoute = createRoute({
  method: "get",
  path: "/healthz",
  operationId: "checkLiveness",
  tags: ["operations"],
  summary: "Liveness: the process is up",
  responses: {
    200: { description: "Up", content: { "application/json": { schema: Health } } },
    400: noQuery,
    500: internalError,
  },
});

export const readyzRoute = createRoute({
  method: "get",
  path: "/readyz",
  operationId: "checkReadiness",
  tags: ["operations"],
  summary: "Readiness: etcd answers",
  responses: {
    200: { description: "etcd reachable", content: { "application/json": { schema: Health } } },
    400: noQuery,
    500: internalError,
    503: problem("backend-unavailable: etcd did not answer in time, or refused this service's credentials", [
      "backend-unavailable",
    ]),
  },
});

export const healthz: Route = documented(healthzRoute, "open", (app) => {
  app.openapi(forHandling(healthzRoute), (c) => c.json({ status: "ok" }, 200));
});

export const readyz: Route = documented(readyzRoute, "open", (app, { etcd }) => {
  app.openapi(forHandling(readyzRoute), async (c) => {
    try {
      await etcd.ping();
    } catch (err) {
      // Any failure to reach etcd means not ready; the error handler renders the 503.
      throw err instanceof EtcdUnavailableError || err instanceof EtcdAuthError
        ? err
        : new EtcdUnavailableError(String(err));
    }
    return c.json({ status: "ready" }, 200);
  });
});
