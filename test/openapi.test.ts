import { readFileSync } from "node:fs";
import type { z } from "@hono/zod-openapi";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { openApiYaml, routes } from "../src/http/routes/index.js";
import { PROBLEMS, type ProblemCode } from "../src/problems.js";
import { appWithoutBackend } from "./support/app.js";
import { LINE_OPERATIONS } from "./support/prism.js";

// biome-ignore lint/suspicious/noExplicitAny: the parsed document is arbitrary YAML
type Doc = any;
// biome-ignore lint/suspicious/noExplicitAny: one operation of it
type Operation = any;

/** Every operation of the document, with where it is. */
function operations(doc: Doc): { where: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item as Record<string, Operation>).map(([method, op]) => ({ where: `${method} ${path}`, op })),
  );
}

/** What a `$ref` points at, or the object itself. */
function resolve(doc: Doc, o: Doc): Doc {
  if (!o?.$ref) return o;
  return (o.$ref as string)
    .slice(2)
    .split("/")
    .reduce((at: Doc, key: string) => at[key], doc);
}

/** The `code` values a problem schema allows: its own enum, or those of the schemas it is made of. */
function codesOf(doc: Doc, schema: Doc): string[] {
  const s = resolve(doc, schema);
  if (s.oneOf) return s.oneOf.flatMap((x: Doc) => codesOf(doc, x));
  const own = s.properties?.code?.enum ?? [];
  const parts = (s.allOf ?? []).flatMap((x: Doc) => codesOf(doc, x));
  return [...own, ...parts];
}

/** The document as parsed once: each test reads its own part. */
const doc: Doc = parse(openApiYaml());

