import { OpenAPIHono } from "@hono/zod-openapi";
import { NAME_ALPHABET } from "../lock/names.js";
import { Problem } from "../problems.js";
import { authenticate } from "./auth.js";
import type { App, AppDeps, AppEnv } from "./deps.js";
import { errorHandler, problemResponse, validationHook } from "./errors.js";
import { documentedRoutes } from "./openapi.js";
import { registerAcquire } from "./routes/acquire.js";
import { registerDocs } from "./routes/docs.js";
import { registerHealth } from "./routes/health.js";
import { registerInspect } from "./routes/inspect.js";
import { registerList } from "./routes/list.js";
import { registerRelease } from "./routes/release.js";
import { registerRenew } from "./routes/renew.js";

/** Builds the whole HTTP app; runtime entries only supply `deps` and serve it. */
export function createApp(deps: AppDeps): App {
  const app: App = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

  app.use(async (c, next) => {
    const started = Date.now();
    await next();
    // Route pattern and name only: the URL's query may carry a lease handle.
    deps.log.info("request", {
      method: c.req.method,
      route: c.req.routePath,
      name: c.req.param("name"),
      status: c.res.status,
      ms: Date.now() - started,
    });
  });

  app.use(authenticate(deps));

  registerAcquire(app, deps);
  registerRenew(app, deps);
  registerRelease(app, deps);
  registerInspect(app, deps);
  registerList(app, deps);
  registerHealth(app, deps);
  registerDocs(app, deps);

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
    if (new URL(c.req.url).pathname.startsWith("/locks/")) {
      // Names cannot contain "/", so an unmatched path under /locks/ is a bad name.
      return problemResponse(
        new Problem("invalid-request", `a lock name is 1–255 characters from ${NAME_ALPHABET} (no "/"; use ":")`),
      );
    }
    return problemResponse(new Problem("not-found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`));
  });
  return app;
}

const extraRoutes = [
  { method: "get", path: "/openapi.yaml" },
  { method: "get", path: "/docs" },
];

const routeMatchers = [...documentedRoutes, ...extraRoutes].map((r) => ({
  method: r.method.toUpperCase(),
  pattern: new RegExp(`^${r.path.replace(/\{[^}]+\}/g, "[^/]+").replaceAll(".", "\\.")}$`),
}));

function allowedMethods(path: string): string[] {
  const methods = routeMatchers.filter((r) => r.pattern.test(path)).map((r) => r.method);
  if (methods.includes("GET")) methods.push("HEAD");
  return [...new Set(methods)];
}
