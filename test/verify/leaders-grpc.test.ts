import { describe } from "vitest";
import { LEADER_SCENARIOS } from "../../scripts/verify/scenarios.js";
import { shortForm } from "./short.js";

describe("verify leaders and change feeds, short form, gRPC transport", () => shortForm("grpc", LEADER_SCENARIOS));
