import { createRoute } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { documented, forHandling, type Route } from "../route.js";
import { commonProblems, problem } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";

/** `GET /locks/{name}` and `GET /semaphores/{name}`: who holds it, and how many are in line. */
export function inspect(k: KindRoutes): Route {
  const doc = createRoute({
    method: "get",
    path: `${k.base}/{name}`,
    tags: [k.plural],
    summary: k.kind === "semaphore" ? "Inspect a semaphore" : "Inspect a lock",
    description:
      k.kind === "semaphore"
        ? "The semaphore's limit, its holders (fencing tokens, remaining TTLs, owners) and how many are in line. " +
          "Never lease handles or tickets."
        : "Who holds the lock, its fencing token and remaining TTL, and how many are in line. " +
          "Never the lease handle or tickets.",
    request: { params: k.nameParam },
    responses: {
      200: { description: "Held", content: { "application/json": { schema: k.infoSchema } } },
      404: problem(`lock-not-found: nobody holds the ${k.noun}`),
      ...commonProblems,
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const info = await lines.inspect({ kind: k.kind, name });
      const oldest = info?.holders[0];
      if (!info || !oldest) throw new Problem("lock-not-found", `${k.noun} ${name} is not held`);
      c.set("token", oldest.token);
      return c.json(k.view(info), 200);
    });
  });
}
