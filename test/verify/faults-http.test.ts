import { describe } from "vitest";
import { faultForm } from "./faults.js";

// Each fault once per CI run, split between the transports (see faults-grpc.test.ts);
// `npm run verify` runs every one on both.
describe("verify faults, short form, JSON gateway transport", () =>
  faultForm("http", ["partition-split", "pause-follower", "membership"]));
