import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toHex } from "../../src/bytes.js";
import { sha256Sync } from "../../src/sha256.js";

const reference = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

describe("sha256Sync", () => {
  it("matches the standard test vectors", () => {
    expect(toHex(sha256Sync(""))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(toHex(sha256Sync("abc"))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const long = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect(toHex(sha256Sync(long))).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  });

  it("matches node:crypto on every length around the block boundaries, and on any text", () => {
    for (let n = 0; n < 200; n++)
      expect(toHex(sha256Sync("x".repeat(n))), `length ${n}`).toBe(reference("x".repeat(n)));
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => toHex(sha256Sync(s)) === reference(s)),
      { seed: 7, numRuns: 500 },
    );
  });
});
