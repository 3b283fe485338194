import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { History, readHistory } from "../../scripts/verify/history.js";
import { checkModel } from "../../scripts/verify/model.js";
import { Hand, simulate } from "./model-histories.js";

// The model checker on histories written by hand (each kind of violation is found,
// legitimate races pass, an operation of unknown outcome is taken both ways) and on
// long simulated ones (fast, and still finding a fault of the simulated service).

const check = (h: Hand) => checkModel(h.events());
const ok = (h: Hand) => expect(check(h).violations).toEqual([]);
const fails = (h: Hand, why: RegExp) => {
  const v = check(h).violations;
  expect(v.map((x) => x.invariant)).toEqual(["linearizability"]);
  expect(v[0]?.detail).toMatch(why);
};

describe("the model checker: correct histories pass", () => {
  it("one holder after the other, renewed and released", () => {
    ok(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5 })
        .renew("a", "x", "h5", [50, 60], 200, 5)
        .release("a", "x", "h5", [100, 110], 204)
        .acquire("b", "x", [120, 130], 201, { token: 7 })
        .release("b", "x", "h7", [150, 160], 204),
    );
  });

  it("concurrent acquires: the order of their grants is their tokens', not their sends'", () => {
    // a sent first but was granted after b had released: token 9 after token 8.
    ok(
      new Hand()
        .acquire("a", "x", [0, 50], 201, { token: 9 })
        .acquire("b", "x", [10, 20], 201, { token: 8 })
        .release("b", "x", "h8", [25, 30], 204)
        .release("a", "x", "h9", [60, 70], 204),
    );
  });

  it("a release racing the next grant: the release took effect first", () => {
    ok(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5 })
        .release("a", "x", "h5", [100, 140], 204)
        .acquire("b", "x", [110, 120], 201, { token: 7 }),
    );
  });

  it("an expired grant: the next one once its lease can have run out, and the late holder's 410", () => {
    ok(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 2 })
        .acquire("b", "x", [2_000, 2_010], 201, { token: 7, ttl: 2 })
        .release("a", "x", "h5", [2_500, 2_510], 410),
    );
  });

  it("a renew answered 200 keeps the grant: the next one comes after that renew's TTL", () => {
    ok(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 2 })
        .renew("a", "x", "h5", [1_000, 1_010], 200, 5)
        .acquire("b", "x", [2_900, 2_910], 201, { token: 7 }),
    );
  });

  it("a force release ends the holder: the next grant, then the holder's 410", () => {
    ok(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 })
        .force("admin", "x", [500, 510], 204)
        .acquire("b", "x", [600, 610], 201, { token: 7, ttl: 30 })
        .renew("a", "x", "h5", [700, 710], 410)
        .force("admin", "x", [800, 810], 204, 7)
        .force("admin", "x", [900, 910], 404),
    );
  });

  it("inspect shows the holder, or nobody once it released", () => {
    ok(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 })
        .inspect("i", "x", [20, 30], [5])
        .release("a", "x", "h5", [40, 50], 204)
        .inspect("i", "x", [60, 70], []),
    );
  });

  it("a semaphore holds up to its limit", () => {
    const s = { kind: "semaphore" as const, limit: 2, ttl: 30 };
    ok(
      new Hand()
        .acquire("a", "s", [0, 10], 201, { token: 5, ...s })
        .acquire("b", "s", [20, 30], 201, { token: 6, ...s })
        .release("a", "s", "h5", [40, 50], 204, "semaphore")
        .acquire("c", "s", [45, 60], 201, { token: 8, ...s })
        .force("admin", "s", [70, 80], 204, 6, "semaphore")
        .acquire("d", "s", [90, 100], 201, { token: 9, ...s }),
    );
  });

  it("a grant received again by an idempotent retry (200) was made by the first attempt", () => {
    // The first attempt's answer was lost; the lease lives from its send, so the next
    // grant may come 2 s after it (not after the retry).
    ok(
      new Hand()
        .acquire("a", "x", [0], "info", { key: "k1", ttl: 2 })
        .acquire("a", "x", [500, 510], 200, { token: 5, key: "k1", ttl: 2 })
        .acquire("b", "x", [1_900, 1_910], 201, { token: 7 }),
    );
  });
});

