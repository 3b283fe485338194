import { describe } from "vitest";
import { LINE_SCENARIOS } from "../../scripts/verify/scenarios.js";
import { shortForm } from "./short.js";

describe("verify lines (semaphores, fair queue, tickets), short form, JSON gateway transport", () =>
  shortForm(
    "http",
    // Each once per CI run, split between the transports; `npm run verify` runs all on both.
    LINE_SCENARIOS.filter((s) => s.id === "lines-outage" || s.id === "lines-vanish"),
  ));
