import { createRoute } from "@hono/zod-openapi";
import { readBody } from "../body.js";
import { documented, forHandling, type Route } from "../route.js";
import { bodyProblems, commonProblems, LeaseQuery, optionalBody, problem, RenewBody } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";
import { requiredLease } from "./lease-input.js";

/** `PUT /locks/{name}/renew` and `PUT /semaphores/{name}/renew`: keep a grant. */
export function renew(k: KindRoutes): Route {
  const doc = createRoute({
    method: "put",
    path: `${k.base}/{name}/renew`,
    operationId: `renew${k.capitalized}`,
    tags: [k.plural],
    summary: k.kind === "semaphore" ? "Renew a semaphore permit" : "Renew a lock",
    description:
      "Resets the lease to its granted TTL. The token stays the same. With `value`, first replaces the value the " +
      "holder publishes (guarded by the grant's own revision in etcd: a former holder's lease never writes one).",
    request: {
      params: k.nameParam,
      query: LeaseQuery,
      body: optionalBody(RenewBody),
    },
    responses: {
      200: {
        description: "Renewed: same token, new expiresAt (and the new value)",
        content: { "application/json": { schema: k.grantSchema } },
      },
      410: problem(`lock-lost: this lease no longer holds the ${k.noun}`, ["lock-lost"]),
      ...commonProblems,
      ...bodyProblems,
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const body = await readBody(c, RenewBody);
      const lease = requiredLease(body.lease, c.req.valid("query").lease);
      const grant = await lines.renew(
        { kind: k.kind, name },
        lease,
        body.value !== undefined ? { value: body.value } : {},
      );
      c.set("token", grant.token);
      return c.json(k.grant(grant), 200);
    });
  });
}