describe("openapi.yaml", () => {
  it("is exactly what the zod route definitions generate (run `npm run openapi` after changing routes)", () => {
    const committed = readFileSync(new URL("../openapi.yaml", import.meta.url), "utf8");
    expect(committed).toBe(openApiYaml());
  });

  it("documents every route the service serves, each with a stable camelCase operationId", () => {
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item as object).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual(routes.map((r) => `${r.method.toUpperCase()} ${r.path}`).sort());
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        "/",
        "/dashboard/app.css",
        "/dashboard/app.js",
        "/docs",
        "/docs/assets/{file}",
        "/events",
        "/healthz",
        "/locks",
        "/locks/{name}",
        "/locks/{name}/renew",
        "/locks/{name}/release",
        "/locks/{name}/fence",
        "/locks/{name}/state",
        "/metrics",
        "/openapi.yaml",
        "/readyz",
        "/semaphores",
        "/semaphores/{name}",
        "/semaphores/{name}/renew",
        "/semaphores/{name}/release",
        "/semaphores/{name}/fence",
        "/semaphores/{name}/state",
      ].sort(),
    );
    const ids = operations(doc).map(({ op }) => op.operationId);
    for (const id of ids) expect(id).toMatch(/^[a-z][A-Za-z]+$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(
      expect.arrayContaining([
        ...LINE_OPERATIONS,
        "streamEvents",
        "checkLiveness",
        "checkReadiness",
        "getMetrics",
        "getOpenApiDocument",
        "getApiReference",
        "getDashboard",
      ]),
    );
  });

  it("asks an API key exactly where the service does", () => {
    expect(doc.security).toEqual([{ bearer: [] }]);
    for (const route of routes) {
      const op = doc.paths[route.path][route.method];
      const expected = { open: [], keyed: undefined, metrics: [{ bearer: [] }, {}] }[route.access];
      expect(op.security, `${route.method} ${route.path}`).toEqual(expected);
    }
    for (const path of ["/healthz", "/readyz", "/openapi.yaml", "/docs", "/"]) {
      expect(doc.paths[path].get.security, path).toEqual([]);
    }
  });

  it("documents the contract's lock and semaphore routes", () => {
    for (const base of ["/locks", "/semaphores"]) {
      expect(Object.keys(doc.paths[`${base}/{name}`]).sort()).toEqual(["delete", "get", "post"]);
      const acquire = doc.paths[`${base}/{name}`].post;
      expect(Object.keys(acquire.responses)).toEqual(
        expect.arrayContaining(["200", "201", "202", "409", "410", "400", "413", "415", "422", "429", "503"]),
      );
      expect(Object.keys(acquire.requestBody.content).sort()).toEqual([
        "application/json",
        "application/x-www-form-urlencoded",
      ]);
      const release = doc.paths[`${base}/{name}`].delete;
      expect(release.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(["lease", "ticket", "force", "token"]),
      );
      // The same release as a POST, the handle in its body: the same inputs and answers.
      const byPost = doc.paths[`${base}/{name}/release`].post;
      expect(Object.keys(doc.paths[`${base}/{name}/release`])).toEqual(["post"]);
      expect(byPost.parameters).toEqual(release.parameters);
      expect(byPost.requestBody).toEqual(release.requestBody);
      expect(byPost.responses).toEqual(release.responses);
    }
  });

  it("documents tickets, semaphores and their problems", () => {
    const { components } = doc;
    const fields = (schema: string) => Object.keys(components.schemas[schema].properties ?? {});
    expect(fields("AcquireRequest")).toEqual([
      "ttl",
      "owner",
      "wait",
      "queue",
      "ticketTtl",
      "ticket",
      "value",
      "lockDelay",
    ]);
    // Lock-delay is a lock's alone.
    expect(fields("SemaphoreAcquireRequest")).toEqual([
      "limit",
      ...fields("AcquireRequest").filter((f: string) => f !== "lockDelay"),
    ]);
    expect(fields("Ticket")).toEqual(["ticket", "position", "ttl"]);
    expect(fields("LockInfo")).toContain("waiters");
    expect(fields("SemaphoreInfo")).toEqual(["name", "limit", "holders", "waiters", "index"]);
    expect(fields("ReleaseRequest")).toEqual(["lease", "ticket"]);
    const extension = (schema: string) => Object.keys(components.schemas[schema].allOf[1].properties);
    expect(extension("LockHeldProblem")).toEqual(["code", "holder", "position", "reason"]);
    expect(extension("FenceStaleProblem")).toEqual(["code", "current", "holders"]);
    expect(extension("InvalidRequestProblem")).toEqual(["code", "errors"]);
    expect(fields("StateRequest")).toEqual(["lease", "value"]);
    expect(fields("State")).toEqual(["value", "token", "revision", "updatedAt"]);
    expect(extension("LimitMismatchProblem")).toEqual(["code", "limit"]);
    expect(extension("SemaphoreGrant")).toEqual(["limit"]);
  });

  it("documents published values, blocking reads and the event stream", () => {
    const fields = (schema: string) => Object.keys(doc.components.schemas[schema].properties ?? {});
    expect(fields("RenewRequest")).toEqual(["lease", "value"]);
    expect(fields("LockInfo")).toEqual(expect.arrayContaining(["value", "index"]));
    expect(fields("SemaphoreHolder")).toContain("value");
    expect(fields("Grant")).toContain("value");
    for (const base of ["/locks", "/semaphores"]) {
      const inspect = doc.paths[`${base}/{name}`].get;
      expect(inspect.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(["index", "wait"]),
      );
      expect(Object.keys(inspect.responses[200].headers)).toEqual(["Leasehold-Index", "X-Request-Id"]);
      expect(Object.keys(inspect.responses[404].headers)).toEqual(["Leasehold-Index", "X-Request-Id"]);
    }
    const events = doc.paths["/events"].get;
    expect(Object.keys(events.responses[200].content)).toEqual(["text/event-stream"]);
    expect(Object.keys(events.responses)).toEqual(expect.arrayContaining(["200", "400", "401", "429", "503"]));
    expect(events.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`).sort()).toEqual(
      ["header:last-event-id", "query:kind", "query:lastEventId", "query:prefix"].sort(),
    );
  });

  it("says which codes each problem response carries, each a code of that status", () => {
    let checked = 0;
    for (const { where, op } of operations(doc)) {
      for (const [status, response] of Object.entries(op.responses as Record<string, Doc>)) {
        const problem = response.content?.["application/problem+json"];
        if (Number(status) < 400) {
          expect(problem, `${where} ${status}`).toBeUndefined();
          continue;
        }
        expect(Object.keys(response.content), `${where} ${status}`).toEqual(["application/problem+json"]);
        const codes = codesOf(doc, problem.schema);
        expect(codes.length, `${where} ${status}`).toBeGreaterThan(0);
        for (const code of codes) {
          expect(PROBLEMS[code as ProblemCode]?.status, `${where} ${status}: ${code}`).toBe(Number(status));
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
    const acquire = doc.paths["/semaphores/{name}"].post.responses;
    expect(codesOf(doc, acquire[409].content["application/problem+json"].schema)).toEqual([
      "lock-held",
      "limit-mismatch",
    ]);
    // The common members; `code` lists every code there is.
    expect(doc.components.schemas.Problem.required).toEqual(["type", "title", "status", "detail", "code"]);
    for (const code of Object.keys(PROBLEMS))
      expect(doc.components.schemas.Problem.properties.code.description).toContain(code);
  });

  it("declares the headers the service sends", () => {
    const retryAfter = ["lock-held", "too-many-waiters", "too-many-streams", "backend-unavailable"];
    for (const { where, op } of operations(doc)) {
      for (const [status, response] of Object.entries(op.responses as Record<string, Doc>)) {
        const headers = response.headers ?? {};
        expect(headers["X-Request-Id"], `${where} ${status}`).toEqual({ $ref: "#/components/headers/X-Request-Id" });
        const problem = response.content?.["application/problem+json"];
        const codes = problem ? codesOf(doc, problem.schema) : [];
        const retries = codes.filter((c) => retryAfter.includes(c));
        if (retries.length > 0) {
          expect(headers["Retry-After"], `${where} ${status}`).toMatchObject({
            required: retries.length === codes.length,
            schema: { type: "integer" },
          });
        } else expect(headers["Retry-After"], `${where} ${status}`).toBeUndefined();
        if (status === "401") expect(headers["WWW-Authenticate"]).toMatchObject({ required: true });
      }
    }
    expect(doc.paths["/locks/{name}"].get.responses[404].headers["Leasehold-Index"]).toMatchObject({ required: true });
    expect(Object.keys(doc.paths["/events"].get.responses[200].headers)).toEqual([
      "Cache-Control",
      "X-Accel-Buffering",
      "X-Request-Id",
    ]);
    expect(Object.keys(doc.paths["/"].get.responses[200].headers)).toEqual([
      "content-security-policy",
      "x-frame-options",
      "x-content-type-options",
      "referrer-policy",
      "X-Request-Id",
    ]);
  });

  it("types numbers in the query and headers as numbers, which the service takes as the text they arrive as", () => {
    const numeric: string[] = [];
    for (const route of routes) {
      const request = route.doc.request;
      const params = resolve(doc, doc.paths[route.path][route.method]).parameters ?? [];
      for (const p of params.filter((x: Doc) => ["integer", "number"].includes(x.schema.type))) {
        const part = p.in === "query" ? request?.query : request?.headers;
        const field = (part as z.ZodObject).shape[p.name] as z.ZodType;
        const ok = (text: string) => field.safeParse(text).success;
        const { type, minimum, maximum } = p.schema;
        numeric.push(`${route.method} ${route.path} ${p.name}: ${type}`);
        expect(ok(String(minimum)), p.name).toBe(true);
        expect(ok(String(minimum - 1)), p.name).toBe(false);
        if (maximum !== undefined) {
          expect(ok(String(maximum)), p.name).toBe(true);
          expect(ok(String(maximum + 1)), p.name).toBe(false);
        }
        expect(ok("2.5"), p.name).toBe(type === "number");
        for (const text of ["", "abc", "1e3", "0x10", " 5"]) expect(ok(text), `${p.name}=${text}`).toBe(false);
      }
    }
    expect(numeric).toEqual(
      expect.arrayContaining([
        "delete /locks/{name} token: integer",
        "get /locks/{name} index: integer",
        "get /locks/{name} wait: number",
        "get /locks limit: integer",
        "get /locks/{name}/fence token: integer",
        "get /semaphores limit: integer",
        "get /events lastEventId: integer",
        "get /events last-event-id: integer",
      ]),
    );
    expect(doc.paths["/locks"].get.parameters.find((p: Doc) => p.name === "limit").schema).toMatchObject({
      type: "integer",
      minimum: 1,
      maximum: 1000,
      default: 100,
    });
  });

  it("states configurable defaults and maxima in words, and `default` only for fixed ones", () => {
    const defaults = new Set<string>();
    const walk = (o: Doc, name: string) => {
      if (typeof o !== "object" || o === null) return;
      if (o.default !== undefined) defaults.add(`${name}=${JSON.stringify(o.default)}`);
      for (const [k, v] of Object.entries(o)) walk(v, k === "schema" ? (o.name ?? name) : k);
    };
    walk(doc.paths, "");
    walk(doc.components.schemas, "");
    expect([...defaults].sort()).toEqual(['force="false"', "limit=100"]);
    const acquire = doc.components.schemas.AcquireRequest.properties;
    for (const [field, setting] of [
      ["ttl", "LEASEHOLD_MAX_TTL (86400 unless configured"],
      ["wait", "LEASEHOLD_MAX_WAIT (60 unless configured"],
      ["ticketTtl", "LEASEHOLD_MAX_TICKET_TTL (3600 unless configured"],
    ] as const) {
      expect(acquire[field].description, field).toContain(`at most ${setting}`);
      expect(acquire[field].maximum, field).toBeUndefined();
    }
    expect(acquire.ttl.description).toContain("Default: LEASEHOLD_DEFAULT_TTL (30 unless configured)");
    expect(acquire.lockDelay).toMatchObject({ minimum: 0, maximum: 60 });
  });

  it("names its servers, and dates as date-times", () => {
    expect(doc.servers.map((s: Doc) => s.url)).toEqual(["/", "http://{host}:{port}"]);
    expect(doc.servers[1].variables).toEqual({ host: { default: "127.0.0.1" }, port: { default: "8080" } });
    const { schemas } = doc.components;
    for (const s of [schemas.Grant, schemas.LockInfo, schemas.SemaphoreHolder]) {
      expect(s.properties.expiresAt).toMatchObject({ type: "string", format: "date-time" });
    }
    expect(schemas.LockHeldProblem.allOf[1].properties.holder.properties.expiresAt.format).toBe("date-time");
    expect(schemas.State.properties.updatedAt).toMatchObject({ type: "string", format: "date-time" });
  });

  it("answers an unknown API reference file, and /metrics where the runtime keeps none, with a 404", async () => {
    const app = appWithoutBackend();
    for (const path of ["/docs/assets/nothing.css", "/metrics"]) {
      const r = await app.request(path);
      expect(r.status, path).toBe(404);
      expect(await r.json()).toMatchObject({ code: "not-found" });
    }
  });
});
