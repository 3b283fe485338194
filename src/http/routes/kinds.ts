import type { z } from "@hono/zod-openapi";
import type { Grant, HolderView, LineInfo, LineKind } from "../../lock/index.js";
import {
  AcquireBody,
  Grant as GrantSchema,
  LockInfo,
  LockList,
  NameParam,
  SemaphoreAcquireBody,
  SemaphoreGrant,
  SemaphoreInfo,
  SemaphoreList,
  SemaphoreNameParam,
} from "../schemas.js";

/**
 * What differs between the lock routes and the semaphore routes; each route file builds
 * one route per kind from it, so that both share their handler. A lock is a line of
 * limit 1 whose one holder is shown flat; a semaphore shows its limit and its holders.
 */
export interface KindRoutes {
  kind: LineKind;
  /** As messages name a line: "lock cron:job9". */
  noun: "lock" | "semaphore";
  plural: "locks" | "semaphores";
  /** As operationIds name it: `acquireLock`, `listSemaphores`. */
  capitalized: "Lock" | "Semaphore";
  capitalizedPlural: "Locks" | "Semaphores";
  /** The collection's path: `/locks`, `/semaphores`. */
  base: string;
  nameParam: typeof NameParam;
  acquireBody: typeof AcquireBody | typeof SemaphoreAcquireBody;
  grantSchema: z.ZodType;
  infoSchema: z.ZodType;
  listSchema: z.ZodType;
  /** A grant as the API answers it. */
  grant(g: Grant): Record<string, unknown>;
  /** A line as `GET` and listings show it: never a lease handle. */
  view(info: LineInfo): Record<string, unknown>;
}

export const LOCKS: KindRoutes = {
  kind: "lock",
  noun: "lock",
  plural: "locks",
  capitalized: "Lock",
  capitalizedPlural: "Locks",
  base: "/locks",
  nameParam: NameParam,
  acquireBody: AcquireBody,
  grantSchema: GrantSchema,
  infoSchema: LockInfo,
  listSchema: LockList,
  // A lock's limit is always 1: not part of its answers.
  grant: ({ limit: _limit, ...grant }) => grant,
  view: ({ name, holders, waiters }) => ({
    name,
    ...(holders[0] ? holderView(holders[0]) : {}),
    ...(waiters > 0 ? { waiters } : {}),
  }),
};

export const SEMAPHORES: KindRoutes = {
  kind: "semaphore",
  noun: "semaphore",
  plural: "semaphores",
  capitalized: "Semaphore",
  capitalizedPlural: "Semaphores",
  base: "/semaphores",
  nameParam: SemaphoreNameParam,
  acquireBody: SemaphoreAcquireBody,
  grantSchema: SemaphoreGrant,
  infoSchema: SemaphoreInfo,
  listSchema: SemaphoreList,
  grant: (grant) => ({ ...grant }),
  view: ({ name, limit, holders, waiters }) => ({
    name,
    limit,
    holders: holders.map(holderView),
    waiters,
  }),
};

/** The fields of a holder anyone may see, picked one by one: nothing else the engine knows leaks. */
function holderView({ token, ttl, expiresAt, owner, value }: HolderView): Record<string, unknown> {
  return {
    token,
    ttl,
    expiresAt,
    ...(owner !== undefined ? { owner } : {}),
    ...(value !== undefined ? { value } : {}),
  };
}
