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

/** Every route the service serves, in the order openapi.yaml lists them: each line route once per kind. */
export const routes: readonly Route[] = [
  ...[LOCKS, SEMAPHORES].flatMap((k) => [
    acquire(k),
    renew(k),
    release(k, "delete"),
    release(k, "post"),
    inspect(k),
    list(k),
    fence(k),
    writeState(k),
    readState(k),
  ]),
  events,
  healthz,
  readyz,
  metrics,
  ...docsRoutes(openApiYaml),
  ...dashboard,
];

let yaml: string | undefined;

/** openapi.yaml as generated from the route table (committed; a test checks drift). */
export function openApiYaml(): string {
  yaml ??= openApiDocument(routes);
  return yaml;
}
