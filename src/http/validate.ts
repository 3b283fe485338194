import { type RouteConfig, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { allows } from "../auth/api-keys.js";
import { Problem } from "../problems.js";
import type { AppEnv } from "./deps.js";
import { fieldNames, invalidRequest, problemResponse } from "./errors.js";

type Schema = z.ZodType<Record<string, unknown>>;

/**
 * The query of a route that takes none: any parameter is unknown, so a 400 naming it. A
 * `?ttl=` that was silently ignored would let a lock expire in the middle of a job.
 */
const NO_QUERY: Schema = z.strictObject({});

/**
 * A route's path, scope, query and header checks in one middleware, in the API's check order: the
 * name (400), whether the API key may use it (403), then the query (an unknown parameter
 * is a 400 on routes that take none too) and headers (400); the body comes later, in the
 * handler. One plain function instead of one async
 * validator per part: a waiting acquire keeps every middleware above it suspended for
 * as long as it waits, and each level costs memory and a few promise turns per request.
 * Handlers read the results with `c.req.valid(...)` as with zod-openapi's validators.
 */
export function checkRequest(
  request: RouteConfig["request"],
  /** What the route's `{name}` names, when it has one: the API key's scope is checked on it. */
  oneLine: "lock" | "semaphore" | undefined,
): MiddlewareHandler<AppEnv> {
  const params = request?.params as Schema | undefined;
  const takesQuery = request?.query !== undefined;
  const query = (request?.query as Schema | undefined) ?? NO_QUERY;
  const knownQuery = fieldNames(query);
  const json = request?.body?.content?.["application/json"];
  const bodyFields = fieldNames(json && "schema" in json ? json.schema : undefined);
  const headers = request?.headers as Schema | undefined;
  // Only the headers the schema names: reading them all would copy every header.
  const headerNames = headers && "shape" in headers ? Object.keys(headers.shape as object) : [];
  return (c, next) => {
    if (params) {
      const parsed = params.safeParse(c.req.param());
      if (!parsed.success) return Promise.resolve(problemResponse(invalidRequest(parsed.error, "path", undefined)));
      c.req.addValidatedData("param", parsed.data);
      const key = c.get("apiKey");
      const name = (parsed.data as { name?: string }).name;
      if (oneLine && key && name !== undefined && !allows(key, name)) {
        throw new Problem("forbidden", `this API key may not use ${oneLine} ${name}`);
      }
    }
    if (takesQuery || c.req.url.includes("?")) {
      const input = queryObject(c);
      const parsed = query.safeParse(input);
      if (!parsed.success) {
        const problem = invalidRequest(parsed.error, "query", input, { known: knownQuery, bodyFields });
        return Promise.resolve(problemResponse(problem));
      }
      c.req.addValidatedData("query", parsed.data);
    }
    if (headers) {
      const given: Record<string, string> = {};
      for (const h of headerNames) {
        const v = c.req.header(h);
        if (v !== undefined) given[h] = v;
      }
      const parsed = headers.safeParse(given);
      if (!parsed.success) return Promise.resolve(problemResponse(invalidRequest(parsed.error, "header", given)));
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
