import { describe } from "vitest";
import { faultForm } from "./faults.js";

// Each fault once per CI run, split between the transports (see faults-http.test.ts);
// `npm run verify` runs every one on both. Not pause-leader: etcd before 3.4.31 and 3.5.13
// (Debian 12 ships 3.4.23) revokes live leases when a paused leader wakes up, so it would
// fail at random (docs/verification.md, "What it found").
describe("verify faults, short form, gRPC transport", () =>
  faultForm("grpc", ["partition-leader", "partition-instance", "pause-instance", "skew"]));
