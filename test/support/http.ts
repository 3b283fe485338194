import { parseHandle } from "../../src/lock/names.js";

/** Small fetch helpers for tests: every response's body is read once and kept. */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests inspect arbitrary JSON
  json: any;
}

export async function call(
  base: string,
  method: string,
  path: string,
  init: {
    json?: unknown;
    form?: Record<string, string>;
    body?: string;
    /** Raw bytes; with `chunked`, sent without a Content-Length (Transfer-Encoding: chunked). */
    bytes?: Uint8Array[];
    chunked?: boolean;
    headers?: Record<string, string>;
  } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...init.headers };
  let body: string | Uint8Array | ReadableStream<Uint8Array> | undefined = init.body;
  if (init.bytes !== undefined) {
    const parts = init.bytes;
    body = init.chunked
      ? new ReadableStream<Uint8Array>({
          start(controller) {
            for (const p of parts) controller.enqueue(p);
            controller.close();
          },
        })
      : Buffer.concat(parts);
  }
  if (init.json !== undefined) {
    headers["content-type"] ??= "application/json";
    body = JSON.stringify(init.json);
  } else if (init.form !== undefined) {
    headers["content-type"] ??= "application/x-www-form-urlencoded";
    body = new URLSearchParams(init.form).toString();
  }
  const res = await fetch(base + path, {
    method,
    headers,
    ...(body !== undefined ? { body, duplex: "half" } : {}),
  } as RequestInit);
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let counter = 0;
/** A lock name unique within the test run. */
export function uniqueName(label = "lock"): string {
  counter++;
  return `${label}:${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The etcd lease ID inside a grant's handle, for tests that act on etcd directly. */
export function leaseIdOf(handle: string): bigint {
  const parsed = parseHandle(handle);
  if (!parsed) throw new Error(`not a lease handle: ${handle}`);
  return parsed.lease;
}

/**
 * Waits for an event: polls `check` every 20 ms until it holds. Fails after `ms`, saying
 * what it waited for (`what` may be a function, for details known only then, such as a
 * process's output); a check that throws fails at once.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string | (() => string),
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "string" ? what : what()}`);
    }
    await sleep(20);
  }
}

/**
 * Calls `fn` until it resolves and returns its result: for a call that fails while
 * something recovers (etcd restarting). After `ms` it rethrows the last failure.
 */
export async function eventually<T>(fn: () => Promise<T>, what: string, ms = 10_000): Promise<T> {
  let last: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  const attempt = async () => {
    last = await fn().then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return last.ok;
  };
  await until(attempt, what, ms).catch((timeout: unknown) => {
    throw last && !last.ok ? last.error : timeout;
  });
  if (!last?.ok) throw new Error(`${what}: no result`);
  return last.value;
}

/**
 * For asserting that something does NOT happen: an event that never comes cannot be
 * awaited, so this waits the whole `ms`, then returns `check()` for the caller to assert
 * on. Whatever it rules out must be awaited by event where a test expects it to happen.
 */
export async function stillAfter<T>(ms: number, check: () => T | Promise<T>): Promise<T> {
  await sleep(ms);
  return check();
}
