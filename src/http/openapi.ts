import { OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import { stringify } from "yaml";
import type { Access } from "./route.js";

/** Who may call a route, as openapi.yaml says it: the document's default is the bearer key. */
const SECURITY: Record<Access, RouteConfig["security"]> = {
  keyed: undefined,
  open: [],
  // Open unless LEASEHOLD_METRICS_AUTH is set: a key, or none.
  metrics: [{ bearer: [] }, {}],
};

const REQUEST_ID = "X-Request-Id";

/** The OpenAPI document of `routes` (each with who may call it), as YAML. */
export function openApiDocument(routes: readonly { doc: RouteConfig; access: Access }[]): string {
  const registry = new OpenAPIHono();
  registry.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "An API key from LEASEHOLD_API_KEYS (only when auth is on)",
  });
  registry.openAPIRegistry.registerComponent("headers", REQUEST_ID, {
    description:
      "The request's id in the service's log: the caller's own X-Request-Id when it sent 1–128 printable ASCII " +
      "characters, else a new UUID",
    required: true,
    schema: { type: "string", example: "3b241101-e2bb-4255-8caa-4b5c9b1e9f5d" },
  });
  for (const { doc, access } of routes) {
    const security = SECURITY[access];
    registry.openAPIRegistry.registerPath(security ? { ...doc, security } : doc);
  }
  const doc = registry.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "leasehold",
      version: "1",
      description:
        "An HTTP lock service on etcd. Each grant carries a fencing token (the etcd revision that created " +
        "the lock key). Errors are RFC 9457 application/problem+json with a stable `code`; each response names " +
        "the codes it can carry. Besides them, any request may be answered by the HTTP server before it reaches " +
        "an operation: 400 bad-request (not valid HTTP), 408 request-timeout, 431 headers-too-large, 404 " +
        "not-found (no such path) and 405 method-not-allowed (with Allow), all problem+json.",
      license: { name: "Apache-2.0", url: "https://www.apache.org/licenses/LICENSE-2.0" },
    },
    servers: [
      { url: "/", description: "The service that served this document" },
      {
        url: "http://{host}:{port}",
        description: "A service on its default address (HOST and PORT)",
        variables: { host: { default: "127.0.0.1" }, port: { default: "8080" } },
      },
    ],
    security: [{ bearer: [] }],
    tags: [
      { name: "locks", description: "Mutual exclusion with fencing tokens" },
      { name: "semaphores", description: "Up to `limit` holders at once, each with its own fencing token" },
      { name: "events", description: "Holder changes as Server-Sent Events" },
      { name: "operations", description: "Health, readiness and metrics" },
      { name: "documentation", description: "This document and its API reference" },
      { name: "dashboard", description: "The live dashboard" },
    ],
  });
  // Every answer of the app carries X-Request-Id (a middleware sets it on every response).
  for (const item of Object.values(doc.paths ?? {})) {
    for (const method of ["get", "put", "post", "delete"] as const) {
      for (const response of Object.values(item[method]?.responses ?? {})) {
        const r = response as { headers?: Record<string, unknown> };
        r.headers = { ...r.headers, [REQUEST_ID]: { $ref: `#/components/headers/${REQUEST_ID}` } };
      }
    }
  }
  return stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}
