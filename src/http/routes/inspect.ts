import { createRoute } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { documented, forHandling, type Route } from "../route.js";
import { commonProblems, LockInfo, NameParam, problem } from "../schemas.js";

export const inspectRoute = createRoute({
  method: "get",
  path: "/locks/{name}",
  tags: ["locks"],
  summary: "Inspect a lock",
  description: "Who holds the lock, its fencing token and remaining TTL. Never the lease handle.",
  request: { params: NameParam },
  responses: {
    200: { description: "Held", content: { "application/json": { schema: LockInfo } } },
    404: problem("lock-not-found: nobody holds it"),
    ...commonProblems,
  },
});

export const inspect: Route = documented(inspectRoute, "keyed", (app, { locks }) => {
  app.openapi(forHandling(inspectRoute), async (c) => {
    const { name } = c.req.valid("param");
    const info = await locks.inspect(name);
    if (!info) throw new Problem("lock-not-found", `lock ${name} is not held`);
    c.set("token", info.token);
    return c.json(info, 200);
  });
});