describe("the model checker: each kind of violation is found", () => {
  it("two holders of a lock at once", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 })
        .acquire("b", "x", [100, 110], 201, { token: 7, ttl: 30 }),
      /the lock was held by a's grant \(token 5/,
    );
  });

  it("more holders of a semaphore than its limit", () => {
    const s = { kind: "semaphore" as const, limit: 2, ttl: 30 };
    fails(
      new Hand()
        .acquire("a", "s", [0, 10], 201, { token: 5, ...s })
        .acquire("b", "s", [20, 30], 201, { token: 6, ...s })
        .acquire("c", "s", [40, 50], 201, { token: 8, ...s }),
      /all 2 places were held/,
    );
  });

  it("a token that does not increase", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 10 })
        .release("a", "x", "h10", [20, 30], 204)
        .acquire("b", "x", [40, 50], 201, { token: 9 }),
      /token is not larger than the last grant's \(10\)/,
    );
  });

  it("a grant while the holder's lease was provably live (an early end)", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 2 })
        .acquire("b", "x", [1_500, 1_510], 201, { token: 7, ttl: 2 }),
      /provably live until 1\.800 s/,
    );
  });

  it("a renew answered 410 while the lease was provably live", () => {
    fails(
      new Hand().acquire("a", "x", [0, 10], 201, { token: 5, ttl: 2 }).renew("a", "x", "h5", [500, 510], 410),
      /still held, with no release, force release or expiry possible/,
    );
  });

  it("a release answered 204 after the grant had ended (the caller did not hold it until then)", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 2 })
        .acquire("b", "x", [2_500, 2_510], 201, { token: 7 })
        .release("a", "x", "h5", [2_600, 2_610], 204),
      /a 204 says the caller held it until then/,
    );
  });

  it("a force release answered 204 inside a hold that then released cleanly", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 })
        .force("admin", "x", [100, 110], 204)
        .release("a", "x", "h5", [200, 210], 204),
      /a 204 says the caller held it until then/,
    );
  });

  it("a renew answered 200 after a force release had ended the grant", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 })
        .force("admin", "x", [100, 110], 204)
        .renew("a", "x", "h5", [200, 210], 200, 5),
      /had ended/,
    );
  });

  it("a force release answered 204 with nobody holding, and 404 with a holder", () => {
    fails(new Hand().force("admin", "x", [100, 110], 204), /nobody held it/);
    fails(
      new Hand().acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 }).force("admin", "x", [100, 110], 404),
      /a 404 says nobody held it/,
    );
  });

  it("a force release by token that ended a grant that had already ended", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 })
        .release("a", "x", "h5", [20, 30], 204)
        .force("admin", "x", [100, 110], 204, 5),
      /had ended/,
    );
  });

  it("an inspect that shows an ended holder, or misses a live one", () => {
    fails(
      new Hand()
        .acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 })
        .release("a", "x", "h5", [20, 30], 204)
        .inspect("i", "x", [40, 50], [5]),
      /it shows a's grant/,
    );
    fails(
      new Hand().acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 }).inspect("i", "x", [40, 50], []),
      /it does not show a's grant/,
    );
  });
});

