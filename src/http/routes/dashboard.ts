import { createRoute, z } from "@hono/zod-openapi";
import { DASHBOARD_JS } from "../../dashboard/app.bundle.js";
import { CSS, PAGE, PAGE_HEADERS } from "../../dashboard/page.js";
import { documented, type Route } from "../route.js";
import { type HeaderDocs, internalError } from "../schemas.js";

/** The page's security headers, as openapi.yaml declares them. */
const pageHeaders: HeaderDocs = Object.fromEntries(
  Object.entries(PAGE_HEADERS).map(([name, value]) => [
    name,
    { description: `Always \`${value}\``, required: true, schema: { type: "string" } },
  ]),
);

/** A GET of one of the dashboard's files: open, any query ignored. */
function file(path: string, operationId: string, summary: string, type: string, headers: HeaderDocs = {}) {
  return createRoute({
    method: "get",
    path,
    operationId,
    tags: ["dashboard"],
    summary,
    responses: {
      200: { description: summary, headers, content: { [type]: { schema: z.string() } } },
      500: internalError,
    },
  });
}

const page = file(
  "/",
  "getDashboard",
  "The live dashboard: who holds what, updated from the event stream",
  "text/html",
  pageHeaders,
);
const stylesheet = file("/dashboard/app.css", "getDashboardStylesheet", "The dashboard's stylesheet", "text/css");
const script = file("/dashboard/app.js", "getDashboardScript", "The dashboard's script", "text/javascript");

/** The live lock dashboard at `/`: its page, stylesheet and script (src/dashboard/), all open. */
export const dashboard: Route[] = [
  documented(page, "open", (app) => app.get("/", (c) => c.html(PAGE, 200, PAGE_HEADERS))),
  documented(stylesheet, "open", (app) =>
    app.get("/dashboard/app.css", (c) => c.body(CSS, 200, { "content-type": "text/css; charset=utf-8" })),
  ),
  documented(script, "open", (app) =>
    app.get("/dashboard/app.js", (c) =>
      c.body(DASHBOARD_JS, 200, { "content-type": "text/javascript; charset=utf-8" }),
    ),
  ),
];
