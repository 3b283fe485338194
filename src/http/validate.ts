import type { RouteConfig } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import type { z } from "zod";
import { allows } from "../auth/api-keys.js";
import { Problem } from "../problems.js";
import type { AppEnv } from "./deps.js";
import { invalidRequest, problemResponse } from "./errors.js";

type Schema = z.ZodType<Record<string, unknown>>;

/**
 * A route's path, scope, query and header checks in one middleware, in SPEC's order: the
 * name (400), whether the API key may use it (403), then the query and headers (400);
 * the body comes later, in the handler. One plain function instead of one async
 * validator per part: a waiting acquire keeps every middleware above it suspended for
 * as long as it waits, and each level costs memory and a few promise turns per request.
 * Handlers read the results with `c.req.valid(...)` as with zod-openapi's validators.
 */
export function checkRequest(request: RouteConfig["request"], onOneLock: boolean): MiddlewareHandler<AppEnv> {
  const params = request?.params as Schema | undefined;
  const query = request?.query as Schema | undefined;
  const headers = request?.headers as Schema | undefined;
  // Only the headers the schema names: reading them all would copy every header.
  const headerNames = headers && "shape" in headers ? Object.keys(headers.shape as object) : [];
  return (c, next) => {
    if (params) {
      const parsed = params.safeParse(c.req.param());
      if (!parsed.success) return Promise.resolve(problemResponse(invalidRequest(parsed.error, "path")));
      c.req.addValidatedData("param", parsed.data);
      const key = c.get("apiKey");
      const name = (parsed.data as { name?: string }).name;
      if (onOneLock && key && name !== undefined && !allows(key, name)) {
        throw new Problem("forbidden", `this API key may not use lock ${name}`);
      }
    }
    if (query) {
      const parsed = query.safeParse(queryObject(c));
      if (!parsed.success) return Promise.resolve(problemResponse(invalidRequest(parsed.error, "query")));
      c.req.addValidatedData("query", parsed.data);
    }
    if (headers) {
      const given: Record<string, string> = {};
      for (const h of headerNames) {
        const v = c.req.header(h);
        if (v !== undefined) given[h] = v;
      }
      const parsed = headers.safeParse(given);
      if (!parsed.success) return Promise.resolve(problemResponse(invalidRequest(parsed.error, "header")));
      c.req.addValidatedData("header", parsed.data);
    }
    return next();
  };
}

/** The query as hono's validator gives it: a repeated parameter becomes an array (and fails a string field). */
function queryObject(c: Context): Record<string, string | string[]> {
  if (!c.req.url.includes("?")) return {};
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(c.req.queries())) out[k] = v.length === 1 ? (v[0] as string) : v;
  return out;
}
