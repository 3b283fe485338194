/**
 * What every request to etcd's gateway shares, whether a unary call, a watch stream or a
 * keep-alive stream: which endpoint to try (one failover policy) and which auth token to
 * send (one stale-token policy).
 */

import { Deadline } from "../../timers.js";
import { EtcdAuthError, type EtcdConnectionOptions, EtcdUnavailableError } from "../types.js";
import {
  decodeGatewayError,
  EtcdGatewayError,
  errorInfo,
  firstLine,
  type GatewayErrorInfo,
  isAuthNotEnabled,
  isUnavailable,
  type Json,
  refusesToken,
} from "./codec.js";

/** One unary POST: the answer's status and its whole body as text. */
export type GatewayPost = (
  url: string,
  init: { headers: Record<string, string>; body: string; signal: AbortSignal },
) => Promise<{ status: number; text: string }>;

export interface Endpoint {
  /** The endpoint's URL without a trailing slash; request paths are appended. */
  base: string;
  /** For messages. */
  origin: string;
}

/**
 * The token a request carries: a simple or JWT token from /v3/auth/authenticate; `null`
 * when etcd had auth off at the time; `undefined` when no credentials are configured.
 */
export type Token = string | null | undefined;

/**
 * etcd refused the token a request carried; a retry with a fresh token may pass. `final`
 * is what the caller sees when the retry was refused too.
 */
export class StaleTokenError extends EtcdUnavailableError {
  constructor(readonly final: Error) {
    super(final.message);
  }
}

interface UnaryReply {
  status: number;
  text: string;
  origin: string;
  /** An earlier attempt of this call failed mid-flight: a write may have applied already. */
  retried: boolean;
}

export type UnaryResult = { ok: Json; retried: boolean } | { error: GatewayErrorInfo; retried: boolean };

export class GatewaySession {
  readonly timeoutMs: number;
  /** Every endpoint's origin, for messages. */
  readonly origins: string;
  private readonly endpoints: Endpoint[];
  /** Index of the endpoint that answered last; requests start there. */
  private current = 0;
  private closed = false;
  private readonly useAuth: boolean;
  /** The token to send; `undefined` until authenticated (again). */
  private token: Token;
  private authenticating: Promise<string | null> | undefined;

  constructor(
    private readonly opts: EtcdConnectionOptions,
    private readonly post: GatewayPost,
  ) {
    if (opts.endpoints.length === 0) throw new Error("etcd gateway: no endpoints");
    this.endpoints = opts.endpoints.map((e) => {
      const url = new URL(e);
      if (url.username || url.password) {
        throw new Error("etcd gateway: credentials in an endpoint URL are not supported; use username/password");
      }
      return { base: url.href.replace(/\/+$/, ""), origin: url.origin };
    });
    this.origins = this.endpoints.map((e) => e.origin).join(", ");
    this.timeoutMs = opts.timeoutMs;
    this.useAuth = opts.username !== undefined && opts.username !== "";
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.closed = true;
  }

