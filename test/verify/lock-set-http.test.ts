import { describe } from "vitest";
import { SET_SCENARIOS } from "../../scripts/verify/scenarios.js";
import { shortForm } from "./short.js";

describe("verify lock-set (guarded state; and without guards), short form, JSON gateway transport", () =>
  shortForm("http", SET_SCENARIOS));
