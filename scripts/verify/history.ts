/**
 * The history of a scenario run: every request a client made, as an `invoke` when it was
 * sent and an `ok`, `fail` or `info` when its outcome was known, written as JSON lines
 * (one event a line, in the order they happened) that another tool can read. The format
 * is described in docs/verification.md ("Histories"); model.ts checks it.
 *
 * - `ok`: a 2xx answer;
 * - `fail`: an answer that says the request had no effect (a 4xx);
 * - `info`: the outcome is unknown: no answer (a connection that failed or was reset, no
 *   answer within the hang limit, a request its client hung up on) or a 5xx (a 503 may
 *   come after etcd applied the write). It may or may not have taken effect, at any
 *   moment after it was sent.
 *
 * Secrets never reach the file: lease handles, tickets and Idempotency-Keys appear as
 * the first 16 hex digits of their SHA-256, enough to tell which grant or ticket an
 * operation is about, useless to act on it.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export type OpName =
  | "acquire"
  | "renew"
  | "release"
  | "inspect"
  | "list"
  | "force"
  | "redeem"
  | "leave"
  | "read-state"
  | "write-state";
export type OpType = "invoke" | "ok" | "fail" | "info";

/** What an invoke says about the request (whatever applies to its operation). */
export interface InvokeValue {
  /** acquire, redeem: seconds asked for. */
  ttl?: number;
  wait?: number;
  /** Semaphores: the limit sent. */
  limit?: number;
  /** acquire: take a ticket when not granted at once. */
  queue?: boolean;
  owner?: string;
  /** acquire: hash of the Idempotency-Key (retries of one key share it). */
  key?: string;
  /** renew, release: hash of the lease handle sent (which grant). */
  grant?: string;
  /** redeem, leave: hash of the ticket sent. */
  ticket?: string;
  /** force: the fencing token of the holder to release, when given. */
  token?: number;
}

/** What a completion says about the outcome (whatever the answer carried). */
export interface OutcomeValue {
  /** A grant (acquire, redeem: 200 or 201; renew: 200): its fencing token and handle hash. */
  token?: number;
  grant?: string;
  /** The TTL the grant was given, seconds. */
  ttl?: number;
  limit?: number;
  /** A 202: the ticket's hash and its position. */
  ticket?: string;
  position?: number;
  /** inspect (200): the holders' tokens (and owners), oldest first, and how many wait. */
  holders?: { token: number; owner?: string }[];
  waiters?: number;
  /** A problem's `code` (4xx, 5xx). */
  code?: string;
}

export interface OpEvent {
  /** Line number in the file (0, 1, ...). */
  index: number;
  type: OpType;
  /** The operation: an invoke and its completion share it. */
  op: number;
  /** The client that made it ("nemesis": the fault injector). */
  process: string;
  f: OpName | "fault";
  /** The line: a lock or a semaphore of `name` (absent for listings and faults). */
  kind?: "lock" | "semaphore";
  name?: string;
  /** Which API key sent it (scenarios with auth on). */
  caller?: string;
  /** Which service instance it went to. */
  instance?: number;
  /** The checker's event counter: one counter for the whole run, so "before" is exact. */
  seq: number;
  /** The checker's monotonic clock (ms; `performance.now()` of its one process). */
  time: number;
  /** The client's wall clock, ms since the epoch. */
  wall: number;
  /** Completions: the HTTP status (0: the connection failed; -1: no answer in time; absent: hung up on). */
  status?: number;
  /** Completions of requests without an answer: why. */
  error?: "connection failed" | "timeout" | "hung up";
  /** fault events: what was injected. */
  fault?: string;
  value?: InvokeValue & OutcomeValue;
}

/** Hash of a secret, as histories carry it. */
export const secretHash = (secret: string): string => createHash("sha256").update(secret).digest("hex").slice(0, 16);

/** The line a path names, and its query. */
export function parsePath(path: string): { kind?: "lock" | "semaphore"; name?: string; query: URLSearchParams } {
  const url = new URL(path, "http://x");
  const m = /^\/(locks|semaphores)\/([^/]+)/.exec(url.pathname);
  if (!m) return { query: url.searchParams };
  return {
    kind: m[1] === "semaphores" ? "semaphore" : "lock",
    name: decodeURIComponent(m[2] as string),
    query: url.searchParams,
  };
}

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** Drops absent fields, so each line carries only what applies. */
function compact<T extends object>(o: T): T | undefined {
  const out = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
  return Object.keys(out).length ? out : undefined;
}

/** The request as a history invoke describes it. */
export function describeRequest(
  op: OpName,
  path: string,
  body: Record<string, unknown> | undefined,
  headers: Record<string, string> | undefined,
): Pick<OpEvent, "kind" | "name"> & { value?: InvokeValue } {
  const { kind, name, query } = parsePath(path);
  const b = body ?? {};
  const lease = str(b.lease) ?? query.get("lease") ?? undefined;
  const ticket = str(b.ticket) ?? query.get("ticket") ?? undefined;
  const idem = headers?.["idempotency-key"];
  const token = query.get("token");
  const value = compact<InvokeValue>({
    ttl: num(b.ttl),
    wait: num(b.wait),
    limit: num(b.limit),
    queue: b.queue === true ? true : undefined,
    owner: str(b.owner),
    key: idem ? secretHash(idem) : undefined,
    grant: lease ? secretHash(lease) : undefined,
    ticket: ticket ? secretHash(ticket) : undefined,
    token: op === "force" && token ? Number(token) : undefined,
  });
  return { ...(kind ? { kind } : {}), ...(name ? { name } : {}), ...(value ? { value } : {}) };
}

