import { sha256Hex } from "../sha256.js";

/**
 * What is stored as a participant key's value, next to the lease etcd keeps on the key.
 * A participant either holds (`h`, bound to its grant's lease) or waits in line (bound
 * to a short queue lease, or to its ticket's lease when `t`).
 *
 * Nothing in it lets a reader of etcd rebuild a handle or ticket: the lease ID is
 * visible in etcd, so the secret's other half (the nonce) is stored only as a hash,
 * and an idempotent grant's nonce is derived from secrets only its caller presents.
 */
export interface ParticipantValue {
  /** Holds a grant (absent: waits). */
  h?: 1;
  /**
   * Claimed: a grant handed out again (an idempotent retry, a ticket redeemed twice).
   * Writing the mark moves the key's mod revision, and makes its value differ from the
   * one the first attempt wrote; either stops that attempt's clean-up from ending it.
   */
  c?: 1;
  /** Waits as a ticket: a place kept across requests. */
  t?: 1;
  /** A ticket's TTL (seconds), reported with each of its positions. */
  tt?: number;
  /** Holders allowed at once (1 for a lock). */
  limit?: number;
  owner?: string;
  /** The value the participant publishes while it holds (a leader's address, say). */
  val?: string;
  /** Holders: the TTL etcd granted; waiters: the TTL asked for. */
  ttl?: number;
  /** Grant time (ms since the epoch), for the hold-time metric. */
  at?: number;
  /** SHA-256 of the grant's nonce (the second half of its handle), hex. */
  nh?: string;
  /**
   * Idempotent grants only: a random salt. The nonce is then
   * H(caller's secret, Idempotency-Key, salt), so a retry by the same caller with the
   * same key can recompute the handle, and nobody else (a reader of etcd included) can.
   */
  s?: string;
  /** Idempotent grants only: fingerprint of the request fields a retry must repeat. */
  fp?: string;
  /** Locks only: the lock-delay (seconds) asked for; the grant keeps a marker (see the engine). */
  ld?: number;
  /** Holders with a lock-delay: the marker's lease (hex), renewed with the grant's. */
  dl?: string;
}

export function decodeParticipant(value: string): ParticipantValue {
  try {
    const v = JSON.parse(value) as unknown;
    if (typeof v !== "object" || v === null) return {};
    const o = v as Record<string, unknown>;
    const out: ParticipantValue = {};
    if (o.h === 1) out.h = 1;
    if (o.t === 1) out.t = 1;
    if (o.c === 1) out.c = 1;
    if (typeof o.owner === "string") out.owner = o.owner;
    if (typeof o.val === "string") out.val = o.val;
    for (const k of ["ttl", "at", "limit", "tt", "ld"] as const) {
      const n = o[k];
      if (typeof n === "number") out[k] = n;
    }
    for (const k of ["nh", "s", "fp", "dl"] as const) {
      const s = o[k];
      if (typeof s === "string") out[k] = s;
    }
    return out;
  } catch {
    return {};
  }
}

/** An acquire's Idempotency-Key as this caller sent it, with the fields a retry must repeat. */
export interface Idempotency {
  key: string;
  /** The caller's secret (its API key; "" when auth is off). */
  caller: string;
  /** Fingerprint of the request's fields. */
  fp: string;
}

/** What an idempotent retry must repeat: the request's own fields. */
export function requestFingerprint(fields: unknown[]): string {
  return sha256Hex(JSON.stringify(fields)).slice(0, 16);
}

/** SHA-256 of a grant's nonce, as stored (hex; 128 bits are plenty to compare). */
export function nonceHash(nonce: string): string {
  return sha256Hex(`leasehold nonce\0${nonce}`).slice(0, 32);
}

/** Whether `nonce` is the stored participant's. */
export function nonceMatches(stored: ParticipantValue, nonce: string): boolean {
  return stored.nh !== undefined && stored.nh === nonceHash(nonce);
}

/**
 * The key ID (in the line) of an idempotent participant: the same for every retry of
 * one caller's Idempotency-Key, so a retry finds the first attempt's participant with
 * one read, and two attempts can never both join.
 */
export function idempotentKeyId(idem: Idempotency): string {
  return sha256Hex(`leasehold idempotent participant\0${idem.caller}\0${idem.key}`).slice(0, 16);
}

/** An idempotent grant's nonce: only a caller presenting the same secret and key can compute it. */
export function idempotentNonce(idem: Idempotency, salt: string): string {
  return sha256Hex(`leasehold idempotency\0${idem.caller}\0${idem.key}\0${salt}`).slice(0, 16);
}

/**
 * The nonce of the stored grant when it was made by this caller with this
 * Idempotency-Key; `undefined` for any other grant (another caller's key included).
 */
export function replayNonce(stored: ParticipantValue, idem: Idempotency): string | undefined {
  if (stored.s === undefined || stored.nh === undefined) return undefined;
  const nonce = idempotentNonce(idem, stored.s);
  return nonceHash(nonce) === stored.nh ? nonce : undefined;
}
