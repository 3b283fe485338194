import { createRoute } from "@hono/zod-openapi";
import { isValidName } from "../../lock/names.js";
import { Problem } from "../../problems.js";
import { documented, forHandling, type Route } from "../route.js";
import { collectionProblems, ListQuery } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";

/** `GET /locks` and `GET /semaphores`: the held ones in name order, within the caller's scopes. */
export function list(k: KindRoutes): Route {
  const doc = createRoute({
    method: "get",
    path: k.base,
    operationId: `list${k.capitalizedPlural}`,
    tags: [k.plural],
    summary: `List held ${k.plural}`,
    description: `Held ${k.plural} in name order, optionally under a name prefix, a page at a time. Never lease handles or tickets.`,
    request: { query: ListQuery },
    responses: {
      200: {
        description: `A page of held ${k.plural}`,
        content: { "application/json": { schema: k.listSchema } },
      },
      ...collectionProblems,
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const query = c.req.valid("query");
      const prefix = query.prefix ?? "";
      const limit = query.limit === undefined ? 100 : Number(query.limit); // 1–1000: ListQuery checked it
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, prefix);
      // A key sees only the names under its own prefixes.
      const within = c.get("apiKey")?.prefixes ?? [""];
      const page = await lines.list(k.kind, { prefix, within, limit, ...(after !== undefined ? { after } : {}) });
      return c.json(
        { items: page.items.map(k.view), ...(page.next !== undefined ? { cursor: encodeCursor(page.next) } : {}) },
        200,
      );
    });
  });
}

/** The cursor is the last name of the previous page, base64url-encoded (opaque to clients). */
function encodeCursor(name: string): string {
  return btoa(name).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function decodeCursor(cursor: string, prefix: string): string {
  let name: string | undefined;
  try {
    name = atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    name = undefined;
  }
  if (name === undefined || !isValidName(name) || !name.startsWith(prefix)) {
    throw new Problem("invalid-request", "cursor is not one this service returned for this prefix");
  }
  return name;
}
