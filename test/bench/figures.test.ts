import { expect, it } from "vitest";
import { wakeDelays } from "../../scripts/bench/cases.js";
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
