import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  ApiKeyConfigError,
  allows,
  apiKeysFromConfig,
  constantTimeEqual,
  parseApiKeys,
} from "../../src/auth/api-keys.js";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

describe("API key configuration", () => {
  it.each([
    ["an empty list", "[]", /empty/],
    ["not JSON", "[{key:", /not valid JSON/],
    ["not a list", '{"key":"k","prefixes":[""]}', /invalid API key list/],
    ["missing prefixes", '[{"key":"k"}]', /prefixes is required/],
    ["an empty key", '[{"key":"","prefixes":[""]}]', /key must not be empty/],
    ["a bad sha256 digest", '[{"key":"sha256:abc","prefixes":[""]}]', /64 hex digits/],
    ["an unknown field", '[{"key":"k","prefixes":[""],"admn":true}]', /admn/],
    ["admin not boolean", '[{"key":"k","prefixes":[""],"admin":"yes"}]', /admin/],
  ])("rejects %s", async (_label, json, message) => {
    await expect(parseApiKeys(json, "LEASEHOLD_API_KEYS")).rejects.toThrow(ApiKeyConfigError);
    await expect(parseApiKeys(json, "LEASEHOLD_API_KEYS")).rejects.toThrow(message);
  });

  it("rejects both variables at once, and names the file it cannot read", async () => {
    await expect(apiKeysFromConfig({ LEASEHOLD_API_KEYS: "[]", LEASEHOLD_API_KEYS_FILE: "/x" })).rejects.toThrow(
      /not both/,
    );
    await expect(
      apiKeysFromConfig({ LEASEHOLD_API_KEYS_FILE: "/nonexistent/keys.json" }, () => {
        throw new Error("ENOENT");
      }),
    ).rejects.toThrow(/LEASEHOLD_API_KEYS_FILE: cannot read \/nonexistent\/keys.json/);
    expect(await apiKeysFromConfig({})).toBeUndefined();
  });

  it("finds keys by secret and by sha256 digest, and never by the digest itself", async () => {
    const keys = await parseApiKeys(
      JSON.stringify([
        { key: "alpha-secret", prefixes: ["a:"] },
        { key: `sha256:${sha("beta-secret").toUpperCase()}`, prefixes: ["b:", "c:"], admin: true },
      ]),
      "test",
    );
    const alpha = await keys.find("alpha-secret");
    expect(alpha).toMatchObject({ prefixes: ["a:"], admin: false });
    expect(await keys.find("beta-secret")).toMatchObject({ prefixes: ["b:", "c:"], admin: true });
    expect(await keys.find(sha("beta-secret"))).toBeUndefined();
    expect(await keys.find("alpha-secreT")).toBeUndefined();
    expect(await keys.find("")).toBeUndefined();
    expect(JSON.stringify(alpha)).not.toContain("alpha-secret");
    if (!alpha) throw new Error("unreachable");
    expect(allows(alpha, "a:x")).toBe(true);
    expect(allows(alpha, "b:x")).toBe(false);
    expect(allows(alpha, "xa:")).toBe(false);
  });

  it("compares a presented key with every configured key, whether it matches the first or none", async () => {
    const list = Array.from({ length: 5 }, (_, i) => ({ key: `secret-number-${i}`, prefixes: [""] }));
    let compared = 0;
    const keys = (await parseApiKeys(JSON.stringify(list), "test")).withComparator((a, b) => {
      compared++;
      return constantTimeEqual(a, b);
    });
    for (const secret of ["secret-number-0", "secret-number-4", "wrong", "x".repeat(10_000)]) {
      compared = 0;
      await keys.find(secret);
      expect(compared, secret).toBe(5);
    }
  });

  it("constantTimeEqual is a correct equality on byte strings", () => {
    const b = (...x: number[]) => new Uint8Array(x);
    expect(constantTimeEqual(b(1, 2, 3), b(1, 2, 3))).toBe(true);
    expect(constantTimeEqual(b(1, 2, 3), b(1, 2, 4))).toBe(false);
    expect(constantTimeEqual(b(9, 2, 3), b(1, 2, 3))).toBe(false);
    expect(constantTimeEqual(b(1, 2), b(1, 2, 3))).toBe(false);
    expect(constantTimeEqual(b(), b())).toBe(true);
  });
});
