import { describe } from "vitest";
import { LEADER_SCENARIOS } from "../../scripts/verify/scenarios.js";
import { shortForm } from "./short.js";

describe("verify leaders and change feeds, short form, HTTP/JSON transport", () => shortForm("http", LEADER_SCENARIOS));
