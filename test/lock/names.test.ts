import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/bytes.js";
import { formatHandle, parseHandle, randomLeaseId, randomNonce } from "../../src/lock/names.js";

describe("random handles", () => {
  it("nonces are 16 hex digits and never repeat, across refills of the random pool", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3_000; i++) {
      const n = randomNonce();
      expect(n).toMatch(/^[0-9a-f]{16}$/);
      seen.add(n);
    }
    expect(seen.size).toBe(3_000);
  });

  it("lease IDs are distinct positive int64s that round-trip through a handle", () => {
    const seen = new Set<bigint>();
    for (let i = 0; i < 3_000; i++) {
      const id = randomLeaseId();
      expect(id > 0n && id < 1n << 63n).toBe(true);
      seen.add(id);
      const [keyId, nonce] = [randomNonce(), randomNonce()];
      const handle = formatHandle({ lease: id, keyId, nonce });
      expect(handle).toMatch(/^[0-9a-f]{48}$/);
      expect(parseHandle(handle)).toEqual({ lease: id, keyId, nonce });
      expect(parseHandle(handle.toUpperCase())).toEqual({ lease: id, keyId, nonce });
    }
    expect(seen.size).toBe(3_000);
  });

  it("a handle of another shape, or with a lease ID etcd cannot have, names nothing", () => {
    const part = "0123456789abcdef";
    for (const bad of [
      part.repeat(2),
      part.repeat(4),
      `${part.repeat(2)}0123456789abcdeg`,
      "0".repeat(16) + part.repeat(2),
    ]) {
      expect(parseHandle(bad)).toBeUndefined();
    }
    // The highest bit set: above int64.
    expect(parseHandle(`8${"0".repeat(15)}${part}${part}`)).toBeUndefined();
  });

  it("toHex and fromHex are inverse over every byte value", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const hex = toHex(all);
    expect(hex.slice(0, 6)).toBe("000102");
    expect(hex.slice(-4)).toBe("feff");
    expect(fromHex(hex)).toEqual(all);
  });
});
