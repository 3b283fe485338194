import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import type { Lines, ListOptions } from "../../src/lock/index.js";
import type { FakeEtcd } from "../support/fake-etcd.js";
import { fakeLines, PREFIX } from "./support.js";

/**
 * The engine's listing of locks: the caller's listing prefix crossed with the prefixes
 * its API key may see, each turned into one key range, scanned in name order across
 * ranges, paged by a cursor and a limit that spans ranges.
 */

const LEASE = 0x5eedn;
const holderKey = (name: string, id = "00000000000000a1") => `${PREFIX}lock/${name}#${id}`;

/**
 * Locks held under the engine's prefix, all on one live lease; plus keys the listing must
 * pass over: a semaphore of the same name, and a lock under another prefix.
 */
async function holding(names: string[]): Promise<{ fake: FakeEtcd; locks: Lines }> {
  const { fake, lines } = fakeLines();
  await fake.leaseGrant(LEASE, 60);
  for (const n of names) fake.put(holderKey(n), JSON.stringify({ h: 1, owner: `owner of ${n}` }), LEASE);
  fake.put(`${PREFIX}sem/a:1#00000000000000a1`, JSON.stringify({ h: 1, limit: 2 }), LEASE);
  fake.put("u/lock/a:1#00000000000000a1", JSON.stringify({ h: 1 }), LEASE);
  fake.resetCalls();
  return { fake, locks: lines };
}

/** Where the lock lines whose names start with `p` start. */
const at = (p: string) => `${PREFIX}lock/${p}`;

/** The names of one page, and its cursor. */
async function page(locks: Lines, o: ListOptions): Promise<{ names: string[]; next?: string }> {
  const r = await locks.list("lock", o);
  return { names: r.items.map((i) => i.name), ...(r.next !== undefined ? { next: r.next } : {}) };
}

/** Every page until there is no cursor, concatenated. */
async function allPages(locks: Lines, o: ListOptions): Promise<string[][]> {
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

describe("listing lock lines (fake etcd)", () => {
  it("lists everything the key may see, in name order, with what anyone may see", async () => {
    const { locks } = await holding(NAMES);
    const r = await locks.list("lock", { prefix: "", within: [""], limit: 100 });
    expect(r.items.map((i) => i.name)).toEqual(NAMES);
    expect(r.next).toBeUndefined();
    expect(r.items[0]).toEqual({
      name: "a:1",
      limit: 1,
      holders: [{ token: expect.any(Number), ttl: 60, expiresAt: expect.any(String), owner: "owner of a:1" }],
      waiters: 0,
    });
    expect(JSON.stringify(r.items)).not.toMatch(/lease/i);
  });

  it("a line's waiters are counted, not listed; a line with no live holder is left out", async () => {
    const { fake, locks } = await holding(["a", "b"]);
    const waiting = JSON.stringify({ ttl: 30 });
    fake.put(holderKey("a", "00000000000000b1"), waiting, LEASE);
    fake.put(holderKey("a", "00000000000000b2"), waiting, LEASE);
    fake.put(holderKey("w", "00000000000000b1"), waiting, LEASE);
    const r = await locks.list("lock", { prefix: "", within: [""], limit: 100 });
    expect(r.items.map((i) => [i.name, i.holders.length, i.waiters])).toEqual([
      ["a", 1, 2],
      ["b", 1, 0],
    ]);
  });

  it("semaphores are listed apart, with their limit and every holder", async () => {
    const { fake, locks } = await holding(["a:1"]);
    fake.put(`${PREFIX}sem/a:1#00000000000000a2`, JSON.stringify({ h: 1, limit: 2 }), LEASE);
    const r = await locks.list("semaphore", { prefix: "", within: [""], limit: 100 });
    expect(r.items).toEqual([{ name: "a:1", limit: 2, holders: [expect.any(Object), expect.any(Object)], waiters: 0 }]);
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
    expect(fake.argsOf("range").map(([start]) => start)).toEqual([at("a:"), at("c")]);
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
    // Past every key of the line "b:1" ("b:1#…"): the next character after "#".
    expect(fake.argsOf("range").map(([start]) => start)).toEqual([at("b:1$")]);
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
    fake.put(holderKey("b"), JSON.stringify({ h: 1 }), 0x77n);
    const paused = fake.pauseNext("range", { applied: true });
    const listing = locks.list("lock", { prefix: "", within: [""], limit: 10 });
    await paused.reached;
    await fake.leaseRevoke(0x77n);
    paused.release();
    expect((await listing).items.map((i) => i.name)).toEqual(["a"]);
  });

  it("etcd failing while the TTLs are read fails the listing rather than leaving locks out", async () => {
    const { fake, locks } = await holding(["a", "b"]);
    fake.failNext("leaseTimeToLive");
    await expect(locks.list("lock", { prefix: "", within: [""], limit: 10 })).rejects.toBeInstanceOf(
      EtcdUnavailableError,
    );
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
