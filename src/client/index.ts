/**
 * leasehold/client: a fetch-based client for the leasehold HTTP API.
 *
 * No runtime dependencies and no Node APIs: it runs wherever `fetch`, `AbortController`
 * and `setTimeout` exist (Node 18+, Cloudflare Workers, Deno, Bun, browsers). Nothing
 * here imports from outside src/client, so it compiles on its own into the published
 * packages (scripts/build-client.ts): `leasehold-client` and `leasehold/client`.
 */

import { describe, LeaseholdError, problemError } from "./errors.js";
import { type Connect, EventStream, type LeaseholdEvent, type ObserveOptions } from "./observe.js";
import { backoff, follow, sleep } from "./timing.js";
import { fetchSend, isNode, nodeSend, type Reply, type Send } from "./transport.js";
import type {
  Fence,
  Grant,
  LockInfo,
  LockList,
  Permit,
  Problem,
  SemaphoreInfo,
  SemaphoreList,
  State,
  Ticket,
} from "./types.js";
import { holderValidUntil } from "./validity.js";

export { LeaseholdError, type LeaseholdErrorCode } from "./errors.js";
export type { EventStream, FreeEvent, HeldEvent, LeaseholdEvent, ObserveOptions, ResetEvent } from "./observe.js";
export type {
  Fence,
  Grant,
  Holder,
  LockInfo,
  LockList,
  Permit,
  Problem,
  ProblemCode,
  SemaphoreHolder,
  SemaphoreInfo,
  SemaphoreList,
  State,
  Ticket,
} from "./types.js";
export { holderMarginMs, holderValidUntil, MARGIN_FIXED_MS, MARGIN_RATE } from "./validity.js";

export const DEFAULT_URL = "http://127.0.0.1:8080";

export interface ClientOptions {
  /** Base URL of the service. Default: `LEASEHOLD_URL` where an environment exists, else `http://127.0.0.1:8080`. */
  url?: string;
  /** Sent as `Authorization: Bearer <apiKey>`. Default: `LEASEHOLD_API_KEY` where an environment exists. */
  apiKey?: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Deadline of each request in ms, on top of an acquire's `wait`. Default 15 000. */
  timeoutMs?: number;
}

export interface RequestOptions {
  /** Aborting it abandons the call; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
}

/** What every acquire takes. */
export interface AcquireFields extends RequestOptions {
  /** Lease TTL in seconds (service default 30). */
  ttl?: number;
  /** Seconds to wait for a held lock (fractions allowed; default 0). */
  wait?: number;
  /** Free text shown to others. */
  owner?: string;
  /**
   * A value to publish with the grant (at most 4,096 UTF-8 bytes): inspect and the event
   * stream show it. A waiter publishes it when its turn comes.
   */
  value?: string;
  /**
   * Locks only: whole seconds (0–60, service default 0) for which, when this grant ends
   * without a clean release (its lease expires, or an admin forces it), nobody is granted
   * the lock: acquires are refused with `lock-held` and `problem.reason === "lock-delay"`
   * (no holder), a waiting acquire waits it out. A release frees the lock at once. For
   * resources that cannot check a fencing token: a paused holder has that long to notice.
   */
  lockDelay?: number;
  /** Sent as `Idempotency-Key` on every attempt. Default: a random UUID per call. */
  idempotencyKey?: string;
  /**
   * How long (ms) to keep retrying, with jittered backoff, when there is no answer or the
   * service answers 429/502/503/504; counted after `wait`. Every retry carries the same
   * `Idempotency-Key`, so a retry after a lost response gets the same grant. 0 = one
   * attempt. Default 10 000.
   */
  retryMs?: number;
}

/** An acquire that answers a grant, or refuses (`lock-held` after `wait`). */
export interface AcquireOptions extends AcquireFields {
  queue?: false;
}

/** An acquire that keeps a place in line instead of refusing: the answer is a grant or a `Ticket`. */
export interface QueueOptions extends AcquireFields {
  queue: true;
  /** Seconds the place is kept while the caller is away (service default 30). */
  ticketTtl?: number;
}

export interface RedeemOptions extends RequestOptions {
  /** Seconds to wait for the ticket's turn (long poll; fractions allowed; default 0). */
  wait?: number;
  /** As for `acquire`: how long (ms) to retry when there is no answer or a 429/502/503/504. */
  retryMs?: number;
}

export interface RenewOptions extends RequestOptions {
  /** Replaces the published value (kept as it was when absent). */
  value?: string;
}

export interface InspectOptions extends RequestOptions {
  /**
   * A blocking read: answer only once the state changed after this index (the `index`
   * of an earlier answer), or after `wait` seconds unchanged.
   */
  index?: number;
  /** Seconds a blocking read may wait (with `index`; at most the service's LEASEHOLD_MAX_WAIT). */
  wait?: number;
}

/** A lock's state as of an etcd revision: `lock` is undefined when nobody holds it. */
export interface IndexedLock {
  lock: LockInfo | undefined;
  /** Pass it as `index` to wait for the next change. */
  index: number;
}

export interface ListOptions extends RequestOptions {
  prefix?: string;
  /** 1–1000 (service default 100). */
  limit?: number;
  cursor?: string;
}

export interface WithLockOptions extends Omit<AcquireFields, "timeoutMs"> {
  /**
   * Safety margin in ms: the lock counts as lost at `validUntil` = (send time of the last
   * successful acquire or renew) + ttl − margin. Default `holderMarginMs(ttl)`: 5 % of the
   * ttl for the clock-rate difference with etcd's leader, + 0.5 s for scheduling and the
   * network (2 s at ttl 30). Give more when this host's clock may run further off.
   */
  marginMs?: number;
  /** `false` leaves the lock to expire on its own (one ttl after the last renew) instead of releasing it. */
  release?: boolean;
  /**
   * Wait in line, served in arrival order, for as long as it takes (or up to `wait` s when
   * given) instead of giving up after one request's `wait`: joins the line with a ticket
   * and redeems it with long polls of `pollWait` s until its turn. Leaves the line when it
   * gives up (its `signal` fired, `wait` ran out, or an error).
   */
  queue?: boolean;
  /** With `queue`: seconds the service keeps the place between two polls (service default 30). */
  ticketTtl?: number;
  /** With `queue`: seconds each request in line waits; at most the service's `LEASEHOLD_MAX_WAIT`. Default 20. */
  pollWait?: number;
  /** With `queue`: called with the number of waiters ahead whenever the service reports it. */
  onQueued?: (position: number) => void;
}

/** The lock (or the permit) as `withLock` (`withPermit`) hands it to your function. */
export interface HeldLock<G extends Grant = Grant> {
  readonly name: string;
  /** Fencing token: pass it with every write to the protected resource. */
  readonly token: number;
  readonly lease: string;
  /** The latest grant (renewals update `expiresAt`). */
  readonly grant: G;
  /** Fires when the lock is lost, or when the caller's `signal` fires; `reason` says why. */
  readonly signal: AbortSignal;
  /**
   * Epoch ms (this machine's clock) until which the holder may act: `renewedAt` + ttl −
   * the safety margin (`marginMs`, default `holderMarginMs(ttl)`), short of the earliest
   * time the lease can end in etcd. Each successful renew moves it on; when none succeeds
   * before it, `signal` fires (`lock-expired`) at this time. Stop acting before it.
   */
  readonly validUntil: number;
  /** Epoch ms (this machine's clock): the send time of the last successful acquire or renew. */
  readonly renewedAt: number;
  /**
   * Asks the service whether this grant's token is still current (a linearizable read):
   * `true`, or `false` when it is not, which also counts as losing the lock (`signal`
   * fires with `lock-lost`). `false` at once, without asking, once the lock counts as lost.
   */
  fence(o?: RequestOptions): Promise<boolean>;
  /**
   * Writes the guarded state (at most 65,536 UTF-8 bytes) in the etcd transaction that
   * checks this grant is still current. Rejects with `lock-lost` (nothing written) when
   * it is not, which also fires `signal`; with the loss's reason, without sending, once
   * the lock counts as lost.
   */
  writeState(value: string, o?: RequestOptions): Promise<State>;
  /** The guarded state as last written (by this or an earlier grant), or `undefined` when never written. */
  readState(o?: RequestOptions): Promise<State | undefined>;
}

/** A semaphore's permit as `withPermit` hands it to your function. */
export type HeldPermit = HeldLock<Permit>;

export interface CampaignOptions extends Omit<WithLockOptions, "idempotencyKey" | "value" | "queue" | "ticketTtl"> {
  /**
   * Seconds each acquire waits before asking again (default 30; at most the service's
   * LEASEHOLD_MAX_WAIT). The campaign itself goes on until elected or `signal` fires.
   */
  wait?: number;
}

/** The leadership as `campaign` hands it to your function: a held lock with a published value. */
export interface Leadership extends HeldLock {
  /** The value published now. */
  readonly value: string;
  /**
   * Replaces the published value (a renew carrying it). When the leadership is gone it
   * rejects with `lock-lost` and the signal fires.
   */
  proclaim(value: string): Promise<Grant>;
}

export class LeaseholdClient {
  readonly url: string;
  readonly #apiKey: string | undefined;
  /** The URL for messages (a fixed phrase when it cannot be parsed: see `shownUrl`). */
  readonly #shownUrl: string;
  /** For event streams. */
  readonly #fetch: typeof fetch;
  /** For calls whose whole answer `#call` reads (see transport.ts). */
  readonly #send: Send;
  readonly #timeoutMs: number;
  readonly #lines: Lines;

