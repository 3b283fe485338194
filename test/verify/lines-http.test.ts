import { describe } from "vitest";
import { LINE_SCENARIOS } from "../../scripts/verify/scenarios.js";
import { shortForm } from "./short.js";

describe("verify lines (semaphores, fair queue, tickets), short form, JSON gateway transport", () =>
  shortForm("http", LINE_SCENARIOS));
