import type { Context } from "hono";
import type { z } from "zod";
import { CallerGone } from "../lock/index.js";
import { Problem } from "../problems.js";
import { describe, fieldNames, invalidRequest, quote } from "./errors.js";

export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * Reads and validates a request body: JSON objects or form fields;
 * a form-typed body starting with `{` is JSON (that is what `curl -d '{…}'` sends);
 * no body means defaults; any other content type is 415; over 1 MiB is 413.
 * Form values are strings, so `numeric` names the fields to read as numbers, and
 * `flags` those to read as booleans ("true" or "false").
 */
export async function readBody<S extends z.ZodType>(
  c: Context,
  schema: S,
  numeric: readonly string[] = [],
  flags: readonly string[] = [],
): Promise<z.output<S>> {
  const bytes = await readLimitedBytes(c.req.raw);
  const [type = "", ...params] = (c.req.header("content-type") ?? "").split(";");
  const contentType = type.trim().toLowerCase();
  if (bytes.length > 0) checkEncoding(c.req.header("content-encoding"), params);
  const text = decodeUtf8(bytes);
  let input: unknown = {};
  if (text.trim() !== "") {
    if (contentType === "application/json" || contentType.endsWith("+json")) {
      input = parseJsonObject(text);
    } else if (contentType === "application/x-www-form-urlencoded") {
      input = text.trimStart().startsWith("{") ? parseJsonObject(text) : parseForm(text, numeric, flags);
    } else {
      throw new Problem(
        "unsupported-media-type",
        contentType === ""
          ? "a request body needs Content-Type: application/json or application/x-www-form-urlencoded"
          : `Content-Type ${contentType} is not supported; send application/json or application/x-www-form-urlencoded`,
      );
    }
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw invalidRequest(parsed.error, "body", input, { known: fieldNames(schema) });
  return parsed.data;
}

/** A body is read as UTF-8 text as sent: a compressed body or another charset is a 415. */
function checkEncoding(contentEncoding: string | undefined, contentTypeParams: string[]): void {
  const encoding = contentEncoding?.trim().toLowerCase();
  if (encoding && encoding !== "identity") {
    throw new Problem(
      "unsupported-media-type",
      `Content-Encoding ${encoding} is not supported; send the body uncompressed`,
    );
  }
  const charset = contentTypeParams
    .map((p) => /^\s*charset\s*=\s*"?([^";\s]+)"?\s*$/i.exec(p)?.[1]?.toLowerCase())
    .find((v) => v !== undefined);
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8" && charset !== "us-ascii") {
    throw new Problem("unsupported-media-type", `charset ${charset} is not supported; send the body as UTF-8`);
  }
}

async function readLimitedBytes(req: Request): Promise<Uint8Array> {
  const length = req.headers.get("content-length");
  // No length and no chunked encoding means no body: skip creating the body stream,
  // which is a measurable cost per request on Node (see BENCHMARKS.md).
  if ((length === null || length === "0") && !req.headers.has("transfer-encoding")) return EMPTY;
  if (Number(length ?? "0") > MAX_BODY_BYTES) throw tooLarge();
  // With a length the server has checked, read the body whole: @hono/node-server then
  // reads it straight off the socket, with no Web Request or body streams (which cost a
  // waiting acquire several KB for as long as it waits). Without one (chunked), count
  // while streaming so an endless body is cut off at the limit.
  let bytes: Uint8Array;
  try {
    bytes = length !== null ? new Uint8Array(await req.arrayBuffer()) : await readChunked(req);
  } catch (err) {
    if (err instanceof Problem) throw err;
    // The body stopped arriving: the caller hung up or its connection broke. Nobody is
    // left to answer, and nothing went wrong here (a quiet 499, not a 500 with a stack).
    throw new CallerGone("the caller went away while sending the body", { cause: err });
  }
  return bytes;
}

const EMPTY = new Uint8Array();

function decodeUtf8(bytes: Uint8Array): string {
  if (bytes.length === 0) return "";
  try {
    return utf8.decode(bytes);
  } catch {
    throw new Problem("invalid-request", "the request body is not valid UTF-8");
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

async function readChunked(req: Request): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return all;
}

function tooLarge(): Problem {
  // The rest of the body stays unread, so the connection cannot carry another request.
  return new Problem(
    "payload-too-large",
    `the request body exceeds ${MAX_BODY_BYTES} bytes`,
    {},
    { connection: "close" },
  );
}

function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Problem("invalid-request", `malformed JSON body: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Problem("invalid-request", `the JSON body must be an object such as {"ttl": 30}, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

function parseForm(text: string, numeric: readonly string[], flags: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(text)) {
    if (key in out) throw new Problem("invalid-request", `form field ${quote(key)} is given more than once`);
    // A numeric-looking string becomes a number, "true"/"false" a boolean; anything else
    // stays a string and fails the schema's type check with a clear message.
    if (numeric.includes(key) && /^\s*-?\d+(\.\d+)?\s*$/.test(value)) out[key] = Number(value);
    else if (flags.includes(key) && (value === "true" || value === "false")) out[key] = value === "true";
    else out[key] = value;
  }
  return out;
}
