import { expect } from "vitest";
import type { KeyValue } from "../../src/etcd/types.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import type { LineKind } from "../../src/lock/types.js";
import { call, type Reply, until } from "../support/http.js";
import type { TestService } from "../support/service.js";

/** Helpers the line suites share: semaphores, tickets and fair queues (locks are lines of limit 1). */

/** A problem+json answer of `status` and `code`, with no stack trace in it. */
export function expectProblem(r: Reply, status: number, code: string): void {
  expect(r.status, r.text).toBe(status);
  expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(r.json).toMatchObject({ type: `/problems/${code}`, title: expect.any(String), status, code });
  expect(typeof r.json.detail).toBe("string");
  expect(r.text).not.toMatch(/\n\s+at /);
}

/** How many are in line for `path` (`/locks/NAME` or `/semaphores/NAME`) as GET shows it; 0 when nobody holds it. */
export async function waitersOf(svc: TestService, path: string): Promise<number> {
  const r = await call(svc.url, "GET", path);
  if (r.status === 404) return 0;
  expect(r.status, r.text).toBe(200);
  return r.json.waiters ?? 0;
}

/** Resolves once GET shows `n` in line for `path`: those joins are recorded in etcd. */
export function inLine(svc: TestService, path: string, n: number): Promise<void> {
  return until(async () => (await waitersOf(svc, path)) === n, `${n} in line for ${path}`);
}

/** The keys of one line in etcd (its holders, waiters and tickets), where the engine keeps them. */
export async function lineKeys(svc: TestService, kind: LineKind, name: string): Promise<KeyValue[]> {
  const { start, end } = new LineKeys(svc.prefix).range({ kind, name });
  return (await svc.direct.range(start, end, 0)).kvs;
}

/** The two kinds of line, as the suites that cover both take them: where, and what an acquire adds. */
export const KINDS = [
  { kind: "lock", base: "/locks", fields: {} },
  { kind: "semaphore", base: "/semaphores", fields: { limit: 1 } },
] as const;
