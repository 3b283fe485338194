import { describe } from "vitest";
import { shortForm } from "./short.js";

describe("verify, short form, gRPC transport", () => shortForm("grpc"));
