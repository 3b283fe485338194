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
    "Admin keys may pass `force=true` instead of a lease; with auth off nobody may (403).",
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
    403: problem("forbidden: the key may not use this name, or force=true without an admin key"),
    ...bodyProblems,
  },
});

export const release: Route = documented(releaseRoute, "keyed", (app, { locks }) => {
  app.openapi(forHandling(releaseRoute), async (c) => {
    const { name } = c.req.valid("param");
    const query = c.req.valid("query");
    if (query.force === "true") {
      // Only an admin key may release someone else's lock. With auth off there is no
      // key, so nobody may: an open service must not let any caller end any grant.
      const key = c.get("apiKey");
      if (!key) {
        throw new Problem(
          "forbidden",
          'force release needs an admin API key, and auth is off: configure LEASEHOLD_API_KEYS with a key that has "admin": true',
        );
      }
      if (!key.admin) throw new Problem("forbidden", "force release needs an admin API key");
      if (!(await locks.forceRelease(name))) {
        throw new Problem("lock-not-found", `lock ${name} is not held`);
      }
      return c.body(null, 204);
    }
    await locks.release(name, await leaseFrom(c, query.lease));
    return c.body(null, 204);
  });
});