  /**
   * The one failover policy: tries `attempt` on each endpoint in turn, starting at the one
   * that answered last, and moves on when it throws (the endpoint could not be reached,
   * or said it cannot serve now); an answer, even a refusal, makes that endpoint the one
   * to start at next time. `retried` tells an attempt that an earlier one failed, maybe
   * mid-flight. When `signal` fires the rotation stops with the attempt's error.
   */
  async rotate<T>(attempt: (ep: Endpoint, retried: boolean) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closed) throw new EtcdUnavailableError("etcd client is closed");
    const failures: string[] = [];
    for (let i = 0; i < this.endpoints.length; i++) {
      const index = (this.current + i) % this.endpoints.length;
      const ep = this.endpoints[index] as Endpoint;
      try {
        const answer = await attempt(ep, i > 0);
        this.current = index;
        return answer;
      } catch (err) {
        if (signal?.aborted) throw err;
        failures.push(`${ep.origin}: ${describeError(err)}`);
      }
    }
    throw new EtcdUnavailableError(`cannot reach etcd (${failures.join("; ")})`);
  }

  /**
   * The one stale-token policy: runs `attempt`, and once more when it fails with
   * StaleTokenError (the stale token was forgotten by `refusal`, so the retry carries a
   * fresh one).
   */
  async retryOnStaleToken<T>(attempt: () => Promise<T>): Promise<T> {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof StaleTokenError)) throw err;
    }
    try {
      return await attempt();
    } catch (err) {
      throw err instanceof StaleTokenError ? err.final : err;
    }
  }

  /** `retryOnStaleToken` for a request that carries the token itself. */
  withToken<T>(attempt: (token: Token) => Promise<T>): Promise<T> {
    return this.retryOnStaleToken(() => {
      // Most calls find the token at hand: no extra turn through a promise for them.
      const token = this.currentToken();
      return token instanceof Promise ? token.then(attempt) : attempt(token);
    });
  }

  /**
   * What etcd's refusal (`message`) of a request made with `used` means: StaleTokenError
   * when a fresh token may pass (then `used` is forgotten, unless a newer token replaced
   * it meanwhile), else `otherwise`.
   */
  refusal(used: Token, message: string, otherwise: Error): Error {
    if (!this.useAuth || !refusesToken(message, used)) return otherwise;
    if (this.token === used) this.token = undefined;
    return new StaleTokenError(otherwise);
  }

  headers(token: Token): Record<string, string> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token) headers.authorization = token;
    return headers;
  }

  /**
   * A unary call within the call deadline: resolves with the parsed 200 body (for
   * streaming endpoints, the first line's `result`), or rejects with
   * EtcdUnavailableError / EtcdGatewayError. Errors with a gRPC code in `handled` come
   * back as `{ error }` for the caller to handle.
   */
  async call(path: string, body: unknown, handled: number[] = [], stream = false): Promise<UnaryResult> {
    const deadline = new Deadline(Date.now() + this.timeoutMs);
    let retried = false;
    try {
      return await this.withToken(async (used): Promise<UnaryResult> => {
        const reply = await this.send(path, body, deadline.signal, used);
        retried ||= reply.retried;
        let err: GatewayErrorInfo;
        if (reply.status === 200) {
          let parsed: Json;
          try {
            parsed = JSON.parse(stream ? firstLine(reply.text) : reply.text) as Json;
          } catch {
            throw new EtcdUnavailableError(`etcd at ${reply.origin} sent a malformed answer to ${path}`);
          }
          if (!stream) return { ok: parsed, retried };
          const streamErr = errorInfo(parsed);
          if (!streamErr) return { ok: (parsed.result ?? {}) as Json, retried };
          err = streamErr;
        } else {
          err = decodeGatewayError(reply.status, reply.text);
        }
        if (isUnavailable(reply.status, err.code)) {
          throw new EtcdUnavailableError(`etcd at ${reply.origin} is unavailable: ${err.message}`);
        }
        if (err.code !== undefined && handled.includes(err.code)) return { error: err, retried };
        throw this.refusal(
          used,
          err.message,
          new EtcdGatewayError(`etcd ${path} failed: ${err.message}`, err.code, reply.status),
        );
      });
    } finally {
      deadline.done();
    }
  }

  /**
   * One unary POST to the first endpoint that answers; `signal` bounds all endpoints
   * together. Any answer ends the rotation, also one saying the member cannot serve now
   * (the caller reports that as EtcdUnavailableError); only an endpoint that cannot be
   * reached is passed over.
   */
  private send(path: string, body: unknown, signal: AbortSignal, token: Token): Promise<UnaryReply> {
    const headers = this.headers(token);
    const payload = JSON.stringify(body);
    return this.rotate(async (ep, retried) => {
      try {
        // A failure while reading the body counts as the endpoint's failure too.
        const { status, text } = await this.post(`${ep.base}${path}`, { headers, body: payload, signal });
        return { status, text, origin: ep.origin, retried };
      } catch (err) {
        if (signal.aborted) {
          throw new EtcdUnavailableError(`etcd did not answer within ${this.timeoutMs} ms (${this.origins})`);
        }
        throw err;
      }
    }, signal);
  }

  private currentToken(): Token | Promise<Token> {
    if (!this.useAuth) return undefined;
    if (this.token !== undefined) return this.token;
    return this.authenticate();
  }

  /** Shared by concurrent callers, so it has its own deadline rather than one caller's. */
  private authenticate(): Promise<string | null> {
    this.authenticating ??= (async () => {
      const deadline = new Deadline(Date.now() + this.timeoutMs);
      try {
        const credentials = { name: this.opts.username, password: this.opts.password ?? "" };
        const reply = await this.send("/v3/auth/authenticate", credentials, deadline.signal, undefined);
        if (reply.status === 200) {
          const t = (JSON.parse(reply.text) as Json).token;
          if (typeof t !== "string" || !t) throw new Error("etcd gateway: authenticate returned no token");
          this.token = t;
          return t;
        }
        const err = decodeGatewayError(reply.status, reply.text);
        if (isUnavailable(reply.status, err.code)) {
          throw new EtcdUnavailableError(`etcd at ${reply.origin}: ${err.message}`);
        }
        if (isAuthNotEnabled(err.message)) {
          this.token = null;
          return null;
        }
        throw new EtcdAuthError(`etcd authentication failed: ${err.message}`);
      } finally {
        deadline.done();
        this.authenticating = undefined;
      }
    })();
    return this.authenticating;
  }
}

/** A network failure in a few words: the cause's message, else its code (ECONNREFUSED). */
export function describeError(err: unknown): string {
  const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return cause.message || (typeof code === "string" ? code : cause.name);
  }
  return String(cause);
}