  constructor(o: ClientOptions = {}) {
    this.url = (o.url ?? env("LEASEHOLD_URL") ?? DEFAULT_URL).replace(/\/+$/, "");
    this.#shownUrl = shownUrl(this.url);
    this.#apiKey = o.apiKey ?? env("LEASEHOLD_API_KEY");
    // Never quoted: it is a secret.
    if (this.#apiKey !== undefined) refuseUnsendable("the API key", this.#apiKey);
    this.#fetch = o.fetch ?? plainFetch;
    this.#send = o.fetch ? fetchSend(o.fetch) : (nodeSend() ?? runtimeSend);
    this.#timeoutMs = o.timeoutMs ?? 15_000;
    this.#lines = new Lines((method, path, c) => this.#call(method, path, c), this.#timeoutMs);
  }

  /**
   * Takes the lock (waiting up to `wait` s), retrying transient failures with one
   * Idempotency-Key. With `queue: true`, when the lock is not granted within `wait` the
   * answer is a `Ticket` (a place in line; `"ticket" in result` tells) instead of a
   * `lock-held` error: come back with `redeem`.
   */
  acquire(name: string, o: QueueOptions): Promise<Grant | Ticket>;
  acquire(name: string, o?: AcquireOptions): Promise<Grant>;
  async acquire(name: string, o: AcquireOptions | QueueOptions = {}): Promise<Grant | Ticket> {
    return granted(await this.#lines.take(lockLine(name), o), queued(o));
  }

  /**
   * `acquire`, also telling the earliest time (epoch ms) the grant's lease can have
   * started: the send time of the attempt that created it. Count expiry from there.
   */
  async acquireTimed(name: string, o: AcquireOptions = {}): Promise<{ grant: Grant; since: number }> {
    return onlyGrant(await this.#lines.take(lockLine(name), o));
  }

  /**
   * Comes back with a ticket (waiting up to `wait` s for its turn): the grant when the
   * ticket reached the head of the line (the same grant again when it already had), else
   * the ticket with its new position. 410 `lock-lost` when the ticket is no longer in line.
   */
  async redeem(name: string, ticket: string, o: RedeemOptions = {}): Promise<Grant | Ticket> {
    return granted(await this.#lines.redeem(lockLine(name), ticket, o), true);
  }

  /** Leaves the line (the ticket's place is given up). */
  async leave(name: string, ticket: string, o: RequestOptions = {}): Promise<void> {
    await this.#lines.leave(lockLine(name), ticket, o);
  }

  /**
   * Resets the lease to its granted TTL (and replaces the published value when `value`
   * is given). Same token; 410 `lock-lost` when it is no longer yours.
   */
  async renew(name: string, lease: string, o: RenewOptions = {}): Promise<Grant> {
    return this.#lines.renew(lockLine(name), lease, o);
  }

  /** Releases the lock; 410 `lock-lost` when it is no longer yours. */
  async release(name: string, lease: string, o: RequestOptions = {}): Promise<void> {
    await this.#lines.release(lockLine(name), lease, o);
  }

  /**
   * Who holds the lock (and the value it published), or `undefined` when nobody does.
   * With `index` and `wait`, a blocking read (see `inspectAt`).
   */
  async inspect(name: string, o: InspectOptions = {}): Promise<LockInfo | undefined> {
    return (await this.inspectAt(name, o)).lock;
  }

  /**
   * The lock's state and the index (etcd revision) it was read at. With `index`, waits
   * until the state changed after that index or `wait` seconds passed, so a loop of
   * `inspectAt(name, { index: last.index, wait: 30 })` sees every change of one lock
   * without polling.
   */
  async inspectAt(name: string, o: InspectOptions = {}): Promise<IndexedLock> {
    const { body, index } = await this.#lines.inspectAt(lockLine(name), o);
    return { lock: body as LockInfo | undefined, index };
  }

  /** One page of held locks in name order. */
  async list(o: ListOptions = {}): Promise<LockList> {
    return (await this.#lines.list("lock", o)) as LockList;
  }

  /**
   * Whether `token` is the fencing token of the lock's current holder, read
   * linearizably: `true`, or `false` (the service's 409 `fence-stale`: that grant ended,
   * or the token never was this lock's). For a resource that can't compare tokens
   * itself: ask just before each write, and write only on `true`. Not being able to ask
   * (no answer, 400, 401, 403) rejects.
   */
  async fence(name: string, token: number, o: RequestOptions = {}): Promise<boolean> {
    return this.#lines.fence(lockLine(name), token, o);
  }

  /**
   * Writes the lock's guarded state (at most 65,536 UTF-8 bytes; more is
   * `payload-too-large`) in the same etcd transaction that checks the grant of `lease`
   * is the current one: `lock-lost` (nothing written) when it is not. The state outlives
   * the grant: the next holder reads it, and a stale holder can never overwrite it.
   */
  async writeState(name: string, lease: string, value: string, o: RequestOptions = {}): Promise<State> {
    return this.#lines.writeState(lockLine(name), lease, value, o);
  }

  /** The lock's guarded state, with the token of the grant that wrote it; `undefined` when never written. */
  async readState(name: string, o: RequestOptions = {}): Promise<State | undefined> {
    return this.#lines.readState(lockLine(name), o);
  }

  /**
   * Runs `fn` while holding the lock: acquires (retrying transient failures), renews
   * every ttl/3, fires `lock.signal` when the lock is lost (a renew answered 410, or no
   * successful renew before `lock.validUntil`), releases when `fn` settles and
   * returns its result. Rejects without calling `fn` when the lock cannot be had
   * (`lock-held` after `wait`, …). A lost lock does not change `fn`'s outcome: make `fn`
   * honour the signal. With `queue: true` it waits in line for as long as it takes.
   */
  async withLock<T>(name: string, fn: (lock: HeldLock) => T | PromiseLike<T>, o: WithLockOptions = {}): Promise<T> {
    return this.#lines.hold(lockLine(name), fn, o);
  }

  /**
   * Leader election: campaigns for `name` (acquires with `wait`, again and again, until
   * elected) publishing `value`, then runs `fn(signal, leader)` while leader, renewing in
   * the background as `withLock` does. `signal` fires when the leadership is lost (or the
   * caller's `signal` fires); `leader.proclaim(v)` replaces the published value; the
   * fencing token is the leader's epoch, larger for every new leader. Resigns (releases)
   * when `fn` settles and returns its result. Transient failures while campaigning are
   * retried; refusals that can't heal (401, 403, 400) reject.
   */
  async campaign<T>(
    name: string,
    value: string,
    fn: (signal: AbortSignal, leader: Leadership) => T | PromiseLike<T>,
    o: CampaignOptions = {},
  ): Promise<T> {
    const line = lockLine(name);
    const wait = o.wait ?? 30;
    for (let refused = 0; ; ) {
      o.signal?.throwIfAborted();
      let taken: Taken;
      try {
        taken = await this.#lines.take(line, { ...o, value, wait });
      } catch (err) {
        if (!(err instanceof LeaseholdError && (err.code === "lock-held" || err.transient))) throw err;
        // After a real wait in line, ask again at once; otherwise back off.
        if (err.code !== "lock-held" || wait < 1) await sleep(backoff(refused++, 5_000, err.retryAfter), o.signal);
        continue;
      }
      return this.#lines.holdTaken(line, onlyGrant(taken), o, (lock, holding) => {
        let published = value;
        const leader: Leadership = {
          name: lock.name,
          token: lock.token,
          lease: lock.lease,
          signal: lock.signal,
          get grant() {
            return lock.grant;
          },
          get validUntil() {
            return lock.validUntil;
          },
          get renewedAt() {
            return lock.renewedAt;
          },
          get value() {
            return published;
          },
          fence: lock.fence,
          writeState: lock.writeState,
          readState: lock.readState,
          proclaim: async (next: string) => {
            const grant = await holding.renewWith(next);
            published = next;
            return grant;
          },
        };
        return fn(lock.signal, leader);
      });
    }
  }

  /**
   * The events of one lock (`name`) or of every name under `{ prefix }` ("" = all the
   * key may see), as an async iterator: `held` (a new holder, or a newly published
   * value), `free` (a grant ended; the token that ended) and `reset` (start over: the
   * current holders follow as `held` events). A new stream starts with a `reset` and the
   * current holders. A dropped connection is reopened with backoff and resumes after the
   * last event received, so no event is lost or repeated. Ends when `signal` fires or the
   * loop breaks; rejects on refusals that can't heal (401, 403, 400).
   */
  observe(target: string | { prefix: string }, o: ObserveOptions = {}): EventStream {
    const prefix = typeof target === "string" ? target : target.prefix;
    const url = `${this.url}/events?${new URLSearchParams(defined({ prefix, kind: o.kind }))}`;
    const connect: Connect = (lastEventId, signal) =>
      this.#fetch(url, {
        headers: {
          accept: "text/event-stream",
          ...(this.#apiKey ? { authorization: `Bearer ${this.#apiKey}` } : {}),
          ...(lastEventId ? { "last-event-id": lastEventId } : {}),
        },
        redirect: "manual",
        signal,
      });
    const only = (e: LeaseholdEvent) => typeof target !== "string" || e.type === "reset" || e.name === target;
    return new EventStream(connect, only, { ...o, timeoutMs: this.#timeoutMs });
  }

  /**
   * The semaphore `name`, at most `limit` holders at once (every caller must use the same
   * limit). Acquire and redeem need the limit; renew, release, leave and inspect don't.
   */
  semaphore(name: string, limit?: number): Semaphore {
    return new Semaphore(this.#lines, name, limit);
  }

  /** `withLock` for one of the `limit` permits of the semaphore `name` (see `Semaphore.withPermit`). */
  async withPermit<T>(
    name: string,
    limit: number,
    fn: (permit: HeldPermit) => T | PromiseLike<T>,
    o: WithLockOptions = {},
  ): Promise<T> {
    return this.semaphore(name, limit).withPermit(fn, o);
  }

  /** One page of semaphores that have holders, in name order. */
  async listSemaphores(o: ListOptions = {}): Promise<SemaphoreList> {
    return (await this.#lines.list("semaphore", o)) as SemaphoreList;
  }

  async #call(method: string, path: string, o: CallOptions): Promise<Answer> {
    const headers: Record<string, string> = {
      accept: "application/json",
      ...(this.#apiKey ? { authorization: `Bearer ${this.#apiKey}` } : {}),
      ...(o.json !== undefined ? { "content-type": "application/json" } : {}),
      ...o.headers,
    };
    // A caller's value (an Idempotency-Key) that no request can carry: said here, by its
    // name only, rather than as a network error that acquire would retry.
    for (const [name, value] of Object.entries(o.headers ?? {})) refuseUnsendable(name, value);
    const controller = new AbortController();
    const timeoutMs = o.timeoutMs ?? this.#timeoutMs;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const unlink = follow(o.signal, controller);
    try {
      let res: Reply;
      try {
        // Never followed (see runtimeSend): a redirect is the `redirected` error below.
        res = await this.#send(this.url + path, {
          method,
          headers,
          signal: controller.signal,
          ...(o.json !== undefined ? { body: JSON.stringify(o.json) } : {}),
        });
      } catch (err) {
        if (o.signal?.aborted) throw o.signal.reason;
        if ((err as { cause?: { message?: string } }).cause?.message === "unexpected redirect")
          throw redirected(method, path, 0);
        if (timedOut) {
          throw new LeaseholdError(
            "timeout",
            `${method} ${path}: no answer from ${this.#shownUrl} within ${timeoutMs} ms`,
          );
        }
        throw new LeaseholdError(
          "network-error",
          `${method} ${path}: ${this.#shownUrl} did not answer: ${describe(err)}`,
          {
            cause: err,
          },
        );
      }
      if (res.opaqueRedirect || (res.status >= 300 && res.status < 400)) {
        throw redirected(method, path, res.status);
      }
      const body = parseJson(res.text);
      if (res.status >= 200 && res.status < 300) {
        if (res.status !== 204 && body === undefined) {
          throw new LeaseholdError("invalid-response", `${method} ${path}: ${res.status} without a JSON body`, {
            status: res.status,
          });
        }
        return { status: res.status, body, headers: res.headers };
      }
      if (o.free && res.status === 404 && (body as Problem | undefined)?.code === "lock-not-found") {
        return { status: res.status, body, headers: res.headers };
      }
      throw problemError(method, path, res, body);
    } finally {
      clearTimeout(timer);
      unlink();
    }
  }
}

/**
 * A semaphore: at most `limit` holders at once, each permit with its own fencing token.
 * Get one from `client.semaphore(name, limit)`; the calls mirror the client's lock calls.
 */
export class Semaphore {
  readonly #lines: Lines;
  readonly #line: Line;

  /** @internal Use `client.semaphore(name, limit)`. */
  constructor(lines: Lines, name: string, limit: number | undefined) {
    this.#lines = lines;
    this.#line = { kind: "semaphore", name, ...(limit === undefined ? {} : { limit }) };
  }

  get name(): string {
    return this.#line.name;
  }

  get limit(): number | undefined {
    return this.#line.limit;
  }

  /** The line, for the calls that send the limit. */
  get #limited(): Line {
    if (this.#line.limit === undefined) {
      throw new TypeError(`semaphore ${this.#line.name}: acquire needs its limit, client.semaphore(name, limit)`);
    }
    return this.#line;
  }

  /** Takes a permit (see `LeaseholdClient.acquire`; `queue: true` may answer a `Ticket`). */
  acquire(o: QueueOptions): Promise<Permit | Ticket>;
  acquire(o?: AcquireOptions): Promise<Permit>;
  async acquire(o: AcquireOptions | QueueOptions = {}): Promise<Permit | Ticket> {
    return granted(await this.#lines.take(this.#limited, o), queued(o)) as Permit | Ticket;
  }

  /** Comes back with a ticket: the permit at its turn, else the ticket's new position. */
  async redeem(ticket: string, o: RedeemOptions = {}): Promise<Permit | Ticket> {
    return granted(await this.#lines.redeem(this.#limited, ticket, o), true) as Permit | Ticket;
  }

  /** Leaves the line. */
  async leave(ticket: string, o: RequestOptions = {}): Promise<void> {
    await this.#lines.leave(this.#line, ticket, o);
  }

  async renew(lease: string, o: RenewOptions = {}): Promise<Permit> {
    return (await this.#lines.renew(this.#line, lease, o)) as Permit;
  }

  async release(lease: string, o: RequestOptions = {}): Promise<void> {
    await this.#lines.release(this.#line, lease, o);
  }

  /** The holders and the number waiting, or `undefined` when nobody holds a permit. */
  async inspect(o: RequestOptions = {}): Promise<SemaphoreInfo | undefined> {
    return (await this.#lines.inspect(this.#line, o)) as SemaphoreInfo | undefined;
  }

  /** Whether `token` is a current permit's fencing token (see `LeaseholdClient.fence`). */
  async fence(token: number, o: RequestOptions = {}): Promise<boolean> {
    return this.#lines.fence(this.#line, token, o);
  }

  /**
   * Writes the semaphore's one guarded state: the holder of any current permit may
   * (the state records that permit's token); `lock-lost` when `lease`'s permit is not
   * current. See `LeaseholdClient.writeState`.
   */
  async writeState(lease: string, value: string, o: RequestOptions = {}): Promise<State> {
    return this.#lines.writeState(this.#line, lease, value, o);
  }

  /** The semaphore's guarded state, or `undefined` when never written. */
  async readState(o: RequestOptions = {}): Promise<State | undefined> {
    return this.#lines.readState(this.#line, o);
  }

  /**
   * Runs `fn` while holding one permit: `withLock`'s discipline (renews every ttl/3, fires
   * `permit.signal` when it is lost, releases when `fn` settles), and `queue: true` to wait
   * in line for as long as it takes.
   */
  async withPermit<T>(fn: (permit: HeldPermit) => T | PromiseLike<T>, o: WithLockOptions = {}): Promise<T> {
    return this.#lines.hold(this.#limited, fn as (held: HeldLock) => T | PromiseLike<T>, o);
  }
}

/** A client for `o.url` (or `LEASEHOLD_URL`), sending `o.apiKey` (or `LEASEHOLD_API_KEY`). */
export function createClient(o: ClientOptions = {}): LeaseholdClient {
  return new LeaseholdClient(o);
}

/** `withLock` on a client made from the same options (see `LeaseholdClient.withLock`). */
export function withLock<T>(
  name: string,
  fn: (lock: HeldLock) => T | PromiseLike<T>,
  o: WithLockOptions & ClientOptions = {},
): Promise<T> {
  return new LeaseholdClient(o).withLock(name, fn, o);
}

/** `campaign` on a client made from the same options (see `LeaseholdClient.campaign`). */
export function campaign<T>(
  name: string,
  value: string,
  fn: (signal: AbortSignal, leader: Leadership) => T | PromiseLike<T>,
  o: CampaignOptions & ClientOptions = {},
): Promise<T> {
  return new LeaseholdClient(o).campaign(name, value, fn, o);
}

/** `observe` on a client made from the same options (see `LeaseholdClient.observe`). */
export function observe(target: string | { prefix: string }, o: ObserveOptions & ClientOptions = {}): EventStream {
  return new LeaseholdClient(o).observe(target, o);
}

/** `withPermit` on a client made from the same options (see `Semaphore.withPermit`). */
export function withPermit<T>(
  name: string,
  limit: number,
  fn: (permit: HeldPermit) => T | PromiseLike<T>,
  o: WithLockOptions & ClientOptions = {},
): Promise<T> {
  return new LeaseholdClient(o).withPermit(name, limit, fn, o);
}

/** A lock (a line of one holder) or a semaphore (a line of `limit` holders), by name. */
interface Line {
  kind: "lock" | "semaphore";
  name: string;
  /** Semaphores: sent with every acquire and redeem. */
  limit?: number;
}

const lockLine = (name: string): Line => ({ kind: "lock", name });

/** "lock NAME" or "semaphore NAME", for messages. */
const what = (line: Line) => `${line.kind} ${line.name}`;

type CallOptions = RequestOptions & {
  json?: unknown;
  headers?: Record<string, string>;
  /** A 404 `lock-not-found` is an answer (nobody holds it), not an error. */
  free?: boolean;
};
type Answer = { status: number; body: unknown; headers: Reply["headers"] };
type Call = (method: string, path: string, o: CallOptions) => Promise<Answer>;

/** What an acquire or a redeem came back with: a grant (and its send time) or a place in line. */
type Taken = { grant: Grant; since: number } | { ticket: Ticket };

/** The grant, or (when the caller queued) the ticket. A ticket nobody asked for is not what the API promises. */
function granted(taken: Taken, queued: boolean): Grant | Ticket {
  if ("grant" in taken) return taken.grant;
  if (queued) return taken.ticket;
  throw new LeaseholdError("invalid-response", "the service answered a place in line to an acquire without queue");
}

const queued = (o: AcquireOptions | QueueOptions) => o.queue === true;

function onlyGrant(taken: Taken): { grant: Grant; since: number } {
  if ("grant" in taken) return taken;
  throw new LeaseholdError("invalid-response", "the service answered a place in line to an acquire without queue");
}

/** The calls on one line, for locks and semaphores alike. */
class Lines {
  readonly #call: Call;
  /** The client's deadline of each request, on top of its wait. */
  readonly #timeoutMs: number;

  constructor(call: Call, timeoutMs: number) {
    this.#call = call;
    this.#timeoutMs = timeoutMs;
  }

  /** Acquire: the grant, or with `queue` possibly a place in line. */
  async take(line: Line, o: AcquireFields & { queue?: boolean; ticketTtl?: number }): Promise<Taken> {
    const queue = o.queue === true ? { queue: true, ticketTtl: o.ticketTtl } : {};
    const fields = { ttl: o.ttl, owner: o.owner, value: o.value, lockDelay: o.lockDelay, limit: line.limit, ...queue };
    return this.#post(line, fields, o, o.idempotencyKey ?? (await randomUUID()));
  }

  /** Comes back with a ticket. A redeem repeated after a lost answer gets the same grant (200). */
  async redeem(line: Line, ticket: string, o: RedeemOptions): Promise<Taken> {
    return this.#post(line, { ticket, limit: line.limit }, o, undefined);
  }

  async leave(line: Line, ticket: string, o: RequestOptions): Promise<void> {
    // In the body, like a lease: a secret in a URL ends up in access logs.
    await this.#call("POST", `${linePath(line)}/release`, { ...o, json: { ticket } });
  }

  async renew(line: Line, lease: string, o: RenewOptions): Promise<Grant> {
    const json = defined({ lease, value: o.value });
    return asGrant((await this.#call("PUT", `${linePath(line)}/renew`, { ...o, json })).body, line);
  }

  async release(line: Line, lease: string, o: RequestOptions): Promise<void> {
    // A POST, not DELETE with the lease in its body: Node's fetch closes the connection
    // after a DELETE that carries a body, so every release would cost a new one.
    await this.#call("POST", `${linePath(line)}/release`, { ...o, json: { lease } });
  }

  async inspect(line: Line, o: RequestOptions): Promise<unknown> {
    return (await this.inspectAt(line, o)).body;
  }

  /** The state (`undefined` when nobody holds it) and its index; with `index`, a blocking read. */
  async inspectAt(line: Line, o: InspectOptions): Promise<{ body: unknown; index: number }> {
    const blocking = o.index !== undefined;
    const query = new URLSearchParams(
      defined({
        index: blocking ? String(o.index) : undefined,
        wait: blocking && o.wait !== undefined ? String(round3(o.wait)) : undefined,
      }),
    ).toString();
    const path = `${linePath(line)}${query ? `?${query}` : ""}`;
    const res = await this.#call("GET", path, {
      ...o,
      timeoutMs: (o.timeoutMs ?? this.#timeoutMs) + (blocking ? (o.wait ?? 0) * 1000 : 0),
      free: true,
    });
    const index = Number(res.headers.get("leasehold-index") ?? (res.body as { index?: unknown } | undefined)?.index);
    if (blocking && !Number.isSafeInteger(index)) {
      throw new LeaseholdError("invalid-response", `GET ${path}: the answer carries no index`, { status: res.status });
    }
    return { body: res.status === 404 ? undefined : res.body, index };
  }

  async list(kind: Line["kind"], o: ListOptions): Promise<unknown> {
    const query = new URLSearchParams(
      defined({ prefix: o.prefix, limit: o.limit === undefined ? undefined : String(o.limit), cursor: o.cursor }),
    ).toString();
    return (await this.#call("GET", `/${kind}s${query ? `?${query}` : ""}`, o)).body;
  }

  /** A fence check: a 409 `fence-stale` is the answer `false`, not a failure. */
  async fence(line: Line, token: number, o: RequestOptions): Promise<boolean> {
    const path = `${linePath(line)}/fence?${new URLSearchParams({ token: String(token) })}`;
    let body: unknown;
    try {
      body = (await this.#call("GET", path, o)).body;
    } catch (err) {
      if (err instanceof LeaseholdError && err.code === "fence-stale") return false;
      throw err;
    }
    // Only an answer that says so counts as current: a fence must never pass by accident.
    if ((body as Partial<Fence> | undefined)?.current !== true || (body as Fence).token !== token) {
      throw new LeaseholdError("invalid-response", `GET ${path}: the 200 answer does not say the token is current`);
    }
    return true;
  }

  async writeState(line: Line, lease: string, value: string, o: RequestOptions): Promise<State> {
    // The lease in the body, never in the URL.
    return asState((await this.#call("PUT", `${linePath(line)}/state`, { ...o, json: { lease, value } })).body, line);
  }

  /** The guarded state; a 404 `state-not-found` is the answer `undefined`. */
  async readState(line: Line, o: RequestOptions): Promise<State | undefined> {
    try {
      return asState((await this.#call("GET", `${linePath(line)}/state`, o)).body, line);
    } catch (err) {
      if (err instanceof LeaseholdError && err.code === "state-not-found") return undefined;
      throw err;
    }
  }

  /** `withLock` and `withPermit`. */
  async hold<T>(line: Line, fn: (held: HeldLock) => T | PromiseLike<T>, o: WithLockOptions): Promise<T> {
    o.signal?.throwIfAborted();
    const taken = o.queue ? await this.waitInLine(line, o) : onlyGrant(await this.take(line, o));
    return this.holdTaken(line, taken, o, fn);
  }

  /** Holds a grant while `fn` runs: confirms it, renews in the background, releases at the end. */
  async holdTaken<T>(
    line: Line,
    { grant, since }: { grant: Grant; since: number },
    o: WithLockOptions,
    fn: (held: HeldLock, holding: Holding) => T | PromiseLike<T>,
  ): Promise<T> {
    const holding = new Holding(this, line, grant, since, o);
    try {
      o.signal?.throwIfAborted();
      await holding.confirm();
      holding.start();
      return await fn(holding.lock, holding);
    } finally {
      await holding.end();
    }
  }

  /**
   * Waits in line for a grant, as long as it takes or up to `o.wait` s: joins with a ticket
   * and redeems it with long polls of at most `pollWait` s, so that no single request waits
   * longer than the service allows. The join itself does not wait: the caller learns its
   * place at once, and holds the ticket it needs to leave should it give up. A ticket that dropped out of line (not redeemed within
   * its TTL, say through an outage) joins again, at the back. Whatever ends the wait
   * without a grant leaves the line.
   */
  async waitInLine(line: Line, o: WithLockOptions): Promise<{ grant: Grant; since: number }> {
    const deadline = o.wait === undefined ? Number.POSITIVE_INFINITY : Date.now() + o.wait * 1000;
    const pollWait = o.pollWait ?? 20;
    const each = {
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
    };
    const poll = () => Math.min(pollWait, Math.max(0, deadline - Date.now()) / 1000);
    // The caller's Idempotency-Key belongs to the first join; a later join is a new request.
    let idempotencyKey = o.idempotencyKey;
    let ticket: string | undefined;
    try {
      for (let rejoins = 0; ; ) {
        let taken: Taken;
        if (ticket === undefined) {
          const join = defined({
            ttl: o.ttl,
            owner: o.owner,
            lockDelay: o.lockDelay,
            idempotencyKey,
            ticketTtl: o.ticketTtl,
          });
          taken = await this.take(line, { ...each, ...join, queue: true, wait: 0 });
          idempotencyKey = undefined;
        } else {
          try {
            taken = await this.redeem(line, ticket, { ...each, wait: poll() });
          } catch (err) {
            if (!(err instanceof LeaseholdError && err.code === "lock-lost")) throw err;
            ticket = undefined;
            await sleep(backoff(rejoins++, 2_000), o.signal);
            continue;
          }
        }
        if ("grant" in taken) {
          ticket = undefined;
          return taken;
        }
        ticket = taken.ticket.ticket;
        o.onQueued?.(taken.ticket.position);
        if (Date.now() >= deadline) {
          // Not an answer of the service (that was 202 each time): status 0, no problem body.
          throw new LeaseholdError(
            "lock-held",
            `${what(line)}: still in line after waiting ${o.wait} s (${taken.ticket.position} ahead)`,
          );
        }
      }
    } finally {
      // Given up (or failed): the place goes to the next in line at once, not after ticketTtl.
      if (ticket !== undefined) await this.leave(line, ticket, { timeoutMs: 5_000 }).catch(() => {});
    }
  }

  /** POSTs an acquire or a redeem, retrying transient failures; a retry carries the wait that is left. */
  async #post(
    line: Line,
    fields: Record<string, unknown>,
    o: RequestOptions & { wait?: number; retryMs?: number },
    idempotencyKey: string | undefined,
  ): Promise<Taken> {
    const start = Date.now();
    const waitEnd = start + (o.wait ?? 0) * 1000;
    const giveUpAt = waitEnd + (o.retryMs ?? 10_000);
    let firstSent: number | undefined;
    for (let attempt = 0; ; attempt++) {
      const sent = Date.now();
      firstSent ??= sent;
      const wait = o.wait === undefined ? undefined : Math.max(0, waitEnd - sent) / 1000;
      try {
        const res = await this.#call("POST", linePath(line), {
          ...(o.signal ? { signal: o.signal } : {}),
          timeoutMs: (o.timeoutMs ?? this.#timeoutMs) + (wait ?? 0) * 1000,
          ...(idempotencyKey !== undefined ? { headers: { "idempotency-key": idempotencyKey } } : {}),
          json: defined({ ...fields, wait: wait === undefined ? undefined : round3(wait) }),
        });
        if (res.status === 202) return { ticket: asTicket(res.body) };
        // 201: created by this attempt. 200: a replay of an earlier attempt's grant.
        return { grant: asGrant(res.body, line), since: res.status === 200 ? firstSent : sent };
      } catch (err) {
        if (!(err instanceof LeaseholdError && (err.transient || err.code === "invalid-response"))) throw err;
        const delay = backoff(attempt, 2_000, err.retryAfter);
        if (Date.now() + delay > giveUpAt) throw err;
        await sleep(delay, o.signal);
      }
    }
  }
}

/** The renew loop and loss detection behind `withLock` and `withPermit`. Never lets a rejection escape. */
class Holding {
  readonly #lines: Lines;
  readonly #line: Line;
  readonly #o: WithLockOptions;
  readonly #controller = new AbortController();
  readonly #unlink: () => void;
  #grant: Grant;
  /** Epoch ms after which the lock counts as lost: the holder's `validUntil`. */
  #deadline = 0;
  /** Epoch ms of the send time of the last successful acquire/renew. */
  #since: number;
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #inflight: AbortController | undefined;
  #failures = 0;
  #lost = false;
  #ended = false;
  readonly lock: HeldLock;

  constructor(lines: Lines, line: Line, grant: Grant, since: number, o: WithLockOptions) {
    this.#lines = lines;
    this.#line = line;
    this.#o = o;
    this.#grant = grant;
    this.#since = since;
    this.#setDeadline();
    // The caller's signal ends the work too (its reason passes through).
    this.#unlink = follow(o.signal, this.#controller);
    const self = this;
    this.lock = {
      name: grant.name,
      token: grant.token,
      lease: grant.lease,
      get grant() {
        return self.#grant;
      },
      signal: this.#controller.signal,
      get validUntil() {
        return self.#deadline;
      },
      get renewedAt() {
        return self.#since;
      },
      fence: (o) => this.fence(o),
      writeState: (value, o) => this.writeState(value, o),
      readState: (o) => this.#lines.readState(this.#line, o ?? {}),
    };
  }

  get #ttlMs(): number {
    return this.#grant.ttl * 1000;
  }

  #setDeadline() {
    this.#deadline = holderValidUntil(this.#since, this.#grant.ttl, this.#o.marginMs);
  }

  /**
   * When the acquire took long (it waited, or it was a replay of an earlier attempt's
   * grant) the deadline counted from its send time is near or past: renew once before
   * `fn` runs, so `fn` starts with a full, confirmed TTL.
   */
  async confirm(): Promise<void> {
    if (Date.now() < this.#since + this.#ttlMs / 3) return;
    const giveUpAt = Date.now() + (this.#o.retryMs ?? 10_000);
    for (let attempt = 0; ; attempt++) {
      const sent = Date.now();
      try {
        this.#renewed(await this.#lines.renew(this.#line, this.lock.lease, { signal: this.#controller.signal }), sent);
        return;
      } catch (err) {
        if (!(err instanceof LeaseholdError && err.transient)) throw err;
        const delay = backoff(attempt, 1_000, err.retryAfter);
        if (Date.now() + delay > giveUpAt) throw err;
        await sleep(delay, this.#controller.signal);
      }
    }
  }

  start() {
    this.#armDeadline();
    this.#scheduleRenew(this.#since + this.#ttlMs / 3);
  }

  /** Stops renewing and releases (best effort; never throws). */
  async end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#stopTimers();
    this.#unlink();
    // A 410 said the lock is someone else's (or gone): nothing to release.
    const reason: unknown = this.#lost ? this.#controller.signal.reason : undefined;
    if (this.#o.release === false || (reason instanceof LeaseholdError && reason.code === "lock-lost")) return;
    try {
      await this.#lines.release(this.#line, this.lock.lease, { timeoutMs: 5_000 });
    } catch {
      // Already gone (410), or the service is unreachable: the lease expires on its own.
    }
  }

  /**
   * A renew now that also replaces the published value; it counts as a renewal. A 410
   * says the lock is gone: the signal fires and the call rejects. Other failures (a value
   * too large, no answer) only reject: the background renewals and the deadline still
   * decide whether the lock is held.
   */
  async renewWith(value: string): Promise<Grant> {
    const sent = Date.now();
    const grant = await this.#asHolder(() =>
      this.#lines.renew(this.#line, this.lock.lease, { value, signal: this.#controller.signal }),
    );
    if (!this.#lost && !this.#ended) {
      this.#renewed(grant, sent);
      this.#armDeadline();
      this.#scheduleRenew(sent + this.#ttlMs / 3);
    }
    return grant;
  }

  /** `HeldLock.writeState`: a guarded write with this grant's lease. */
  async writeState(value: string, o: RequestOptions = {}): Promise<State> {
    return this.#asHolder(() => this.#lines.writeState(this.#line, this.lock.lease, value, o));
  }

  /** `HeldLock.fence`: a stale answer means the grant is gone, so the lock counts as lost. */
  async fence(o: RequestOptions = {}): Promise<boolean> {
    if (this.#lost || this.#ended) return false;
    const current = await this.#lines.fence(this.#line, this.lock.token, o);
    if (!current) {
      this.#lose(
        new LeaseholdError(
          "lock-lost",
          `${what(this.#line)}: its fencing token ${this.lock.token} is no longer current`,
        ),
      );
    }
    return current;
  }

  /**
   * A call that acts with this grant's lease: refused without sending once the lock
   * counts as lost (or `fn` settled); a 410 answer says it is gone, and the signal fires.
   */
  async #asHolder<T>(call: () => Promise<T>): Promise<T> {
    if (this.#lost) throw this.#controller.signal.reason;
    if (this.#ended) throw new LeaseholdError("lock-lost", `${what(this.#line)}: no longer held here`);
    try {
      return await call();
    } catch (err) {
      if (err instanceof LeaseholdError && err.status === 410) this.#lose(err);
      throw err;
    }
  }

  #renewed(grant: Grant, sent: number) {
    this.#grant = grant;
    this.#since = sent;
    this.#failures = 0;
    this.#setDeadline();
  }

  #armDeadline() {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(
      () =>
        this.#lose(
          new LeaseholdError(
            "lock-expired",
            `${what(this.#line)}: no successful renew before this client's deadline; the ${this.#line.kind === "lock" ? "lock" : "permit"} may have expired`,
          ),
        ),
      Math.max(0, this.#deadline - Date.now()),
    );
  }

  #scheduleRenew(at: number) {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => void this.#renew(), Math.max(0, at - Date.now()));
  }

  async #renew(): Promise<void> {
    if (this.#lost || this.#ended) return;
    // A renew answered after the deadline is no use: the lock already counts as lost.
    const request = new AbortController();
    this.#inflight = request;
    const cutoff = setTimeout(() => request.abort(), Math.max(0, this.#deadline - Date.now()));
    const sent = Date.now();
    try {
      const grant = await this.#lines.renew(this.#line, this.lock.lease, { signal: request.signal });
      if (this.#lost || this.#ended) return;
      this.#renewed(grant, sent);
      this.#armDeadline();
      this.#scheduleRenew(sent + this.#ttlMs / 3);
    } catch (err) {
      if (this.#lost || this.#ended) return;
      if (err instanceof LeaseholdError && !err.transient) {
        // 410: someone else's now (or expired). Other refusals (401, 403, 400) won't heal either.
        this.#lose(err);
        return;
      }
      // No answer or 503: try again soon; the deadline timer decides when it is too late.
      this.#scheduleRenew(Date.now() + backoff(this.#failures++, this.#ttlMs / 6));
    } finally {
      clearTimeout(cutoff);
      if (this.#inflight === request) this.#inflight = undefined;
    }
  }

  #lose(reason: LeaseholdError) {
    if (this.#lost || this.#ended) return;
    this.#lost = true;
    this.#stopTimers();
    this.#controller.abort(reason);
  }

  #stopTimers() {
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#deadlineTimer);
    this.#inflight?.abort();
  }
}

function linePath(line: Line): string {
  // Names use A–Z a–z 0–9 . _ - : ~ @, all legal in a path segment; anything else is
  // escaped so that the service (not a misrouted URL) rejects it with a 400.
  return `/${line.kind}s/${line.name.replace(/[^A-Za-z0-9._\-:~@]/gu, (c) => encodeURIComponent(c))}`;
}

function asGrant(body: unknown, line: Line): Grant {
  const g = body as Partial<Permit> | undefined;
  if (
    typeof g?.token !== "number" ||
    typeof g.lease !== "string" ||
    typeof g.ttl !== "number" ||
    (line.kind === "semaphore" && typeof g.limit !== "number")
  ) {
    throw new LeaseholdError("invalid-response", `the service's answer is not a grant of a ${line.kind}`);
  }
  return g as Grant;
}

function asState(body: unknown, line: Line): State {
  const s = body as Partial<State> | undefined;
  if (
    typeof s?.value !== "string" ||
    typeof s.token !== "number" ||
    typeof s.revision !== "number" ||
    typeof s.updatedAt !== "string"
  ) {
    throw new LeaseholdError("invalid-response", `the service's answer is not the state of a ${line.kind}`);
  }
  return { value: s.value, token: s.token, revision: s.revision, updatedAt: s.updatedAt };
}

function asTicket(body: unknown): Ticket {
  const t = body as Partial<Ticket> | undefined;
  if (typeof t?.ticket !== "string" || typeof t.position !== "number" || typeof t.ttl !== "number") {
    throw new LeaseholdError("invalid-response", "the service's 202 answer is not a place in line");
  }
  return { ticket: t.ticket, position: t.position, ttl: t.ttl };
}

function parseJson(text: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** An environment variable where the runtime has them (Node, Bun, Deno); never throws. */
function env(name: string): string | undefined {
  try {
    const value = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
    return value === "" ? undefined : value;
  } catch {
    return undefined;
  }
}

/** What a header value may hold: visible ASCII, spaces and tabs, and Latin-1. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A TypeError naming `what` (never quoting `value`) when no header can carry `value`. */
function refuseUnsendable(what: string, value: string): void {
  if (!HEADER_VALUE.test(value)) {
    throw new TypeError(
      `${what} has a character a header cannot carry (a line break, a control character, or one above U+00FF)`,
    );
  }
}

/**
 * The service's URL as messages show it. A URL with a user name or password is refused:
 * sent as Basic auth (or refused by fetch with the whole URL in its message), and shown
 * in messages, the password would go where an API key never does.
 */
function shownUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "the service's URL"; // unusable: each call says so as a network error
  }
  if (parsed.username || parsed.password) {
    throw new TypeError("the service URL has a user name or password in it: pass an API key (apiKey) instead");
  }
  return url;
}

function redirected(method: string, path: string, status: number): LeaseholdError {
  return new LeaseholdError(
    "redirected",
    `${method} ${path}: the URL answered with a redirect${status ? ` (${status})` : ""}, which the client does not follow (it would send the request's lease or ticket on); point the client at the service itself`,
    { status },
  );
}

/** The runtime's fetch, looked up at each call (a test or polyfill may replace it). */
function plainFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  return globalThis.fetch(input, init);
}

/**
 * What `#call` sends with where Node's own client is not at hand (see transport.ts), or
 * off Node. The client never follows a redirect: the service never sends one, and
 * following it would send the request's body (a lease handle, a ticket) on to wherever it
 * points, so every call and event stream asks for `redirect: "manual"` (understood by
 * every runtime's fetch, and by one passed in `fetch`): a redirect comes back as a 3xx (or
 * an opaque answer) and `#call` makes it a `redirected` error. On Node, calls go with
 * `redirect: "error"` and no window instead: Node's fetch clones every request that may be
 * redirected before sending it, which tees its body into two new streams on every call,
 * about a fifth of the client's CPU per acquire + release (BENCHMARKS.md, session 10).
 */
const runtimeSend: Send = fetchSend(plainFetch, isNode() ? { redirect: "error", window: null } : {});

/** A random UUID for Idempotency-Key: Web Crypto everywhere; Node 18 keeps it in node:crypto. */
async function randomUUID(): Promise<string> {
  const webCrypto = (globalThis as { crypto?: Crypto }).crypto;
  if (typeof webCrypto?.randomUUID === "function") return webCrypto.randomUUID();
  if (typeof webCrypto?.getRandomValues === "function") {
    const b = webCrypto.getRandomValues(new Uint8Array(16));
    b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
    b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  // Node 18 without --experimental-global-webcrypto. A computed specifier keeps bundlers
  // for other runtimes from trying to include it; they never reach this line.
  const specifier = "node:crypto";
  const nodeCrypto = (await import(/* @vite-ignore */ specifier)) as { randomUUID(): string };
  return nodeCrypto.randomUUID();
}
