import { createRoute } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { LineRef } from "../../lock/index.js";
import { Problem } from "../../problems.js";
import { readBody } from "../body.js";
import type { AppEnv } from "../deps.js";
import { documented, forHandling, type Route } from "../route.js";
import { bodyProblems, commonProblems, optionalBody, problem, ReleaseBody, ReleaseQuery } from "../schemas.js";
import type { KindRoutes } from "./kinds.js";
import { handleFrom } from "./lease-input.js";

/**
 * How a release is asked for: `DELETE /locks/{name}`, or `POST /locks/{name}/release` for
 * HTTP clients that handle a DELETE with a body badly (Node's fetch closes the connection
 * after one, with no way to opt out; HTTP gives such a body no meaning, so a proxy may drop
 * it). Both take the same inputs and run the same handler.
 */
export type ReleaseMethod = "delete" | "post";

/**
 * `DELETE /locks/{name}` and `POST /locks/{name}/release` (and the semaphores' alike):
 * release a grant (its lease), leave the line (a ticket), or, for an admin key,
 * force-release a holder.
 */
export function release(k: KindRoutes, method: ReleaseMethod): Route {
  const semaphore = k.kind === "semaphore";
  const post = method === "post";
  const doc = createRoute({
    method,
    path: post ? `${k.base}/{name}/release` : `${k.base}/{name}`,
    operationId: `release${k.capitalized}${post ? "ByPost" : ""}`,
    tags: [k.plural],
    summary: semaphore ? "Release a semaphore permit, or leave its line" : "Release a lock, or leave its line",
    description:
      (post
        ? `\`DELETE ${k.base}/{name}\` as a POST, with the same inputs and answers, for HTTP clients that handle a ` +
          "DELETE with a body badly (Node's fetch closes the connection after one; a proxy may drop its body). "
        : "") +
      "With `lease`: revokes the holder's lease, which deletes its key in the same etcd step. With `ticket`: " +
      "gives up that place in line. Admin keys may pass `force=true` instead " +
      (semaphore
        ? "with `token`, the permit to end (GET lists the holders' tokens)"
        : "(and optionally `token`: only while that grant holds it)") +
      "; with auth off nobody may (403).",
    request: {
      params: k.nameParam,
      query: ReleaseQuery,
      body: optionalBody(ReleaseBody),
    },
    responses: {
      204: { description: "Released, or left the line" },
      404: problem(
        `lock-not-found: force-release of a ${k.noun} nobody holds${semaphore ? ", or no holder with that token" : ""}`,
        ["lock-not-found"],
      ),
      410: problem(
        `lock-lost: this lease no longer holds the ${k.noun}, or this ticket is no longer in line; nothing changed`,
        ["lock-lost"],
      ),
      ...commonProblems,
      403: problem("forbidden: the key may not use this name, or force=true without an admin key", ["forbidden"]),
      ...bodyProblems,
    },
  });

  return documented(doc, "keyed", (app, { lines }) => {
    app.openapi(forHandling(doc), async (c) => {
      const { name } = c.req.valid("param");
      const line: LineRef = { kind: k.kind, name };
      const query = c.req.valid("query");
      // The query's checks (403 for force without an admin key) come before the body's.
      const force = query.force === "true";
      const token = force ? forceTarget(c, k, query.token) : undefined;
      if (!force && query.token !== undefined) {
        throw new Problem("invalid-request", "token goes with force=true (the holder an admin key force-releases)");
      }
      const body = await readBody(c, ReleaseBody);
      const lease = handleFrom("lease", body.lease, query.lease);
      const ticket = handleFrom("ticket", body.ticket, query.ticket);
      if (force) {
        if (lease !== undefined || ticket !== undefined) {
          throw new Problem(
            "invalid-request",
            "force=true releases a holder whoever it is: send no lease or ticket with it",
          );
        }
        if (!(await lines.forceRelease(line, token))) {
          const which = token === undefined ? "is not held" : `has no holder with token ${token}`;
          throw new Problem("lock-not-found", `${k.noun} ${name} ${which}`);
        }
      } else if (lease !== undefined && ticket !== undefined) {
        throw new Problem(
          "invalid-request",
          "send either lease (to release a grant) or ticket (to leave the line), not both",
        );
      } else if (ticket !== undefined) await lines.leave(line, ticket);
      else if (lease !== undefined) await lines.release(line, lease);
      else {
        throw new Problem(
          "invalid-request",
          'lease is required: send {"lease": "…"} or ?lease=… (or a ticket, to leave the line: ?ticket=…)',
        );
      }
      return c.body(null, 204);
    });
  });
}

/**
 * Who may force-release, and which holder: only an admin key (with auth off there is no
 * key, so nobody may: an open service must not let any caller end any grant); a
 * semaphore's permit is named by its token, since several holders share the name.
 */
function forceTarget(c: Context<AppEnv>, k: KindRoutes, token: string | undefined): number | undefined {
  const key = c.get("apiKey");
  if (!key) {
    throw new Problem(
      "forbidden",
      'force release needs an admin API key, and auth is off: configure LEASEHOLD_API_KEYS with a key that has "admin": true',
    );
  }
  if (!key.admin) throw new Problem("forbidden", "force release needs an admin API key");
  if (token === undefined && k.kind === "semaphore") {
    throw new Problem(
      "invalid-request",
      `force release of a semaphore needs ?token=N, the permit to end (GET ${k.base}/{name} shows the holders' tokens)`,
    );
  }
  return token === undefined ? undefined : Number(token);
}
