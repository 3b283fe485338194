import { describe } from "vitest";
import { LOCK_SCENARIOS } from "../../scripts/verify/scenarios.js";
import { shortForm } from "./short.js";

// Each scenario once per CI run, split between the transports (see short-grpc.test.ts),
// to keep CI's time; `npm run verify` runs every one on both.
const ids = ["outage", "vanish", "adversarial"];
describe("verify, short form, JSON gateway transport", () =>
  shortForm(
    "http",
    LOCK_SCENARIOS.filter((s) => ids.includes(s.id)),
  ));
