import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { type CallRecord, Fence, type ForceRecord, type GrantRecord } from "./check.js";
import type { ParticipantRecord } from "./check-lines.js";
import { History, type OpName } from "./history.js";

/** Where a line's routes are: `/locks` or `/semaphores`. */
export const basePath = (line: { kind?: string }) => (line.kind === "semaphore" ? "/semaphores" : "/locks");

/** One HTTP request as a client saw it. */
export interface RequestRecord {
  op: OpName;
  instance: number;
  sentAt: number;
  doneAt: number;
  /** HTTP status; 0 = the connection failed, -1 = no answer within the hang limit. */
  status: number;
  /** The `wait` the request asked for, in ms (0 for all but waiting acquires). */
  waitMs: number;
}

/** A fault the scenario injected: from `start` until it was healed at `end`. */
export interface FaultRecord {
  what: string;
  start: number;
  end?: number;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
export const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;
export const uniform = (min: number, max: number) => min + Math.random() * (max - min);

/** What one scenario run records: the clock, the fence and every request, grant and fault. */
export class Run {
  private counter = 0;
  readonly fence = new Fence();
  readonly grants: GrantRecord[] = [];
  readonly requests: RequestRecord[] = [];
  readonly faults: FaultRecord[] = [];
  readonly forces: ForceRecord[] = [];
  /** Places in lines the clients made (line workloads: waiting acquires and tickets). */
  readonly participants: ParticipantRecord[] = [];
  /** Problems that are not about the lock invariants (hangs, 5xx other than 503, leaks...). */
  readonly failures: string[] = [];
  /** Every request as invoke and outcome (history.ts), for the model check and the history file. */
  readonly history = new History(this);

  constructor(
    /** Base URLs of the service instances clients may use. */
    readonly instances: string[],
    /** A request with no answer this long past its `wait` counts as hung. */
    readonly hangMs: number,
  ) {}

  seq(): number {
    return ++this.counter;
  }

  now(): number {
    return performance.now();
  }

  fail(message: string) {
    if (this.failures.length < 50) this.failures.push(message);
    else if (this.failures.length === 50) this.failures.push("(more failures not shown)");
  }

  /** Records a fault that lasts while `during` runs: `during` heals it before it resolves. */
  async fault(what: string, during: () => Promise<void>): Promise<void> {
    const record: FaultRecord = { what, start: this.now() };
    this.faults.push(record);
    const recorded = this.history.fault(what);
    try {
      await during();
    } finally {
      record.end = this.now();
      recorded.healed();
    }
  }

  client(id: string, home = 0, auth?: ApiKey): Client {
    return new Client(this, id, home, auth);
  }
}

export interface Answer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: JSON from the service
  body: any;
  sentSeq: number;
  doneSeq: number;
}

/** A grant the client holds, as the service returned it, plus when it was asked for. */
export interface Held {
  record: GrantRecord;
  lease: string;
}

/** The API key a client sends, and the label the history records for it. */
export interface ApiKey {
  label: string;
  secret: string;
}

/**
 * An HTTP client of the lock service that fails over between instances: a connection
 * failure or a 503 moves it to the next instance. It records every request in the run
 * and writes to the fence the moment a grant arrives.
 */
export class Client {
  private instance: number;

  constructor(
    readonly run: Run,
    readonly id: string,
    home: number,
    readonly auth?: ApiKey,
  ) {
    this.instance = home % run.instances.length;
  }

