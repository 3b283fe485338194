import { OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import { stringify } from "yaml";
/** The OpenAPI document of `routes`, as YAML. */
export function openApiDocument(routes: readonly RouteConfig[]): string {
  const registry = new OpenAPIHono();
  registry.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "An API key from LEASEHOLD_API_KEYS (only when auth is on)",
  });
  for (const route of routes) registry.openAPIRegistry.registerPath(route);
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
  return stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}
