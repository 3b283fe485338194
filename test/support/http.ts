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

/** Polls `check` every 20 ms until it holds; fails after `ms` (an event with a deadline, not a fixed sleep). */
export async function until(check: () => boolean | Promise<boolean>, ms = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${ms} ms`);
    await sleep(20);
  }
}