/** What an answer's body tells about the outcome. */
export function describeAnswer(op: OpName, status: number, body: unknown): OutcomeValue | undefined {
  // biome-ignore lint/suspicious/noExplicitAny: JSON from the service
  const b = (typeof body === "object" && body !== null ? body : {}) as any;
  if (status >= 400) return compact<OutcomeValue>({ code: str(b.code) });
  if (status === 202)
    return compact<OutcomeValue>({ ticket: str(b.ticket) && secretHash(b.ticket), position: num(b.position) });
  if (op === "inspect" && status === 200) {
    const holders = Array.isArray(b.holders)
      ? // biome-ignore lint/suspicious/noExplicitAny: JSON from the service
        b.holders.map((h: any) => compact({ token: num(h?.token) as number, owner: str(h?.owner) }))
      : // A lock's answer: its holder's fields at the top level.
        num(b.token) !== undefined
        ? [compact({ token: b.token as number, owner: str(b.owner) })]
        : [];
    return compact<OutcomeValue>({ holders, waiters: num(b.waiters) });
  }
  if (status >= 200 && status < 300 && (op === "acquire" || op === "redeem" || op === "renew")) {
    return compact<OutcomeValue>({
      token: num(b.token),
      grant: str(b.lease) && secretHash(b.lease),
      ttl: num(b.ttl),
      limit: num(b.limit),
    });
  }
  return undefined;
}

/** A 2xx is `ok`; a 4xx `fail` (no effect); no answer, or a 5xx, `info` (unknown outcome). */
export function outcomeType(status: number | undefined): Exclude<OpType, "invoke"> {
  if (status === undefined || status <= 0 || status >= 500) return "info";
  return status < 300 ? "ok" : "fail";
}

/** An invoke not yet completed: what its completion needs. */
export interface Pending {
  op: number;
  process: string;
  f: OpName;
  line: Pick<OpEvent, "kind" | "name" | "caller" | "instance">;
}

/** Records a run's operations in the order they happen (see the module's comment). */
export class History {
  readonly events: OpEvent[] = [];
  private ops = 0;

  constructor(private readonly clock: { seq(): number; now(): number }) {}

  private push(e: Omit<OpEvent, "index" | "wall" | "time"> & { time?: number }) {
    this.events.push({
      index: this.events.length,
      ...e,
      time: Math.round((e.time ?? this.clock.now()) * 1000) / 1000,
      wall: Date.now(),
    } as OpEvent);
  }

  /** A request is being sent (at `seq`, `time`: the checker's counter and clock). */
  invoke(
    process: string,
    o: {
      f: OpName;
      path: string;
      body?: Record<string, unknown> | undefined;
      headers?: Record<string, string> | undefined;
      caller?: string | undefined;
      instance: number;
      seq: number;
      time: number;
    },
  ): Pending {
    const op = this.ops++;
    const d = describeRequest(o.f, o.path, o.body, o.headers);
    const line = {
      ...(d.kind ? { kind: d.kind, name: d.name } : {}),
      ...(o.caller ? { caller: o.caller } : {}),
      instance: o.instance,
    };
    this.push({
      type: "invoke",
      op,
      process,
      f: o.f,
      ...line,
      seq: o.seq,
      time: o.time,
      ...(d.value ? { value: d.value } : {}),
    });
    return { op, process, f: o.f, line };
  }

  /** Its outcome: an HTTP status (0: the connection failed, -1: no answer in time), or hung up on by its client. */
  complete(p: Pending, o: { status: number | "hung up"; body?: unknown; seq: number; time: number }) {
    const status = o.status === "hung up" ? undefined : o.status;
    const error =
      o.status === "hung up"
        ? "hung up"
        : o.status === 0
          ? "connection failed"
          : o.status === -1
            ? "timeout"
            : undefined;
    const value = status !== undefined && status > 0 ? describeAnswer(p.f, status, o.body) : undefined;
    this.push({
      type: outcomeType(status),
      op: p.op,
      process: p.process,
      f: p.f,
      ...p.line,
      seq: o.seq,
      time: o.time,
      ...(status !== undefined ? { status } : {}),
      ...(error ? { error } : {}),
      ...(value ? { value } : {}),
    });
  }

  /** A fault injected (`invoke`); `healed` records its end (`info`: its effect was whatever it was). */
  fault(what: string): { healed(): void } {
    const op = this.ops++;
    const at = (type: OpType) =>
      this.push({ type, op, process: "nemesis", f: "fault", fault: what, seq: this.clock.seq() });
    at("invoke");
    return { healed: () => at("info") };
  }

  /** Writes the history as JSON lines; returns the path. */
  write(path: string): string {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, this.events.map((e) => JSON.stringify(e)).join("\n") + (this.events.length ? "\n" : ""));
    return path;
  }
}

/** Reads a history file back (what another tool would do). */
export function readHistory(path: string): OpEvent[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as OpEvent);
}

/** Where a scenario run's history goes: `$VERIFY_HISTORY`, else `test-output/verify/histories/`. */
export function historyPath(scenario: string, transport: string, suffix = ""): string {
  const dir = process.env.VERIFY_HISTORY ?? new URL("../../test-output/verify/histories", import.meta.url).pathname;
  return `${dir}/${scenario}-${transport}${suffix}.jsonl`;
}
