import { expect, it } from "vitest";
import { maxHolders, outOfOrder, wakeDelays } from "../../scripts/bench/cases.js";
import { median, percentile } from "../../scripts/bench/stats.js";

it("pairs each grant with the previous holder's release by token, not by arrival", () => {
  // Token 7's grant arrived before token 5's release answer: that delay counts as 0.
  const delays = wakeDelays([
    [
      { token: 9, grantedAt: 130, releasedAt: 140 },
      { token: 5, grantedAt: 100, releasedAt: 112 },
      { token: 7, grantedAt: 111, releasedAt: 125 },
    ],
    [{ token: 3, grantedAt: 50 }],
  ]);
  expect(delays).toEqual([0, 5]);
});

it("skips a grant whose predecessor never answered its release", () => {
  expect(
    wakeDelays([
      [
        { token: 1, grantedAt: 0 },
        { token: 2, grantedAt: 10, releasedAt: 11 },
      ],
    ]),
  ).toEqual([]);
});

it("nearest-rank percentiles and medians", () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  expect(percentile(sorted, 50)).toBe(50);
  expect(percentile(sorted, 99)).toBe(99);
  expect(percentile([4], 99)).toBe(4);
  expect(median([3, 1, 2])).toBe(2);
  expect(median([4, 1, 3, 2])).toBe(2.5);
  expect(median([])).toBeUndefined();
});

it("counts a grant served after a later joiner as out of order, per name, in the order the grants arrived", () => {
  const g = (name: string, joined: number | undefined, grantedAt: number) => ({
    name,
    sentAt: 0,
    grantedAt,
    ...(joined !== undefined ? { joined } : {}),
  });
  // On "a", 12 joined before 15 but was granted after it; 20 comes after both. "b" is in
  // order on its own even though its joins are lower than a's. The unknown join is skipped.
  expect(
    outOfOrder([
      g("a", 10, 1),
      g("a", 15, 2),
      g("b", 3, 2.5),
      g("a", 12, 3),
      g("a", 20, 4),
      g("b", 4, 5),
      g("b", undefined, 6),
    ]),
  ).toEqual({ outOfOrder: 1, ordered: 6 });
  expect(outOfOrder([g("a", 1, 1), g("a", 2, 2), g("a", 3, 3)])).toEqual({ outOfOrder: 0, ordered: 3 });
});

it("finds the most holders of one name at once; a release sent as the next grant arrives is no overlap", () => {
  const g = (name: string, grantedAt: number, releasingAt?: number) => ({
    name,
    sentAt: 0,
    grantedAt,
    ...(releasingAt !== undefined ? { releasingAt } : {}),
  });
  expect(maxHolders([g("a", 0, 5), g("a", 5, 10), g("a", 10, 15)])).toBe(1);
  expect(maxHolders([g("a", 0, 10), g("a", 2, 4), g("a", 3, 12), g("b", 1, 11), g("a", 11, 13)])).toBe(3);
  // A grant never released (the round ended meanwhile) is left out.
  expect(maxHolders([g("a", 0, 10), g("a", 1)])).toBe(1);
});
