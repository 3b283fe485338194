import { createRoute } from "@hono/zod-openapi";
import { documented, forHandling, type Route } from "../route.js";
import { commonProblems, FenceAnswer, FenceQuery, problem } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";

/** `GET /locks/{name}/fence?token=T` and `GET /semaphores/{name}/fence?token=T`: is T current? */
export function fence(k: KindRoutes): Route {
  const doc = createRoute({
    method: "get",
    path: `${k.base}/{name}/fence`,
    operationId: `check${k.capitalized}Fence`,
    tags: [k.plural],
    summary: k.kind === "semaphore" ? "Check a permit's fencing token" : "Check a fencing token",
    description:
      `Whether \`token\` is ${k.kind === "semaphore" ? "a current permit's" : "the current holder's"} fencing ` +
      "token, read linearizably from etcd. For a resource that cannot store and compare tokens itself (an " +
      "external API, a file share): ask just before each write, and write only on 200. A holder paused past its " +
      "TTL gets 409 here as soon as its grant has ended, whatever it believes.",
    request: { params: k.nameParam, query: FenceQuery },
    responses: {
      200: { description: "The token is current", content: { "application/json": { schema: FenceAnswer } } },
      409: problem(
        "fence-stale: the token is not current (its grant ended, or it never was this name's); " +
          (k.kind === "semaphore" ? "`holders` lists the current permits' tokens" : "`current` is the holder's token"),
        ["fence-stale"],
      ),
      ...commonProblems,
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const token = Number(c.req.valid("query").token);
      await lines.fence({ kind: k.kind, name }, token);
      c.set("token", token);
      return c.json({ name, token, current: true as const }, 200);
    });
  });
}
