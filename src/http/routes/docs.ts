import type { Route } from "../route.js";

const ASSET_TYPES: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
};

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

/**
 * `/openapi.yaml` (`spec` renders it from the route table) and `/docs` (Swagger UI
 * served from our own assets: no CDN, works offline).
 */
export function docsRoutes(spec: () => string): Route[] {
  return [
    {
      method: "get",
      path: "/openapi.yaml",
      access: "open",
      register: (app) =>
        app.get("/openapi.yaml", (c) => c.body(spec(), 200, { "content-type": "application/yaml; charset=utf-8" })),
    },
    { method: "get", path: "/docs", access: "open", register: (app) => app.get("/docs", (c) => c.html(DOCS_HTML)) },
    {
      method: "get",
      path: "/docs/assets/{file}",
      access: "open",
      // One route for every asset, our init.js included: a static route beside a parameter
      // route of the same shape would push Hono from its RegExpRouter to the slower TrieRouter.
      register: (app, { docsAssets }) =>
        app.get("/docs/assets/:file", async (c) => {
          const file = c.req.param("file");
          if (file === "init.js") {
            return c.body(INIT_JS, 200, { "content-type": ASSET_TYPES["swagger-ui-bundle.js"] ?? "" });
          }
          const type = ASSET_TYPES[file];
          const content = type ? await docsAssets(file) : undefined;
          if (!type || content === undefined) return c.notFound();
          return c.body(content as Uint8Array<ArrayBuffer> | string, 200, {
            "content-type": type,
            "cache-control": "public, max-age=86400",
          });
        }),
    },
  ];
}
