import { DASHBOARD_JS } from "../../dashboard/app.bundle.js";
import { CSS, PAGE, PAGE_HEADERS } from "../../dashboard/page.js";
import { documented, type Route } from "../route.js";
import type { HeaderDocs } from "../schemas.js";
import { fileRoute } from "./file-route.js";

/** The page's security headers, as openapi.yaml declares them. */
const pageHeaders: HeaderDocs = Object.fromEntries(
  Object.entries(PAGE_HEADERS).map(([name, value]) => [
    name,
    { description: `Always \`${value}\``, required: true, schema: { type: "string" } },
  ]),
);

const page = fileRoute({
  path: "/",
  operationId: "getDashboard",
  tag: "dashboard",
  summary: "The live dashboard: who holds what, updated from the event stream",
  type: "text/html",
  headers: pageHeaders,
});
const stylesheet = fileRoute({
  path: "/dashboard/app.css",
  operationId: "getDashboardStylesheet",
  tag: "dashboard",
  summary: "The dashboard's stylesheet",
  type: "text/css",
});
const script = fileRoute({
  path: "/dashboard/app.js",
  operationId: "getDashboardScript",
  tag: "dashboard",
  summary: "The dashboard's script",
  type: "text/javascript",
});

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
