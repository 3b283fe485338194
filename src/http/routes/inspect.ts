import { createRoute } from "@hono/zod-openapi";
import { Problem } from "../../problems.js";
import { documented, forHandling, type Route } from "../route.js";
import { commonProblems, InspectQuery, NotHeldProblem, problem } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";

/** The header that repeats an inspect answer's `index`. */
export const INDEX_HEADER = "Leasehold-Index";

const indexHeader = {
  [INDEX_HEADER]: {
    description: "The answer's `index`: the etcd revision it was read at",
    required: true,
    schema: { type: "integer", minimum: 0 },
  },
} as const;

/**
 * `GET /locks/{name}` and `GET /semaphores/{name}`: who holds it, and how many are in
 * line; with `?index=`, a blocking read.
 */
export function inspect(k: KindRoutes): Route {
  const doc = createRoute({
    method: "get",
    path: `${k.base}/{name}`,
    operationId: `inspect${k.capitalized}`,
    tags: [k.plural],
    summary: k.kind === "semaphore" ? "Inspect a semaphore" : "Inspect a lock",
    description:
      (k.kind === "semaphore"
        ? "The semaphore's limit, its holders (fencing tokens, remaining TTLs, owners, published values) and how " +
          "many are in line. Never lease handles or tickets. "
        : "Who holds the lock, its fencing token, remaining TTL and published value, and how many are in line. " +
          "Never the lease handle or tickets. ") +
      "Every answer (the 404 too) carries `index`, also in the Leasehold-Index header: the etcd revision it was " +
      "read at. With `index=R`, a blocking read: answers as soon as one of the " +
      `${k.noun}'s keys was written or deleted after revision R (a new holder, a value, a release, a caller ` +
      "joining or leaving its line), or after `wait` seconds unchanged, with the state as it is then and its new " +
      "index. Loop with the last index: no change is missed, none answered twice.",
    request: { params: k.nameParam, query: InspectQuery },
    responses: {
      200: {
        description: "Held",
        headers: indexHeader,
        content: { "application/json": { schema: k.infoSchema } },
      },
      404: problem(`lock-not-found: nobody holds the ${k.noun} (with the index it was read at)`, ["lock-not-found"], {
        schema: NotHeldProblem,
        headers: indexHeader,
      }),
      429: problem("too-many-waiters: this instance's cap on blocking reads is reached", ["too-many-waiters"]),
      ...commonProblems,
    },
  });

  return documented(doc, "keyed", (app, { config, lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const query = c.req.valid("query");
      if (query.wait !== undefined && query.index === undefined) {
        throw new Problem("invalid-request", "wait goes with index (a blocking read waits for a change after index)");
      }
      const wait = query.wait === undefined ? config.LEASEHOLD_MAX_WAIT : Number(query.wait);
      if (wait > config.LEASEHOLD_MAX_WAIT) {
        throw new Problem("invalid-request", `wait must be at most ${config.LEASEHOLD_MAX_WAIT} seconds, got ${wait}`);
      }
      const { info, index } = await lines.read(
        { kind: k.kind, name },
        query.index === undefined ? {} : { after: Number(query.index), wait, signal: c.req.raw.signal },
      );
      const oldest = info?.holders[0];
      if (!info || !oldest) {
        throw new Problem(
          "lock-not-found",
          `${k.noun} ${name} is not held`,
          { index },
          { [INDEX_HEADER]: String(index) },
        );
      }
      c.set("token", oldest.token);
      c.header(INDEX_HEADER, String(index));
      return c.json({ ...k.view(info), index }, 200);
    });
  });
}
