import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { NAME_ALPHABET } from "../lock/names.js";
import { Problem } from "../problems.js";
import { authenticate } from "./auth.js";
import type { App, AppDeps, AppEnv } from "./deps.js";
import { errorHandler, problemResponse } from "./errors.js";
import { pathPattern } from "./route.js";
import { routes } from "./routes/index.js";

/** Builds the whole HTTP app; runtime entries only supply `deps` and serve it. */
export function createApp(deps: AppDeps): App {
  // No defaultHook: routes are registered without their request schemas (see forHandling),
  // and one middleware (validate.ts) checks them in the API's order.
  const app: App = new OpenAPIHono<AppEnv>();

  // Not an async function: a waiting acquire would keep its frame suspended for as long as it waits.
  app.use((c, next) => {
    const started = performance.now();
    const given = c.req.header("x-request-id");
    const requestId = given !== undefined && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    c.set("requestId", requestId);
    return next().then(() => logRequest(c, requestId, started));
  });

  const logRequest = (c: Context<AppEnv>, requestId: string, started: number) => {
    c.res.headers.set("x-request-id", requestId);
    if (!deps.log.infoEnabled) return;
    // Route pattern and name only: the URL's query may carry a lease handle.
    const token = c.get("token");
    deps.log.info("request", {
      requestId,
      method: c.req.method,
      route: c.req.routePath,
      name: c.req.param("name"),
      ...(token !== undefined ? { token } : {}),
      status: c.res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
    });
  };

  app.use(authenticate(deps));

  for (const route of routes) route.register(app, deps);

  app.onError(errorHandler(deps.log));
  app.notFound((c) => {
    const allowed = allowedMethods(new URL(c.req.url).pathname);
    if (allowed.length > 0) {
      const res = problemResponse(
        new Problem("method-not-allowed", `${c.req.method} is not allowed here; use ${allowed.join(", ")}`),
      );
      res.headers.set("allow", allowed.join(", "));
      return res;
    }
    const under = /^\/(lock|semaphore)s\//.exec(new URL(c.req.url).pathname)?.[1];
    if (under) {
      // Names cannot contain "/", so an unmatched path under /locks/ or /semaphores/ is a bad name.
      return problemResponse(
        new Problem("invalid-request", `a ${under} name is 1–255 characters from ${NAME_ALPHABET} (no "/"; use ":")`),
      );
    }
    return problemResponse(new Problem("not-found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`));
  });
  return app;
}

/** A caller's X-Request-Id is echoed back when it is short printable ASCII; else we make one. */
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

const routeMatchers = routes.map((r) => ({ method: r.method.toUpperCase(), pattern: pathPattern(r.path) }));

function allowedMethods(path: string): string[] {
  const methods = routeMatchers.filter((r) => r.pattern.test(path)).map((r) => r.method);
  if (methods.includes("GET")) methods.push("HEAD");
  return [...new Set(methods)];
}
