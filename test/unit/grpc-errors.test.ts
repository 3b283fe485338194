import { describe, expect, it } from "vitest";
import { translate } from "../../src/etcd/grpc/codec.js";
import { EtcdUnavailableError } from "../../src/etcd/types.js";

describe("gRPC errors whose outcome is unknown", () => {
  // A connection that failed under a call (a stream reset, a cancelled or unknown status)
  // may or may not have been applied: retryable (503), never a 500 and never "not applied".
  it.each([
    [13, "13 INTERNAL: Received RST_STREAM with code 2"],
    [2, "2 UNKNOWN: unknown error"],
    [1, "1 CANCELLED: Cancelled on client"],
    [14, "14 UNAVAILABLE: No connection established"],
    [4, "4 DEADLINE_EXCEEDED: Deadline exceeded"],
  ])("code %i is EtcdUnavailableError", (code, message) => {
    const err = translate(Object.assign(new Error(message), { code }), "txn");
    expect(err).toBeInstanceOf(EtcdUnavailableError);
  });

  it("an error without a transport code is passed through", () => {
    const err = new Error("something else");
    expect(translate(err, "txn")).toBe(err);
  });
});
