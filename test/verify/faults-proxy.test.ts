import { afterAll, beforeAll, describe } from "vitest";
import { faultForm } from "./faults.js";

// The fallback for machines without network namespaces, run here whether or not they
// can be made: a partition through a TCP proxy per link.
describe("verify partitions through link proxies, short form", () => {
  const before = process.env.VERIFY_PARTITIONS;
  beforeAll(() => {
    process.env.VERIFY_PARTITIONS = "proxy";
  });
  afterAll(() => {
    if (before === undefined) delete process.env.VERIFY_PARTITIONS;
    else process.env.VERIFY_PARTITIONS = before;
  });
  faultForm("http", ["partition-leader"], { proxies: true });
});
