import type { RouteConfig } from "@hono/zod-openapi";
import type { App, AppDeps } from "./deps.js";
import { checkRequest } from "./validate.js";

/**
 * Who may call a route when auth is on: anyone (`open`), a caller with an API key
 * (`keyed`), or anyone unless LEASEHOLD_METRICS_AUTH is set (`metrics`).
 */
export type Access = "open" | "keyed" | "metrics";

/**
 * One entry of the route table (routes/index.ts): declared once, it feeds registration,
 * openapi.yaml, the 405 answers' Allow header and the open paths.
 */
export interface Route {
  method: "get" | "post" | "put" | "delete";
  /** The path, with `{param}` segments as in openapi.yaml. */
  path: string;
  access: Access;
  /** The route's OpenAPI definition: openapi.yaml documents every route the service serves. */
  doc: RouteConfig;
  register(app: App, deps: AppDeps): void;
}

/** A route of the table: method and path come from its definition. */
export function documented(doc: RouteConfig, access: Access, register: Route["register"]): Route {
  return { method: doc.method as Route["method"], path: doc.path, access, doc, register };
}

/**
 * The route as registered for handling: documented separately (see openapi.ts), with its
 * path, query and header checks (and, on one lock or semaphore, the API key's scope) done by one
 * middleware (see validate.ts), and its body read by `readBody` inside the handler, so
 * that scope is checked before the body (the API's check order) and forms work.
 */
export function forHandling<R extends RouteConfig>(route: R): R & { hide: true } {
  const { body: _body, params: _params, query: _query, headers: _headers, ...rest } = route.request ?? {};
  const oneLine = route.path.includes("{name}")
    ? route.path.startsWith("/semaphores/")
      ? "semaphore"
      : "lock"
    : undefined;
  const check = checkRequest(route.request, oneLine);
  return { ...route, request: rest, hide: true, middleware: [check] };
}

/** A matcher for a table path: `{param}` is one path segment. */
export function pathPattern(path: string): RegExp {
  return new RegExp(`^${path.replaceAll(".", "\\.").replace(/\{[^}]+\}/g, "[^/]+")}$`);
}
