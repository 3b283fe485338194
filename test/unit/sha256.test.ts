import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toHex } from "../../src/bytes.js";
import { sha256Hex, sha256Js, sha256Native } from "../../src/sha256.js";

const reference = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

describe.each([
  ["sha256Hex (native on Node)", sha256Hex],
  ["sha256Js (Workers), as hex", (s: string) => toHex(sha256Js(s))],
])("%s", (_, hex) => {
  it("matches the standard test vectors", () => {
    expect(hex("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const long = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect(hex(long)).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  });

  it("matches node:crypto on every length around the block boundaries, and on any text", () => {
    for (let n = 0; n < 200; n++) expect(hex("x".repeat(n)), `length ${n}`).toBe(reference("x".repeat(n)));
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => hex(s) === reference(s)),
      { seed: 7, numRuns: 500 },
    );
  });
});

it("on Node, sha256Hex is Node's native one-shot hash, not the JavaScript one", () => {
  expect(sha256Native).toBe(true);
});
