import { describe, expect, it } from "vitest";
import type { KeyValue } from "../../src/etcd/types.js";
import { hasRoom, lineLimit, type Member, mayHold, member, nextWaiting, positionOf } from "../../src/lock/standing.js";

/** A line from a compact description: "H" holds, "w" waits; create revisions 10, 11, … */
function line(shape: string, limit = 1): Member[] {
  return [...shape].map((c, i) =>
    member({
      key: `k${i}`,
      value: JSON.stringify({ ...(c === "H" ? { h: 1 } : {}), ...(limit !== 1 ? { limit } : {}) }),
      createRevision: 10 + i,
      modRevision: 10 + i,
      lease: 1n,
    } satisfies KeyValue),
  );
}

describe("standing in a line (pure rules)", () => {
  it("a line's limit is its oldest participant's; an empty line has none", () => {
    expect(lineLimit([])).toBeUndefined();
    expect(lineLimit(line("Hw"))).toBe(1);
    expect(lineLimit(line("HH", 3))).toBe(3);
  });

  it("a newcomer has room only when fewer than limit are in line and all of them hold", () => {
    expect(hasRoom([], 0, 1)).toBe(true);
    expect(hasRoom(line("H"), 1, 1)).toBe(false);
    expect(hasRoom(line("HH", 3), 2, 3)).toBe(true);
    // Someone waits (an unredeemed ticket whose turn came): no cutting in ahead of it.
    expect(hasRoom(line("Hw", 3), 2, 3)).toBe(false);
    // Fewer read than the line has: not all known, so no room.
    expect(hasRoom(line("H", 3), 2, 3)).toBe(false);
  });

  it("a waiter may hold only among the first limit with everyone ahead holding", () => {
    const l = line("Hww", 2);
    expect(mayHold(l, "k1", 2)).toBe(true);
    expect(mayHold(l, "k2", 2)).toBe(false);
    // The turn goes strictly in join order: k2 waits for k1 even with a permit free.
    expect(mayHold(line("ww", 2), "k1", 2)).toBe(false);
    expect(mayHold(line("ww", 2), "k0", 2)).toBe(true);
    expect(mayHold(line("Hw"), "k1", 1)).toBe(false);
    expect(mayHold(line("w"), "k0", 1)).toBe(true);
    expect(mayHold(line("w"), "absent", 1)).toBe(false);
  });

  it("a waiter waits out holders of another limit (it joined as the line changed hands): holders share one limit", () => {
    // A holder of limit 1 and a waiter of limit 2 behind it: two would hold where one may.
    const mixed = [...line("H"), ...line("ww", 2).slice(1)];
    expect(mayHold(mixed, "k1", 2)).toBe(false);
    // Holders of limit 3 ahead of a waiter of limit 2: the waiter waits for them all.
    const wider = [...line("HH", 3), ...line("__w", 2).slice(2)];
    expect(mayHold(wider, "k2", 2)).toBe(false);
    expect(mayHold(wider, "k2", 2, "k0")).toBe(false);
    // Once they are gone, it holds with its own limit.
    expect(mayHold(line("_w", 2).slice(1), "k1", 2)).toBe(true);
  });

  it("judged as if a releasing holder had left: only the first waiter's turn can come, and only with room", () => {
    // A lock: the holder k0 leaves, so k1 may hold; k2 still waits for k1.
    expect(nextWaiting(line("Hww"), "k0")?.kv.key).toBe("k1");
    expect(mayHold(line("Hww"), "k1", 1, "k0")).toBe(true);
    expect(mayHold(line("Hww"), "k2", 1, "k0")).toBe(false);
    // A semaphore of 2: k0 leaving frees a permit for k2, the first waiter, not for k3.
    const sem = line("HHww", 2);
    expect(nextWaiting(sem, "k0")?.kv.key).toBe("k2");
    expect(mayHold(sem, "k2", 2, "k0")).toBe(true);
    expect(mayHold(sem, "k3", 2, "k0")).toBe(false);
    // A waiter that may hold already stays the first: the one behind it waits for it.
    expect(nextWaiting(line("HwHw", 2), "k2")?.kv.key).toBe("k1");
    expect(mayHold(line("HwHw", 2), "k3", 2, "k2")).toBe(false);
    // The key that leaves may be a waiter of the copy (it became the holder since): skipped all the same.
    expect(mayHold(line("ww"), "k1", 1, "k0")).toBe(true);
    expect(nextWaiting(line("H"), "k0")).toBeUndefined();
    // Leaving nothing: as before.
    expect(mayHold(line("Hw"), "k1", 1, "absent")).toBe(false);
  });

  it("a position counts the waiters ahead, not the holders", () => {
    const l = line("HHwww", 2);
    expect(positionOf(l, "k2")).toBe(0);
    expect(positionOf(l, "k4")).toBe(2);
  });
});