  /** One request to the current instance; moves to the next instance on failure. */
  async send(
    op: RequestRecord["op"],
    method: string,
    path: string,
    body?: Record<string, unknown>,
    opts: { waitMs?: number; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Answer> {
    const run = this.run;
    const instance = this.instance;
    const waitMs = opts.waitMs ?? 0;
    const sentAt = run.now();
    const sentSeq = run.seq();
    const timeout = AbortSignal.timeout(waitMs + run.hangMs);
    const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
    const headers = opts.headers;
    const invoked = run.history.invoke(this.id, {
      f: op,
      path,
      body,
      headers,
      caller: this.auth?.label,
      instance,
      seq: sentSeq,
      time: sentAt,
    });
    let status: number;
    let parsed: unknown;
    try {
      const res = await fetch(`${run.instances[instance]}${path}`, {
        method,
        headers: {
          ...(body ? { "content-type": "application/json" } : {}),
          ...(this.auth ? { authorization: `Bearer ${this.auth.secret}` } : {}),
          ...opts.headers,
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal,
      });
      status = res.status;
      const text = await res.text();
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = text;
      }
    } catch (err) {
      if (opts.signal?.aborted) {
        run.history.complete(invoked, { status: "hung up", seq: run.seq(), time: run.now() });
        throw err;
      }
      status = timeout.aborted ? -1 : 0;
    }
    const doneSeq = run.seq();
    run.history.complete(invoked, { status, body: parsed, seq: doneSeq, time: run.now() });
    run.requests.push({ op, instance, sentAt, doneAt: run.now(), status, waitMs });
    if (status === -1)
      run.fail(`${method} ${path} on instance ${instance}: no answer within ${waitMs + run.hangMs} ms`);
    else if (status >= 500 && status !== 503) {
      run.fail(`${method} ${path} on instance ${instance}: HTTP ${status} ${JSON.stringify(parsed)}`);
    }
    if (status <= 0 || status === 503) this.instance = (instance + 1) % run.instances.length;
    return { status, body: parsed, sentSeq, doneSeq };
  }

  /**
   * Acquire with an Idempotency-Key, retried (same key, next instance) after a 503 or a
   * connection failure until `retryMs` has passed. The grant is recorded, and written to
   * the fence, in the same step as it arrives.
   */
  async acquire(
    name: string,
    o: { ttl: number; wait: number; retryMs?: number; signal?: AbortSignal; value?: string },
  ): Promise<Held | { status: number; answer: Answer }> {
    const key = randomUUID();
    const until = this.run.now() + (o.retryMs ?? 0);
    let first: { seq: number; at: number } | undefined;
    for (;;) {
      const at = this.run.now();
      const a = await this.send(
        "acquire",
        "POST",
        `/locks/${name}`,
        {
          ttl: o.ttl,
          owner: this.id,
          ...(o.wait > 0 ? { wait: o.wait } : {}),
          ...(o.value !== undefined ? { value: o.value } : {}),
        },
        { waitMs: o.wait * 1000, headers: { "idempotency-key": key }, ...(o.signal ? { signal: o.signal } : {}) },
      );
      first ??= { seq: a.sentSeq, at };
      if (a.status === 201 || a.status === 200) return this.granted(name, a, first);
      if ((a.status > 0 && a.status !== 503) || this.run.now() >= until || o.signal?.aborted) {
        return { status: a.status, answer: a };
      }
      await sleep(uniform(50, 150));
    }
  }

  /**
   * Records a grant (201, or 200 for a retry) and, for a lock, writes to the fence in the
   * same step as it arrives. `first`: when the first acquire that may have made it was
   * sent (`at`: when the request that took its lease may have been sent, if later).
   */
  granted(
    name: string,
    a: Answer,
    first: { seq: number; at: number },
    line: { kind?: "semaphore"; owner?: string } = {},
  ): Held {
    const record: GrantRecord = {
      name,
      token: a.body.token,
      lease: a.body.lease,
      client: this.id,
      requestedSeq: first.seq,
      requestedAt: first.at,
      receivedSeq: a.doneSeq,
      receivedAt: this.run.now(),
      ttl: a.body.ttl,
      calls: [],
      ...(this.auth ? { caller: this.auth.label } : {}),
      ...(line.kind === "semaphore" ? { kind: line.kind, limit: a.body.limit } : {}),
      ...(line.owner !== undefined ? { owner: line.owner } : {}),
    };
    this.run.grants.push(record);
    const held = { record, lease: a.body.lease as string };
    // A semaphore's holders write at once with different tokens: the fence is for locks.
    if (record.kind === undefined) this.write(held, false, a.doneSeq);
    return held;
  }

  /** A write to the fenced resource with the grant's token (locks only: see `granted`). */
  write(held: Held, afterStall: boolean, seq = this.run.seq()): boolean {
    if (held.record.kind !== undefined) return true;
    return this.run.fence.write({
      name: held.record.name,
      token: held.record.token,
      client: this.id,
      seq,
      grantReceivedSeq: held.record.receivedSeq,
      afterStall,
    });
  }

  /** Renew once (publishing `value`, if given); `true` while the lock is still ours (200), `false` after 410. */
  async renew(held: Held, value?: string): Promise<boolean | undefined> {
    const sentAt = this.run.now();
    const a = await this.send("renew", "PUT", `${basePath(held.record)}/${held.record.name}/renew`, {
      lease: held.lease,
      ...(value !== undefined ? { value } : {}),
    });
    this.called(held, "renew", a, sentAt);
    return a.status === 200 ? true : a.status === 410 ? false : undefined;
  }

  /**
   * Release, retried after a 503 or a connection failure until `retryMs` has passed. A
   * 204 marks the hold as ended in a successful release, sent at that attempt's send.
   */
  async release(held: Held, retryMs: number): Promise<number> {
    const until = this.run.now() + retryMs;
    for (;;) {
      const sentAt = this.run.now();
      const a = await this.send("release", "DELETE", `${basePath(held.record)}/${held.record.name}`, {
        lease: held.lease,
      });
      held.record.releaseFirstSentSeq ??= a.sentSeq;
      this.called(held, "release", a, sentAt);
      if (a.status === 204) held.record.releaseSentSeq = a.sentSeq;
      if ((a.status > 0 && a.status !== 503) || this.run.now() >= until) return a.status;
      await sleep(uniform(50, 150));
    }
  }

  private called(held: Held, op: CallRecord["op"], a: Answer, sentAt: number) {
    const done = { doneSeq: a.doneSeq, doneAt: this.run.now(), status: a.status };
    held.record.calls?.push({ op, sentSeq: a.sentSeq, sentAt, ...done });
  }

  /** An admin's force release, recorded for the checker; returns the status (0: no answer). */
  async forceRelease(name: string): Promise<number> {
    const a = await this.send("force", "DELETE", `/locks/${name}?force=true`);
    this.run.forces.push({ name, sentSeq: a.sentSeq, doneSeq: a.doneSeq, status: a.status });
    return a.status;
  }
}
