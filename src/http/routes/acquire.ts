import { createRoute } from "@hono/zod-openapi";
import type { Config } from "../../config.js";
import type { LineRef } from "../../lock/index.js";
import { Problem } from "../../problems.js";
import { readBody } from "../body.js";
import { documented, forHandling, type Route } from "../route.js";
import { bodyProblems, commonProblems, IdempotencyHeader, optionalBody, problem, TicketAnswer } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";

/** `POST /locks/{name}` and `POST /semaphores/{name}`: take it, queue for it, or redeem a ticket. */
export function acquire(k: KindRoutes): Route {
  const semaphore = k.kind === "semaphore";
  const doc = createRoute({
    method: "post",
    path: `${k.base}/{name}`,
    operationId: `acquire${k.capitalized}`,
    tags: [k.plural],
    summary: semaphore ? "Take a permit of a semaphore" : "Acquire a lock",
    description:
      (semaphore
        ? "Takes one of the semaphore's `limit` permits if one is free and nobody is in line, or long-polls up to " +
          "`wait` seconds for one; callers in line are served in the order they joined. Each permit has its own fencing token. "
        : "Takes the lock if it is free and nobody is in line, or long-polls up to `wait` seconds for it; callers " +
          "in line are served in the order they joined. The grant's `token` is the fencing token. ") +
      "Keep `lease` secret for renew and release. `value` is published while the grant holds (GET shows it, " +
      "events carry it; renew replaces it). With `queue: true`, a caller not granted within `wait` keeps " +
      "a place in line across requests (202 with a `ticket`), and comes back with `ticket` (201 at its turn, " +
      "else 202 with its new position). With a ticket, Idempotency-Key is not used: redeeming twice is safe.",
    request: {
      params: k.nameParam,
      headers: IdempotencyHeader,
      body: optionalBody(k.acquireBody),
    },
    responses: {
      201: { description: "Granted", content: { "application/json": { schema: k.grantSchema } } },
      200: {
        description:
          "The same live grant again: a retry by the same caller (API key) with the same Idempotency-Key and fields, " +
          "or a ticket redeemed again after its grant",
        content: { "application/json": { schema: k.grantSchema } },
      },
      202: {
        description: "In line (`queue: true` or a ticket): not granted yet; come back with the ticket",
        content: { "application/json": { schema: TicketAnswer } },
      },
      422: problem(
        "idempotency-key-mismatch: this caller used the Idempotency-Key with other fields; nothing changed",
        ["idempotency-key-mismatch"],
      ),
      409: semaphore
        ? problem(
            "lock-held: every permit is taken (after any wait), with `position` after a wait and Retry-After; " +
              "limit-mismatch: the holders took the semaphore with another `limit` (nothing changed)",
            ["lock-held", "limit-mismatch"],
          )
        : problem(
            "lock-held: someone else holds it (after any wait); `position` after a wait; Retry-After is the " +
              'holder\'s remaining TTL. With `reason: "lock-delay"`, nobody holds it but its last grant ended ' +
              "without a release within its lockDelay; Retry-After is what is left of that",
            ["lock-held"],
          ),
      410: problem("lock-lost: the ticket is no longer in line (not redeemed within its ticketTtl, or it left)", [
        "lock-lost",
      ]),
      429: problem("too-many-waiters: this instance's waiter cap is reached", ["too-many-waiters"]),
      ...commonProblems,
      ...bodyProblems,
    },
  });

  return documented(doc, "keyed", (app, { config, lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const line: LineRef = { kind: k.kind, name };
      const idempotencyKey = c.req.valid("header")["idempotency-key"];
      const body: AcquireInput = await readBody(
        c,
        k.acquireBody,
        ["ttl", "wait", "ticketTtl", "limit", "lockDelay"],
        ["queue"],
      );
      checkAcquire(body, config);
      const wait = body.wait ?? 0;
      const acquired =
        body.ticket !== undefined
          ? await lines.redeem(line, body.ticket.toLowerCase(), {
              wait,
              signal: c.req.raw.signal,
              ...(body.ttl !== undefined ? { ttl: body.ttl } : {}),
              ...(body.owner !== undefined ? { owner: body.owner } : {}),
              ...(body.value !== undefined ? { value: body.value } : {}),
              ...(body.limit !== undefined ? { limit: body.limit } : {}),
              ...(body.lockDelay !== undefined ? { lockDelay: body.lockDelay } : {}),
            })
          : await lines.acquire(line, {
              ttl: body.ttl ?? config.LEASEHOLD_DEFAULT_TTL,
              wait,
              limit: semaphore ? requiredLimit(body.limit) : 1,
              signal: c.req.raw.signal,
              caller: c.get("caller") ?? "",
              ...(body.owner !== undefined ? { owner: body.owner } : {}),
              ...(body.value !== undefined ? { value: body.value } : {}),
              ...(body.queue ? { queue: true, ticketTtl: body.ticketTtl ?? config.LEASEHOLD_DEFAULT_TICKET_TTL } : {}),
              ...(body.lockDelay ? { lockDelay: body.lockDelay } : {}),
              ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
            });
      if ("ticket" in acquired) {
        const { ticket, position, ttl } = acquired.ticket;
        return c.json({ ticket, position, ttl }, 202);
      }
      c.set("token", acquired.grant.token);
      return c.json(k.grant(acquired.grant), acquired.replayed ? 200 : 201);
    });
  });
}

/** The acquire body of either kind (a lock's has no `limit`). */
interface AcquireInput {
  ttl?: number | undefined;
  owner?: string | undefined;
  value?: string | undefined;
  wait?: number | undefined;
  queue?: boolean | undefined;
  ticketTtl?: number | undefined;
  ticket?: string | undefined;
  limit?: number | undefined;
  lockDelay?: number | undefined;
}

/** The checks the body's schema can't make: the configured maxima and which fields go together. */
function checkAcquire(body: AcquireInput, config: Config): void {
  atMost("ttl", body.ttl, config.LEASEHOLD_MAX_TTL);
  atMost("wait", body.wait, config.LEASEHOLD_MAX_WAIT);
  atMost("ticketTtl", body.ticketTtl, config.LEASEHOLD_MAX_TICKET_TTL);
  if (body.ticketTtl !== undefined && body.ticket !== undefined) {
    throw new Problem(
      "invalid-request",
      "ticketTtl is set when a place in line is taken (with queue: true); a redeem with a ticket cannot change it",
    );
  }
  if (body.ticketTtl !== undefined && body.queue !== true) {
    throw new Problem("invalid-request", "ticketTtl goes with queue: true (it is how long the ticket keeps its place)");
  }
}

function atMost(field: string, value: number | undefined, max: number): void {
  if (value !== undefined && value > max) {
    throw new Problem("invalid-request", `${field} must be at most ${max} seconds, got ${value}`);
  }
}

function requiredLimit(limit: number | undefined): number {
  if (limit === undefined) {
    throw new Problem(
      "invalid-request",
      'limit is required for a semaphore: send {"limit": N}, how many may hold it at once (1–10000)',
    );
  }
  return limit;
}
