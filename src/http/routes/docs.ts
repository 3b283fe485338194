import { createRoute, z } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { documented, type Route } from "../route.js";
import { internalError, problem } from "../schemas.js";
import { fileRoute } from "./file-route.js";

const ASSET_TYPES: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
};

/** The files the API reference page loads. */
const ASSETS = [...Object.keys(ASSET_TYPES), "init.js"];

const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>leasehold API reference</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<main id="swagger-ui"></main>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/init.js"></script>
</body>
</html>
`;

// validatorUrl null: Swagger UI would otherwise send the spec to an online validator.
const INIT_JS = `window.ui = SwaggerUIBundle({
  url: new URL("openapi.yaml", document.baseURI).href,
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  tryItOutEnabled: true,
});
`;

const specRoute = fileRoute({
  path: "/openapi.yaml",
  operationId: "getOpenApiDocument",
  tag: "documentation",
  summary: "This document",
  description: "The OpenAPI document of this API, generated from the service's route definitions.",
  type: "application/yaml",
});

const docsRoute = fileRoute({
  path: "/docs",
  operationId: "getApiReference",
  tag: "documentation",
  summary: "The API reference (Swagger UI of this document)",
  type: "text/html",
});

const assetRoute = createRoute({
  method: "get",
  path: "/docs/assets/{file}",
  operationId: "getApiReferenceAsset",
  tags: ["documentation"],
  summary: "A file of the API reference page",
  request: {
    params: z.object({
      file: z.string().openapi({ param: { name: "file", in: "path" }, example: "swagger-ui.css", enum: ASSETS }),
    }),
  },
  responses: {
    200: {
      description: "The file (served from this service, no CDN)",
      headers: {
        "Cache-Control": {
          description: "`public, max-age=86400` (not on init.js)",
          required: false,
          schema: { type: "string" },
        },
      },
      content: {
        "text/css": { schema: z.string() },
        "text/javascript": { schema: z.string() },
      },
    },
    404: problem("not-found: no such file", ["not-found"]),
    500: internalError,
  },
});

/**
 * `/openapi.yaml` (`spec` renders it from the route table) and `/docs` (Swagger UI
 * served from our own assets: no CDN, works offline).
 */
export function docsRoutes(spec: () => string): Route[] {
  return [
    documented(specRoute, "open", (app) =>
      app.get("/openapi.yaml", (c) => c.body(spec(), 200, { "content-type": "application/yaml; charset=utf-8" })),
    ),
    documented(docsRoute, "open", (app) => app.get("/docs", (c) => c.html(DOCS_HTML))),
    // One route for every asset, our init.js included: a static route beside a parameter
    // route of the same shape would push Hono from its RegExpRouter to the slower TrieRouter.
    documented(assetRoute, "open", (app, { docsAssets }) =>
      app.get("/docs/assets/:file", async (c) => {
        const file = c.req.param("file");
        if (file === "init.js") {
          return c.body(INIT_JS, 200, { "content-type": ASSET_TYPES["swagger-ui-bundle.js"] ?? "" });
        }
        const type = ASSET_TYPES[file];
        const content = type ? await docsAssets(file) : undefined;
        // Not c.notFound(): its handler would answer 405, as GET is this path's method.
        if (!type || content === undefined) throw new Problem("not-found", `the API reference has no file ${file}`);
        return c.body(content as Uint8Array<ArrayBuffer> | string, 200, {
          "content-type": type,
          "cache-control": "public, max-age=86400",
        });
      }),
    ),
  ];
}