describe("the model checker: an operation of unknown outcome may or may not have happened", () => {
  const base = () => new Hand().acquire("a", "x", [0, 10], 201, { token: 5, ttl: 30 });

  it("a release without an answer: the next grant may follow it, or the holder may renew", () => {
    ok(base().release("a", "x", "h5", [100], "info").acquire("b", "x", [200, 210], 201, { token: 7, ttl: 30 }));
    ok(base().release("a", "x", "h5", [100], "info").renew("a", "x", "h5", [200, 210], 200, 5));
    // Not both: either it released (no renew 200 after), or it did not (no grant before expiry).
    fails(
      base()
        .release("a", "x", "h5", [100], "info")
        .acquire("b", "x", [200, 210], 201, { token: 7, ttl: 30 })
        .renew("a", "x", "h5", [300, 310], 200, 5),
      /linearizab|fit/,
    );
  });

  it("a release answered 503 is of unknown outcome too", () => {
    ok(base().release("a", "x", "h5", [100, 110], 503).acquire("b", "x", [200, 210], 201, { token: 7 }));
  });

  it("a force release without an answer: it may have ended the holder, once", () => {
    ok(base().force("admin", "x", [100], "info").acquire("b", "x", [200, 210], 201, { token: 7, ttl: 30 }));
    ok(base().force("admin", "x", [100], "info").release("a", "x", "h5", [200, 210], 204));
    fails(
      base()
        .force("admin", "x", [100], "info")
        .acquire("b", "x", [200, 210], 201, { token: 7, ttl: 30 })
        .acquire("c", "x", [300, 310], 201, { token: 9, ttl: 30 }),
      /the lock was held by b's grant/,
    );
  });

  it("an acquire without an answer may have made a grant nobody received, which a force release then ended", () => {
    ok(new Hand().acquire("a", "x", [0], "info", { ttl: 30 }).force("admin", "x", [100, 110], 204));
    ok(new Hand().acquire("a", "x", [0], "hung up", { ttl: 30 }).force("admin", "x", [100, 110], 204));
    // Sent only after the force release was answered: it cannot explain it.
    fails(
      new Hand().force("admin", "x", [100, 110], 204).acquire("a", "x", [200], "info", { ttl: 30 }),
      /nobody held it/,
    );
    // Or it made none: the lock stays free for the next caller.
    ok(new Hand().acquire("a", "x", [0], "info", { ttl: 30 }).acquire("b", "x", [100, 110], 201, { token: 7 }));
  });
});

describe("the model checker on long simulated histories", () => {
  it("checks 5,000 operations on one lock in well under a second, and finds nothing in a correct service", () => {
    const events = simulate({ seed: 1, ops: 5_000, clients: 8, names: 1 });
    const r = checkModel(events);
    expect(r.violations).toEqual([]);
    expect(r.stats.operations).toBeGreaterThanOrEqual(5_000);
    expect(r.stats.infoOperations).toBeGreaterThan(20);
    // The best of three, so a busy machine's pauses do not decide it (about 50 ms here).
    const best = Math.min(r.stats.ms, ...[1, 2].map(() => checkModel(events).stats.ms));
    expect(best).toBeLessThan(1_000);
  });

  it("checks 20,000 operations on semaphores and locks, correct ones pass", () => {
    for (const [seed, limit] of [
      [2, 1],
      [3, 3],
    ] as const) {
      const events = simulate({ seed, ops: 10_000, clients: 12, names: 3, limit });
      const r = checkModel(events);
      expect(r.violations, `seed ${seed}`).toEqual([]);
      expect(Math.min(r.stats.ms, checkModel(events).stats.ms)).toBeLessThan(2_000);
    }
  });

  it.each([
    ["no-mutex", /held/],
    ["early-expiry", /provably live/],
    ["stale-release", /a 204 says the caller held it until then/],
  ] as const)("finds a simulated service's %s quickly", (broken, why) => {
    const t0 = performance.now();
    const r = checkModel(simulate({ seed: 4, ops: 5_000, clients: 8, names: 2, broken }));
    expect(r.violations.length).toBeGreaterThan(0);
    expect(r.violations.map((v) => v.detail).join("\n")).toMatch(why);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  it("reads back what it wrote: the JSON lines file is the history", () => {
    const events = simulate({ seed: 5, ops: 300, clients: 3, names: 1 });
    const h = new History({ seq: () => 0, now: () => 0 });
    h.events.push(...events);
    const dir = mkdtempSync(join(tmpdir(), "history-"));
    try {
      const path = h.write(join(dir, "h.jsonl"));
      const back = readHistory(path);
      expect(back).toEqual(events);
      expect(checkModel(back).violations).toEqual([]);
      // Handles never reach the file, only their hashes.
      expect(JSON.stringify(back)).not.toMatch(/lease-\d/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
