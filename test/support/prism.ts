import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { stripVTControlCharacters } from "node:util";
import { expect } from "vitest";
import { until } from "./http.js";

const PRISM = fileURLToPath(new URL("../../node_modules/@stoplight/prism-cli/dist/index.js", import.meta.url));

export interface Prism {
  url: string;
  /** Everything Prism printed (its request log and the violations it found). */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Stoplight Prism as a validation proxy: `prism proxy SPEC UPSTREAM --errors` on a free
 * loopback port. What Prism 5.14 checks there (read in its source, tried by breaking
 * openapi.yaml on purpose):
 * - a request: its path, query and header parameters, its Content-Type and body, and that
 *   credentials are present where `security` asks for them (not whether they are valid).
 *   With --errors a request that fails is answered by Prism itself (422, or 401 without
 *   credentials) and never forwarded; with `validateRequest` off it is forwarded (for the
 *   error cases' deliberately bad requests), the security check still made.
 * - an answer: that its status is declared (an undeclared 2xx is an error; an undeclared
 *   4xx or 5xx only a warning, reported in the answer's `sl-violations` header), that its
 *   Content-Type is one the response declares (when it declares content), its body
 *   against the schema (formats such as date-time included), and the declared headers
 *   against theirs, `required` included. With --errors an error makes Prism answer 500.
 * - not: headers the response does not declare, nor a body where it declares none
 *   (expectDeclared checks both); and it reads an answer to its end before checking it,
 *   so an event stream cannot pass through.
 */
export async function startPrism(spec: string, upstream: string, o: { validateRequest: boolean }): Promise<Prism> {
  const args = [PRISM, "proxy", spec, upstream, "--errors", "--cors", "false", "--port", "0", "--host", "127.0.0.1"];
  if (!o.validateRequest) args.push("--validate-request", "false");
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const append = (d: Buffer) => {
    // Prism colours its log even into a pipe.
    log += stripVTControlCharacters(d.toString());
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  let exited = false;
  const exit = new Promise<void>((r) => child.once("exit", () => r()));
  void exit.then(() => {
    exited = true;
  });
  let url: string | undefined;
  await until(
    () => {
      if (exited) throw new Error(`prism exited before it listened:\n${log}`);
      url = /Prism is listening on (http:\/\/[\d.]+:\d+)/.exec(log)?.[1];
      return url !== undefined;
    },
    () => `prism to listen; its output:\n${log}`,
    30_000,
  );
  return {
    url: url as string,
    output: () => log,
    stop: async () => {
      if (exited) return;
      child.kill("SIGTERM");
      await exit;
    },
  };
}

/** The operationIds of the routes on locks and semaphores, each once per kind. */
export const LINE_OPERATIONS = ["Lock", "Semaphore"].flatMap((kind) => [
  `acquire${kind}`,
  `renew${kind}`,
  `release${kind}`,
  `release${kind}ByPost`,
  `inspect${kind}`,
  `list${kind}s`,
  `check${kind}Fence`,
  `write${kind}State`,
  `read${kind}State`,
]);

/** An OpenAPI document as parsed from YAML: only the parts the checks below read. */
export interface OpenApi {
  paths: Record<string, Record<string, Operation>>;
  components: { headers?: Record<string, unknown> };
}

interface Operation {
  operationId: string;
  responses: Record<string, ResponseDoc>;
}

interface ResponseDoc {
  headers?: Record<string, unknown>;
  content?: Record<string, unknown>;
}

/** Headers of the message itself (its framing, its date), which no API document declares. */
const MESSAGE_HEADERS = new Set([
  "content-type",
  "content-length",
  "date",
  "connection",
  "keep-alive",
  "transfer-encoding",
]);

/** The operation of `doc` that answers `method` on `path` (a path with no query). */
export function operationOf(doc: OpenApi, method: string, path: string): Operation {
  const m = method.toLowerCase();
  for (const [template, item] of Object.entries(doc.paths)) {
    const pattern = new RegExp(`^${template.replaceAll(".", "\\.").replace(/\{[^}]+\}/g, "[^/]+")}$`);
    const op = item[m];
    if (op && pattern.test(path)) return op;
  }
  throw new Error(`openapi.yaml has no operation for ${method} ${path}`);
}

/**
 * The checks Prism does not make on an answer, against `doc`: its status is declared,
 * every header it carries is declared (or is one of the message's own), and an answer
 * whose response declares no content has no body and no Content-Type.
 */
export function expectDeclared(
  doc: OpenApi,
  method: string,
  path: string,
  r: { status: number; headers: Headers; text: string },
): string {
  const op = operationOf(doc, method, path);
  const what = `${method} ${path} → ${r.status} (${op.operationId})`;
  const response = op.responses[String(r.status)];
  expect(response, `${what}: status not declared`).toBeDefined();
  const declared = new Set(Object.keys(response?.headers ?? {}).map((h) => h.toLowerCase()));
  const undeclared = [...r.headers.keys()].filter((h) => !declared.has(h) && !MESSAGE_HEADERS.has(h));
  expect(undeclared, `${what}: headers openapi.yaml does not declare`).toEqual([]);
  if (!response?.content) {
    expect(r.headers.get("content-type"), `${what}: a Content-Type where no content is declared`).toBeNull();
    expect(r.text, `${what}: a body where no content is declared`).toBe("");
  }
  return op.operationId;
}
