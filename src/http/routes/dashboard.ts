import { DASHBOARD_JS } from "../../dashboard/app.bundle.js";
import { CSS, PAGE, PAGE_HEADERS } from "../../dashboard/page.js";
import type { Route } from "../route.js";

/** The live lock dashboard at `/`: its page, stylesheet and script (src/dashboard/), all open. */
export const dashboard: Route[] = [
  { method: "get", path: "/", access: "open", register: (app) => app.get("/", (c) => c.html(PAGE, 200, PAGE_HEADERS)) },
  {
    method: "get",
    path: "/dashboard/app.css",
    access: "open",
    register: (app) =>
      app.get("/dashboard/app.css", (c) => c.body(CSS, 200, { "content-type": "text/css; charset=utf-8" })),
  },
  {
    method: "get",
    path: "/dashboard/app.js",
    access: "open",
    register: (app) =>
      app.get("/dashboard/app.js", (c) =>
        c.body(DASHBOARD_JS, 200, { "content-type": "text/javascript; charset=utf-8" }),
      ),
  },
];
