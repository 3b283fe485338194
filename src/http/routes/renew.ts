import { createRoute } from "@hono/zod-openapi";
import { documented, forHandling, type Route } from "../route.js";
import { bodyProblems, commonProblems, LeaseBody, LeaseQuery, optionalBody, problem } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";
import { leaseFrom } from "./lease-input.js";

/** `PUT /locks/{name}/renew` and `PUT /semaphores/{name}/renew`: keep a grant. */
export function renew(k: KindRoutes): Route {
  const doc = createRoute({
    method: "put",
    path: `${k.base}/{name}/renew`,
    tags: [k.plural],
    summary: k.kind === "semaphore" ? "Renew a semaphore permit" : "Renew a lock",
    description: "Resets the lease to its granted TTL. The token stays the same.",
    request: {
      params: k.nameParam,
      query: LeaseQuery,
      body: optionalBody(LeaseBody),
    },
    responses: {
      200: {
        description: "Renewed: same token, new expiresAt",
        content: { "application/json": { schema: k.grantSchema } },
      },
      410: problem(`lock-lost: this lease no longer holds the ${k.noun}`),
      ...commonProblems,
      ...bodyProblems,
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const lease = await leaseFrom(c, c.req.valid("query").lease);
      const grant = await lines.renew({ kind: k.kind, name }, lease);
      c.set("token", grant.token);
      return c.json(k.grant(grant), 200);
    });
  });
}
