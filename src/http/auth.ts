import type { MiddlewareHandler } from "hono";
import { Problem } from "../problems.js";
import type { AppDeps, AppEnv } from "./deps.js";
import { pathPattern } from "./route.js";
import { routes } from "./routes/index.js";

/** The route table's open paths; `/metrics`-style ones are open unless metrics auth is on. */
const openPaths = routes
  .filter((r) => r.access !== "keyed")
  .map((r) => ({ access: r.access, pattern: pathPattern(r.path) }));

/** Paths anyone may call even when auth is on. */
function isOpen(path: string, deps: AppDeps): boolean {
  return openPaths.some((r) => r.pattern.test(path) && (r.access === "open" || !deps.config.LEASEHOLD_METRICS_AUTH));
}

const CHALLENGE = 'Bearer realm="leasehold"';

/** Step 1 of the API's check order: who is calling (401). Off when no keys are configured. */
export function authenticate(deps: AppDeps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!deps.auth || isOpen(c.req.path, deps)) return next();
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(c.req.header("authorization") ?? "");
    if (!match?.[1]) {
      throw new Problem(
        "unauthorized",
        "this service needs an API key: send Authorization: Bearer <key>",
        {},
        { "WWW-Authenticate": CHALLENGE },
      );
    }
    const key = await deps.auth.find(match[1]);
    if (!key) {
      throw new Problem(
        "unauthorized",
        "the API key is not valid",
        {},
        {
          "WWW-Authenticate": `${CHALLENGE}, error="invalid_token"`,
        },
      );
    }
    c.set("apiKey", key);
    // The presented secret itself identifies the caller to idempotency (never logged).
    c.set("caller", match[1]);
    return next();
  };
}
