import { OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import { stringify } from "yaml";
import { acquireRoute } from "./routes/acquire.js";
import { healthzRoute, readyzRoute } from "./routes/health.js";
import { inspectRoute } from "./routes/inspect.js";
import { listRoute } from "./routes/list.js";
import { releaseRoute } from "./routes/release.js";
import { renewRoute } from "./routes/renew.js";

/** Every documented route, in the order openapi.yaml lists them. */
export const documentedRoutes: RouteConfig[] = [
  acquireRoute,
  renewRoute,
  releaseRoute,
  inspectRoute,
  listRoute,
  healthzRoute,
  readyzRoute,
];

let cached: string | undefined;

/** openapi.yaml as generated from the zod route definitions (committed; a test checks drift). */
export function openApiYaml(): string {
  if (cached !== undefined) return cached;
  const registry = new OpenAPIHono();
  registry.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "An API key from LEASEHOLD_API_KEYS (only when auth is on)",
  });
  for (const route of documentedRoutes) registry.openAPIRegistry.registerPath(route);
  const doc = registry.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "leasehold",
      version: "1",
      description:
        "An HTTP lock service on etcd. Each grant carries a fencing token (the etcd revision that created " +
        "the lock key). Errors are RFC 9457 application/problem+json with a stable `code`.",
      license: { name: "Apache-2.0", url: "https://www.apache.org/licenses/LICENSE-2.0" },
    },
    security: [{ bearer: [] }],
  });
  cached = stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
  return cached;
}
