import { describe } from "vitest";
import { LOCK_SCENARIOS } from "../../scripts/verify/scenarios.js";
import { shortForm } from "./short.js";

// Each scenario once per CI run, split between the transports (see short-http.test.ts),
// to keep CI's time; `npm run verify` runs every one on both.
const ids = ["cluster", "instances", "waiters"];
describe("verify, short form, gRPC transport", () =>
  shortForm(
    "grpc",
    LOCK_SCENARIOS.filter((s) => ids.includes(s.id)),
  ));
