import { toHex } from "../bytes.js";

/** Lock names: 1–255 characters from `A–Z a–z 0–9 . _ - : ~ @` (no `/`, so no key escapes the prefix). */
export const NAME_PATTERN = /^[A-Za-z0-9._\-:~@]{1,255}$/;
/** A listing prefix: the same alphabet, possibly empty. */
export const NAME_PREFIX_PATTERN = /^[A-Za-z0-9._\-:~@]{0,255}$/;
export const NAME_ALPHABET = "A–Z a–z 0–9 . _ - : ~ @";

export function isValidName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

/**
 * The secret a holder gets (its lease handle) or a caller in line gets (its ticket):
 * the etcd lease ID, the participant's key ID in its line, and a per-participant nonce,
 * 16 hex digits each. Leases are reused across grants (see lease-pool.ts); the nonce,
 * stored with the participant only as a hash, is what ties a handle to one participant.
 * The API accepts 16–64 hex digits in any case so the handle can change shape without
 * breaking clients.
 */
export const HANDLE_PATTERN = /^[0-9a-fA-F]{16,64}$/;

const MAX_INT64 = (1n << 63n) - 1n;

export interface Handle {
  lease: bigint;
  /** 16 lowercase hex digits: which key of the line. */
  keyId: string;
  /** 16 lowercase hex digits. */
  nonce: string;
}

export function formatHandle(h: Handle): string {
  return h.lease.toString(16).padStart(16, "0") + h.keyId + h.nonce;
}

/** The participant a well-formed handle names, or `undefined` when none can have it. */
export function parseHandle(handle: string): Handle | undefined {
  if (!/^[0-9a-fA-F]{48}$/.test(handle)) return undefined;
  const lease = BigInt(`0x${handle.slice(0, 16)}`);
  if (lease <= 0n || lease > MAX_INT64) return undefined;
  const lower = handle.toLowerCase();
  return { lease, keyId: lower.slice(16, 32), nonce: lower.slice(32) };
}

// Random bytes are drawn from the CSPRNG in blocks and handed out 8 at a time, each byte
// used once: one getRandomValues call per 512 draws instead of one per draw.
const pool = new Uint8Array(4096);
let used = pool.length;

function random8(): Uint8Array {
  if (used === pool.length) {
    crypto.getRandomValues(pool);
    used = 0;
  }
  const out = pool.slice(used, used + 8);
  pool.fill(0, used, used + 8);
  used += 8;
  return out;
}

/** 64 random bits as 16 hex digits. */
export function randomNonce(): string {
  return toHex(random8());
}

/**
 * A fresh lease ID from a cryptographic RNG. etcd accepts client-chosen IDs; a random
 * positive int64 makes the handle unguessable, and each grant gets a new one, so a
 * former holder's handle can never name a later grant's lease.
 */
export function randomLeaseId(): bigint {
  for (;;) {
    const bytes = random8();
    bytes[0] = (bytes[0] ?? 0) & 0x7f;
    let id = 0n;
    for (const b of bytes) id = (id << 8n) | BigInt(b);
    if (id !== 0n) return id;
  }
}
