import { toHex } from "../bytes.js";
import { sha256Sync } from "../sha256.js";

/**
 * What is stored as a lock key's value, next to the lease etcd keeps on the key.
 * Nothing in it lets a reader of etcd rebuild the holder's handle: the lease ID is
 * visible in etcd, so the handle's other half (the nonce) is stored only as a hash,
 * and an idempotent grant's nonce is derived from secrets only its caller presents.
 */
export interface GrantValue {
  owner?: string;
  /** TTL etcd granted, so renewals and idempotent replays can report it. */
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
  /** The nonce in clear, as grants written by earlier versions stored it (still honoured). */
  n?: string;
}

export function decodeGrantValue(value: string): GrantValue {
  try {
    const v = JSON.parse(value) as unknown;
    if (typeof v !== "object" || v === null) return {};
    const o = v as Record<string, unknown>;
    const out: GrantValue = {};
    if (typeof o.owner === "string") out.owner = o.owner;
    if (typeof o.ttl === "number") out.ttl = o.ttl;
    if (typeof o.at === "number") out.at = o.at;
    for (const k of ["nh", "s", "fp", "n"] as const) {
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
  return toHex(sha256Sync(JSON.stringify(fields))).slice(0, 16);
}

/** SHA-256 of a grant's nonce, as stored (hex; 128 bits are plenty to compare). */
export function nonceHash(nonce: string): string {
  return toHex(sha256Sync(`leasehold nonce\0${nonce}`)).slice(0, 32);
}

/** Whether `nonce` is the stored grant's. */
export function nonceMatches(stored: GrantValue, nonce: string): boolean {
  if (stored.nh !== undefined) return stored.nh === nonceHash(nonce);
  return stored.n !== undefined && stored.n === nonce;
}

/** An idempotent grant's nonce: only a caller presenting the same secret and key can compute it. */
export function idempotentNonce(idem: Idempotency, salt: string): string {
  return toHex(sha256Sync(`leasehold idempotency\0${idem.caller}\0${idem.key}\0${salt}`)).slice(0, 16);
}

/**
 * The nonce of the stored grant when it was made by this caller with this
 * Idempotency-Key; `undefined` for any other grant (another caller's key included).
 */
export function replayNonce(stored: GrantValue, idem: Idempotency): string | undefined {
  if (stored.s === undefined || stored.nh === undefined) return undefined;
  const nonce = idempotentNonce(idem, stored.s);
  return nonceHash(nonce) === stored.nh ? nonce : undefined;
}
