import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import type { Locks } from "../../src/lock/index.js";
import type { FakeEtcd } from "../support/fake-etcd.js";
import { fakeLocks } from "./support.js";

/**
 * LockService.list: the caller's listing prefix crossed with the prefixes its API key may
 * see, each turned into one key range, scanned in name order across ranges, paged by a
 * cursor and a limit that spans ranges.
 */

const LEASE = 0x5eedn;

/** Locks held under the service's "t/" prefix (plus a key outside it), all on one live lease. */
async function holding(names: string[]): Promise<{ fake: FakeEtcd; locks: Locks }> {
  const { fake, locks } = fakeLocks();
  await fake.leaseGrant(LEASE, 60);
  for (const n of names) fake.put(`t/${n}`, JSON.stringify({ owner: `owner of ${n}` }), LEASE);
  fake.put("u/a:1", "{}", LEASE);
  fake.resetCalls();
  return { fake, locks };
}

type ListOptions = Parameters<Locks["list"]>[0];

/** The names of one page, and its cursor. */
async function page(locks: Locks, o: ListOptions): Promise<{ names: string[]; next?: string }> {
  const r = await locks.list(o);
  return { names: r.items.map((i) => i.name), ...(r.next !== undefined ? { next: r.next } : {}) };
}

/** Every page until there is no cursor, concatenated. */
async function allPages(locks: Locks, o: ListOptions): Promise<string[][]> {
  const pages: string[][] = [];
  let after = o.after;
  for (;;) {
    const p = await page(locks, { ...o, ...(after !== undefined ? { after } : {}) });
    pages.push(p.names);
    if (p.next === undefined) return pages;
    if (pages.length > 100) throw new Error("the cursor does not advance");
    after = p.next;
  }
}

const NAMES = ["a:1", "a:2", "ab", "b:1", "b:2", "c"];

describe("LockService.list scopes (fake etcd)", () => {
  it("lists everything the key may see, in name order, with what anyone may see", async () => {
    const { locks } = await holding(NAMES);
    const r = await locks.list({ prefix: "", within: [""], limit: 100 });
    expect(r.items.map((i) => i.name)).toEqual(NAMES);
    expect(r.next).toBeUndefined();
    expect(r.items[0]).toEqual({
      name: "a:1",
      token: expect.any(Number),
      ttl: 60,
      expiresAt: expect.any(String),
      owner: "owner of a:1",
    });
    expect(JSON.stringify(r.items)).not.toMatch(/lease/i);
  });

  it("nested allowed prefixes are scanned once, by the outer range", async () => {
    const { fake, locks } = await holding(NAMES);
    expect(await page(locks, { prefix: "", within: ["a:", "a", "a:1"], limit: 100 })).toEqual({
      names: ["a:1", "a:2", "ab"],
    });
    expect(fake.count("range")).toBe(1);
  });

  it("disjoint allowed prefixes are scanned in name order, whatever order the key lists them in", async () => {
    const { fake, locks } = await holding(NAMES);
    expect(await page(locks, { prefix: "", within: ["c", "a:"], limit: 100 })).toEqual({
      names: ["a:1", "a:2", "c"],
    });
    expect(fake.argsOf("range").map(([start]) => start)).toEqual(["t/a:", "t/c"]);
  });

  it("the listing prefix narrows an allowed prefix, or is narrowed by it; disjoint ones list nothing", async () => {
    const { fake, locks } = await holding(NAMES);
    expect((await page(locks, { prefix: "a:", within: [""], limit: 100 })).names).toEqual(["a:1", "a:2"]);
    expect((await page(locks, { prefix: "a", within: ["a:", "b"], limit: 100 })).names).toEqual(["a:1", "a:2"]);
    fake.resetCalls();
    expect(await page(locks, { prefix: "c", within: ["a", "b"], limit: 100 })).toEqual({ names: [] });
    expect(fake.count("range")).toBe(0);
  });

  it("the cursor resumes after the name it names, skipping ranges wholly before it", async () => {
    const { fake, locks } = await holding(NAMES);
    const within = ["b", "a:"];
    expect((await page(locks, { prefix: "", within, limit: 100, after: "a:1" })).names).toEqual(["a:2", "b:1", "b:2"]);
    fake.resetCalls();
    expect((await page(locks, { prefix: "", within, limit: 100, after: "b:1" })).names).toEqual(["b:2"]);
    expect(fake.argsOf("range").map(([start]) => start)).toEqual(["t/b:1\0"]);
    // A cursor before every range starts each range at its beginning.
    expect((await page(locks, { prefix: "", within, limit: 100, after: "0" })).names).toEqual([
      "a:1",
      "a:2",
      "b:1",
      "b:2",
    ]);
  });

  it("the limit spans ranges, and a page that fills up at a range's end still has a cursor", async () => {
    const { locks } = await holding(NAMES);
    const within = ["a:", "b"];
    expect(await page(locks, { prefix: "", within, limit: 3 })).toEqual({ names: ["a:1", "a:2", "b:1"], next: "b:1" });
    expect(await page(locks, { prefix: "", within, limit: 3, after: "b:1" })).toEqual({ names: ["b:2"] });
    expect(await page(locks, { prefix: "", within, limit: 2 })).toEqual({ names: ["a:1", "a:2"], next: "a:2" });
    expect(await allPages(locks, { prefix: "", within, limit: 2 })).toEqual([
      ["a:1", "a:2"],
      ["b:1", "b:2"],
    ]);
  });

  it("a lock whose lease ends between the range and its TTL read is left out", async () => {
    const { fake, locks } = await holding(["a"]);
    await fake.leaseGrant(0x77n, 60);
    fake.put("t/b", "{}", 0x77n);
    const paused = fake.pauseNext("range", { applied: true });
    const listing = locks.list({ prefix: "", within: [""], limit: 10 });
    await paused.reached;
    await fake.leaseRevoke(0x77n);
    paused.release();
    expect((await listing).items.map((i) => i.name)).toEqual(["a"]);
  });

  it("etcd failing while the TTLs are read fails the listing rather than leaving locks out", async () => {
    const { fake, locks } = await holding(["a", "b"]);
    fake.failNext("leaseTimeToLive");
    await expect(locks.list({ prefix: "", within: [""], limit: 10 })).rejects.toBeInstanceOf(EtcdUnavailableError);
  });

  it("paging through any scopes yields exactly the visible names, once each, in order", async () => {
    const char = fc.constantFrom("a", "b", ".", ":", "~");
    const word = (min: number, max: number) =>
      fc.array(char, { minLength: min, maxLength: max }).map((c) => c.join(""));
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(word(1, 3), { maxLength: 16 }),
        // Mostly several narrow scopes; now and then "" (everything).
        fc.array(fc.oneof({ arbitrary: word(1, 2), weight: 9 }, { arbitrary: fc.constant(""), weight: 1 }), {
          minLength: 1,
          maxLength: 4,
        }),
        word(0, 2),
        fc.integer({ min: 1, max: 4 }),
        async (names, within, prefix, limit) => {
          const { locks } = await holding(names);
          const visible = names
            .filter((n) => n.startsWith(prefix) && within.some((w) => n.startsWith(w)))
            .sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
          const pages = await allPages(locks, { prefix, within, limit });
          for (const p of pages) expect(p.length).toBeLessThanOrEqual(limit);
          expect(pages.flat()).toEqual(visible);
        },
      ),
      // A fixed seed: the same cases on every run (change it to explore others).
      { numRuns: 300, seed: 14 },
    );
  });
});
