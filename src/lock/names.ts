/** Lock names: 1–255 characters from `A–Z a–z 0–9 . _ - : ~ @` (no `/`, so no key escapes the prefix). */
export const NAME_PATTERN = /^[A-Za-z0-9._\-:~@]{1,255}$/;
/** A listing prefix: the same alphabet, possibly empty. */
export const NAME_PREFIX_PATTERN = /^[A-Za-z0-9._\-:~@]{0,255}$/;
export const NAME_ALPHABET = "A–Z a–z 0–9 . _ - : ~ @";

export function isValidName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

/**
 * The lease handle a holder gets. Today it is the etcd lease ID in hex; the API
 * accepts 16–64 hex digits in any case so the handle can grow without breaking clients.
 */
export const HANDLE_PATTERN = /^[0-9a-fA-F]{16,64}$/;

const MAX_INT64 = (1n << 63n) - 1n;

export function formatHandle(leaseId: bigint): string {
  return leaseId.toString(16).padStart(16, "0");
}

/** The lease ID a well-formed handle names, or `undefined` when no etcd lease can have it. */
export function parseHandle(handle: string): bigint | undefined {
  if (!HANDLE_PATTERN.test(handle)) return undefined;
  const id = BigInt(`0x${handle}`);
  return id > 0n && id <= MAX_INT64 ? id : undefined;
}

/**
 * A fresh lease ID from a cryptographic RNG. etcd accepts client-chosen IDs; a random
 * positive int64 makes the handle unguessable, and each grant gets a new one, so a
 * former holder's handle can never name a later grant's lease.
 */
export function randomLeaseId(): bigint {
  const bytes = new Uint8Array(8);
  for (;;) {
    crypto.getRandomValues(bytes);
    bytes[0] = (bytes[0] ?? 0) & 0x7f;
    let id = 0n;
    for (const b of bytes) id = (id << 8n) | BigInt(b);
    if (id !== 0n) return id;
  }
}
