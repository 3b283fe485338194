import { describe } from "vitest";
import { shortForm } from "./short.js";

describe("verify, short form, JSON gateway transport", () => shortForm("http"));
