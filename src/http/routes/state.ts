import { createRoute } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { readBody } from "../body.js";
import { documented, forHandling, type Route } from "../route.js";
import {
  bodyProblems,
  commonProblems,
  LeaseQuery,
  MAX_STATE_BYTES,
  optionalBody,
  problem,
  StateAnswer,
  StateBody,
} from "../schemas.js";
import type { KindRoutes } from "./kinds.js";
import { requiredLease } from "./lease-input.js";

const ABOUT_STATE =
  "A value stored under the name that outlives its grants (a cron job's last successful run, a leader's " +
  "checkpoint) and is written only by a current holder: the write and the check that the writer's grant is " +
  "still the current one are one etcd transaction, so a holder paused past its TTL can never write it.";

/** `PUT /locks/{name}/state`: write the guarded state as the current holder. */
export function writeState(k: KindRoutes): Route {
  const doc = createRoute({
    method: "put",
    path: `${k.base}/{name}/state`,
    operationId: `write${k.capitalized}State`,
    tags: [k.plural],
    summary: k.kind === "semaphore" ? "Write a semaphore's guarded state" : "Write a lock's guarded state",
    description: `${ABOUT_STATE}${
      k.kind === "semaphore"
        ? " A semaphore has one state, which the holder of any current permit may write (it records that permit's token)."
        : ""
    }`,
    request: { params: k.nameParam, query: LeaseQuery, body: optionalBody(StateBody) },
    responses: {
      200: { description: "Written", content: { "application/json": { schema: StateAnswer } } },
      410: problem(`lock-lost: this lease no longer holds the ${k.noun}; nothing was written`, ["lock-lost"]),
      ...commonProblems,
      ...bodyProblems,
      413: problem(`payload-too-large: body over 1 MiB, or a value over ${MAX_STATE_BYTES} UTF-8 bytes`, [
        "payload-too-large",
      ]),
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const body = await readBody(c, StateBody);
      const lease = requiredLease(body.lease, c.req.valid("query").lease);
      const bytes = new TextEncoder().encode(body.value).length;
      if (bytes > MAX_STATE_BYTES) {
        throw new Problem("payload-too-large", `value must be at most ${MAX_STATE_BYTES} UTF-8 bytes, got ${bytes}`);
      }
      const state = await lines.writeState({ kind: k.kind, name }, lease, body.value);
      c.set("token", state.token);
      return c.json(state, 200);
    });
  });
}

/** `GET /locks/{name}/state`: the guarded state and the token of the grant that wrote it. */
export function readState(k: KindRoutes): Route {
  const doc = createRoute({
    method: "get",
    path: `${k.base}/{name}/state`,
    operationId: `read${k.capitalized}State`,
    tags: [k.plural],
    summary: k.kind === "semaphore" ? "Read a semaphore's guarded state" : "Read a lock's guarded state",
    description: ABOUT_STATE,
    request: { params: k.nameParam },
    responses: {
      200: { description: "The state", content: { "application/json": { schema: StateAnswer } } },
      404: problem(`state-not-found: no holder of the ${k.noun} has written a state`, ["state-not-found"]),
      ...commonProblems,
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const state = await lines.readState({ kind: k.kind, name });
      return c.json(state, 200);
    });
  });
}
