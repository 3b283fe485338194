import { createRoute } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { documented, forHandling, type Route } from "../route.js";
import { bodyProblems, commonProblems, leaseRequestBody, NameParam, problem, ReleaseQuery } from "../schemas.js";
import { leaseFrom } from "./lease-input.js";

export const releaseRoute = createRoute({
  method: "delete",
  path: "/locks/{name}",
  tags: ["locks"],
  summary: "Release a lock",
  description:
    "Revokes the holder's lease, which deletes the lock in the same etcd step. " +
    "Admin keys may pass `force=true` instead of a lease.",
  request: {
    params: NameParam,
    query: ReleaseQuery,
    body: leaseRequestBody,
  },
  responses: {
    204: { description: "Released" },
    404: problem("lock-not-found: force-release of a lock nobody holds"),
    410: problem("lock-lost: this lease no longer holds the lock; nothing changed"),
    ...commonProblems,
    ...bodyProblems,
  },
});

export const release: Route = documented(releaseRoute, "keyed", (app, { locks }) => {
  app.openapi(forHandling(releaseRoute), async (c) => {
    const { name } = c.req.valid("param");
    const query = c.req.valid("query");
    if (query.force === "true") {
      // With auth on, only admin keys may release someone else's lock; with auth off, anyone.
      const key = c.get("apiKey");
      if (key && !key.admin) throw new Problem("forbidden", "force-release needs an admin API key");
      if (!(await locks.forceRelease(name))) {
        throw new Problem("lock-not-found", `lock ${name} is not held`);
      }
      return c.body(null, 204);
    }
    await locks.release(name, await leaseFrom(c, query.lease));
    return c.body(null, 204);
  });
});
