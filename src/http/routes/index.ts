import type { RouteConfig } from "@hono/zod-openapi";
import { openApiDocument } from "../openapi.js";
import type { Route } from "../route.js";
import { acquire } from "./acquire.js";
import { dashboard } from "./dashboard.js";
import { docsRoutes } from "./docs.js";
import { events } from "./events.js";
import { fence } from "./fence.js";
import { healthz, readyz } from "./health.js";
import { inspect } from "./inspect.js";
import { LOCKS, SEMAPHORES } from "./kinds.js";
import { list } from "./list.js";
import { metrics } from "./metrics.js";
import { release } from "./release.js";
import { renew } from "./renew.js";
import { readState, writeState } from "./state.js";

/** The API's documented routes, in the order openapi.yaml lists them: each line route once per kind. */
const api: Route[] = [
  ...[LOCKS, SEMAPHORES].flatMap((k) => [
    acquire(k),
    renew(k),
    release(k),
    inspect(k),
    list(k),
    fence(k),
    writeState(k),
    readState(k),
  ]),
  events,
  healthz,
  readyz,
];

let yaml: string | undefined;

/** openapi.yaml as generated from the route table (committed; a test checks drift). */
export function openApiYaml(): string {
  yaml ??= openApiDocument(api.flatMap((r) => (r.doc ? [r.doc as RouteConfig] : [])));
  return yaml;
}

/** Every route the service serves: the one table registration, docs, 405s and auth read. */
export const routes: readonly Route[] = [...api, ...docsRoutes(openApiYaml), ...dashboard, metrics];
