import { createRoute } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { readBody } from "../body.js";
import { documented, forHandling, type Route } from "../route.js";
import {
  AcquireBody,
  bodyProblems,
  commonProblems,
  Grant,
  IdempotencyHeader,
  LockHeldProblem,
  NameParam,
  problem,
} from "../schemas.js";

export const acquireRoute = createRoute({
  method: "post",
  path: "/locks/{name}",
  tags: ["locks"],
  summary: "Acquire a lock",
  description:
    "Takes the lock if it is free, or long-polls up to `wait` seconds for it. " +
    "The grant's `token` is the fencing token; keep `lease` secret for renew and release.",
  request: {
    params: NameParam,
    headers: IdempotencyHeader,
    body: {
      required: false,
      content: {
        "application/json": { schema: AcquireBody },
        "application/x-www-form-urlencoded": { schema: AcquireBody },
      },
    },
  },
  responses: {
    201: { description: "Granted", content: { "application/json": { schema: Grant } } },
    200: {
      description:
        "The same live grant again: a retry by the same caller (API key) with the same Idempotency-Key and fields",
      content: { "application/json": { schema: Grant } },
    },
    422: problem(
      "idempotency-key-mismatch: this caller used the Idempotency-Key with other fields (ttl, owner); nothing changed",
    ),
    409: {
      description: "lock-held: someone else holds it (after any wait); Retry-After is the holder's remaining TTL",
      content: { "application/problem+json": { schema: LockHeldProblem } },
    },
    429: problem("too-many-waiters: this instance's waiter cap is reached (has Retry-After)"),
    ...commonProblems,
    ...bodyProblems,
  },
});

export const acquire: Route = documented(acquireRoute, "keyed", (app, deps) => {
  const { config, locks } = deps;
  app.openapi(forHandling(acquireRoute), async (c) => {
    const { name } = c.req.valid("param");
    const idempotencyKey = c.req.valid("header")["idempotency-key"];
    const body = await readBody(c, AcquireBody, ["ttl", "wait"]);
    const ttl = body.ttl ?? config.LEASEHOLD_DEFAULT_TTL;
    if (ttl > config.LEASEHOLD_MAX_TTL) {
      throw new Problem("invalid-request", `ttl must be at most ${config.LEASEHOLD_MAX_TTL} seconds, got ${ttl}`);
    }
    const wait = body.wait ?? 0;
    if (wait > config.LEASEHOLD_MAX_WAIT) {
      throw new Problem("invalid-request", `wait must be at most ${config.LEASEHOLD_MAX_WAIT} seconds, got ${wait}`);
    }
    const { grant, replayed } = await locks.acquire(name, {
      ttl,
      wait,
      signal: c.req.raw.signal,
      caller: c.get("caller") ?? "",
      ...(body.owner !== undefined ? { owner: body.owner } : {}),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    });
    c.set("token", grant.token);
    return c.json(grant, replayed ? 200 : 201);
  });
});
