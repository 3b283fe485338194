import { describe } from "vitest";
import { faultForm } from "./faults.js";

// Each fault once per CI run, split between the transports (see faults-http.test.ts);
// `npm run verify` runs every one on both.
describe("verify faults, short form, gRPC transport", () =>
  faultForm("grpc", ["partition-leader", "partition-instance", "pause-leader", "skew"]));
