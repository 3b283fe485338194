import { describe, expect, it } from "vitest";
import {
  createClient,
  type HeldLock,
  holderMarginMs,
  holderValidUntil,
  MARGIN_FIXED_MS,
  MARGIN_RATE,
} from "../../src/client/index.js";

/** A service that grants every acquire (ttl as asked) and accepts every release, answering at once. */
const granting: typeof fetch = async (_input, init) => {
  if (String(_input).endsWith("/release")) return new Response(null, { status: 204 });
  const ttl = (JSON.parse(String(init?.body ?? "{}")) as { ttl?: number }).ttl ?? 30;
  const grant = { name: "validity", token: 7, lease: "0123456789abcdef", ttl, expiresAt: new Date().toISOString() };
  return new Response(JSON.stringify(grant), { status: 201, headers: { "content-type": "application/json" } });
};

describe("holder validity", () => {
  it("the margin is 5 % of the ttl (clock rate) + 0.5 s (scheduling, network)", () => {
    expect(MARGIN_RATE).toBe(0.05);
    expect(MARGIN_FIXED_MS).toBe(500);
    expect(holderMarginMs(30)).toBe(2_000);
    expect(holderMarginMs(2)).toBe(600);
    expect(holderMarginMs(4)).toBe(700);
    expect(holderMarginMs(86_400)).toBe(4_320_500);
    // Whatever the ttl, the validity is shorter than the ttl and grows with it.
    for (const ttl of [2, 5, 30, 120, 3_600]) {
      const valid = holderValidUntil(0, ttl);
      expect(valid).toBeLessThan(ttl * 1000 * (1 - MARGIN_RATE));
      expect(valid).toBeGreaterThan(holderValidUntil(0, ttl - 1));
    }
    expect(holderValidUntil(1_000, 30)).toBe(1_000 + 28_000);
    expect(holderValidUntil(1_000, 30, 0)).toBe(31_000);
  });

  it("withLock's validUntil counts from the acquire's send time, with the default margin or marginMs", async () => {
    const client = createClient({ url: "http://leasehold.invalid", fetch: granting });
    const held = async (o: { marginMs?: number }) => {
      const before = Date.now();
      const lock = await client.withLock(
        "validity",
        (l: HeldLock) => ({ validUntil: l.validUntil, renewedAt: l.renewedAt }),
        {
          ttl: 30,
          ...o,
        },
      );
      return { ...lock, before, after: Date.now() };
    };
    const byDefault = await held({});
    expect(byDefault.renewedAt).toBeGreaterThanOrEqual(byDefault.before);
    expect(byDefault.renewedAt).toBeLessThanOrEqual(byDefault.after);
    expect(byDefault.validUntil).toBe(byDefault.renewedAt + 30_000 - holderMarginMs(30));
    const own = await held({ marginMs: 5_000 });
    expect(own.validUntil).toBe(own.renewedAt + 25_000);
  });
});
