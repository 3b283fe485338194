import { createRoute } from "@hono/zod-openapi";
import { documented, forHandling, type Route } from "../route.js";
import { bodyProblems, commonProblems, Grant, LeaseQuery, leaseRequestBody, NameParam, problem } from "../schemas.js";
import { leaseFrom } from "./lease-input.js";

export const renewRoute = createRoute({
  method: "put",
  path: "/locks/{name}/renew",
  tags: ["locks"],
  summary: "Renew a lock",
  description: "Resets the lease to its granted TTL. The token stays the same.",
  request: {
    params: NameParam,
    query: LeaseQuery,
    body: leaseRequestBody,
  },
  responses: {
    200: { description: "Renewed: same token, new expiresAt", content: { "application/json": { schema: Grant } } },
    410: problem("lock-lost: this lease no longer holds the lock"),
    ...commonProblems,
    ...bodyProblems,
  },
});

export const renew: Route = documented(renewRoute, "keyed", (app, { locks }) => {
  app.openapi(forHandling(renewRoute), async (c) => {
    const { name } = c.req.valid("param");
    const lease = await leaseFrom(c, c.req.valid("query").lease);
    const grant = await locks.renew(name, lease);
    c.set("token", grant.token);
    return c.json(grant, 200);
  });
});
