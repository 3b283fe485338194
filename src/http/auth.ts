import type { MiddlewareHandler } from "hono";
import { Problem } from "../problems.js";
import type { AppDeps, AppEnv } from "./deps.js";

/** Paths anyone may call even when auth is on (SPEC "Auth"). */
function isOpen(path: string, deps: AppDeps): boolean {
  if (path === "/metrics") return !deps.config.LEASEHOLD_METRICS_AUTH;
  return (
    path === "/" ||
    path.startsWith("/dashboard/") ||
    path === "/healthz" ||
    path === "/readyz" ||
    path === "/openapi.yaml" ||
    path === "/docs" ||
    path.startsWith("/docs/")
  );
}

const CHALLENGE = 'Bearer realm="leasehold"';

/** Step 1 of SPEC's check order: who is calling (401). Off when no keys are configured. */
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
