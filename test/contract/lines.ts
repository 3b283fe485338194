import { expect } from "vitest";
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

/** The keys the service holds in etcd for `name` (unique to a test): a refused request leaves none. */
export async function keysOf(svc: TestService, name: string): Promise<string[]> {
  const all = await svc.direct.range(svc.prefix, `${svc.prefix.slice(0, -1)}0`, 0);
  return all.kvs.map((kv) => kv.key).filter((key) => key.includes(name));
}

/** The two kinds of line, as the suites that cover both take them: where, and what an acquire adds. */
export const KINDS = [
  { kind: "lock", base: "/locks", fields: {} },
  { kind: "semaphore", base: "/semaphores", fields: { limit: 1 } },
] as const;
