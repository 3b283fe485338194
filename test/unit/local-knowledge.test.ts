import { describe, expect, it, onTestFinished, vi } from "vitest";
import { OwnGrants, ReportedExpiry, SeenHeld } from "../../src/lock/strategies/local-knowledge.js";

const T0 = Date.UTC(2030, 0, 1);

/** `Date.now` under the test's control for SeenHeld, which reads it itself. */
function clock() {
  let now = T0;
  const spy = vi.spyOn(Date, "now").mockImplementation(() => now);
  onTestFinished(() => spy.mockRestore());
  return {
    advance(ms: number) {
      now += ms;
    },
  };
}

const iso = (ms: number) => new Date(ms).toISOString();

describe("SeenHeld", () => {
  it("forgets a key when the holder's TTL has passed", () => {
    const c = clock();
    const seen = new SeenHeld();
    seen.note("k", 5);
    expect(seen.likely("k")).toBe(true);
    c.advance(4_999);
    expect(seen.likely("k")).toBe(true);
    c.advance(1);
    expect(seen.likely("k")).toBe(false);
    // Noting again starts a new period.
    seen.note("k", 5);
    expect(seen.likely("k")).toBe(true);
  });

  it("without a known TTL, remembers 30 seconds; forget drops at once", () => {
    const c = clock();
    const seen = new SeenHeld();
    seen.note("k");
    seen.note("j");
    seen.forget("j");
    expect(seen.likely("j")).toBe(false);
    c.advance(29_999);
    expect(seen.likely("k")).toBe(true);
    c.advance(1);
    expect(seen.likely("k")).toBe(false);
  });

  it("is bounded: the least recently noted key goes first", () => {
    clock();
    const seen = new SeenHeld(2);
    seen.note("a");
    seen.note("b");
    seen.note("a"); // refreshed: now "b" is the oldest
    seen.note("c");
    expect([seen.likely("a"), seen.likely("b"), seen.likely("c")]).toEqual([true, false, true]);
  });
});

describe("OwnGrants", () => {
  const grant = { lease: 7n, nonce: "00112233aabbccdd", revision: 42, ttl: 10, at: T0 };

  it("hands out an entry only for its lease and nonce, once", () => {
    const own = new OwnGrants();
    own.add("k", grant);
    // The lease alone (a reused lease, a former holder's handle) is not enough, nor the nonce alone.
    expect(own.take("k", { lease: 7n, nonce: "ffffffffffffffff" })).toBeUndefined();
    expect(own.take("k", { lease: 8n, nonce: grant.nonce })).toBeUndefined();
    expect(own.take("other", { lease: 7n, nonce: grant.nonce })).toBeUndefined();
    expect(own.take("k", { lease: 7n, nonce: grant.nonce })).toEqual(grant);
    expect(own.take("k", { lease: 7n, nonce: grant.nonce })).toBeUndefined();
  });

  it("a new grant of the key replaces the old one; the bound drops the oldest key", () => {
    const own = new OwnGrants(2);
    own.add("a", grant);
    own.add("a", { ...grant, nonce: "aaaaaaaaaaaaaaaa", revision: 50 });
    expect(own.take("a", grant)).toBeUndefined();
    own.add("b", grant);
    own.add("c", grant);
    expect(own.take("a", { lease: 7n, nonce: "aaaaaaaaaaaaaaaa" })).toBeUndefined();
    expect(own.take("b", grant)).toBeDefined();
    expect(own.take("c", grant)).toBeDefined();
  });
});

describe("ReportedExpiry", () => {
  it("never reports an earlier expiry for the same grant than it reported before", () => {
    const expiry = new ReportedExpiry();
    // Acquire: sent at T0, full TTL 30 s.
    expect(expiry.estimate("k", 5, T0, 30)).toBe(iso(T0 + 30_000));
    // A read 1.5 s later sees 28 whole seconds left (etcd rounds down): still T0 + 30 s.
    expect(expiry.estimate("k", 5, T0 + 1_500, 28)).toBe(iso(T0 + 30_000));
    // A renewal moves it later, and that sticks.
    expect(expiry.estimate("k", 5, T0 + 10_000, 30)).toBe(iso(T0 + 40_000));
    expect(expiry.estimate("k", 5, T0 + 11_000, 28)).toBe(iso(T0 + 40_000));
  });

  it("a new grant of the key (another revision) starts afresh, even earlier", () => {
    const expiry = new ReportedExpiry();
    expiry.estimate("k", 5, T0, 60);
    expect(expiry.estimate("k", 9, T0 + 1_000, 10)).toBe(iso(T0 + 11_000));
    expect(expiry.estimate("j", 5, T0, 10)).toBe(iso(T0 + 10_000));
  });
});

describe("the bound", () => {
  it("a full map drops its oldest eighth at once and keeps the rest", () => {
    const expiry = new ReportedExpiry(16);
    for (let i = 0; i < 16; i++) expiry.estimate(`k${i}`, 1, T0, 30 + i);
    // Later, shorter estimates: a key still remembered keeps its earlier (longer) expiry.
    const remembered = (i: number) => expiry.estimate(`k${i}`, 1, T0, 1) === iso(T0 + (30 + i) * 1000);
    expiry.estimate("k16", 1, T0, 30); // full: k0 and k1 (16 / 8) go
    expect([remembered(2), remembered(15)]).toEqual([true, true]);
    const fresh = new ReportedExpiry(16);
    for (let i = 0; i < 17; i++) fresh.estimate(`k${i}`, 1, T0, 30 + i);
    expect(fresh.estimate("k0", 1, T0, 1)).toBe(iso(T0 + 1_000));
    expect(fresh.estimate("k1", 1, T0, 1)).toBe(iso(T0 + 1_000));
  });

  it("forget drops a grant's expiry", () => {
    const expiry = new ReportedExpiry();
    expiry.estimate("k", 5, T0, 30);
    expiry.forget("k");
    expect(expiry.estimate("k", 5, T0, 10)).toBe(iso(T0 + 10_000));
  });
});
