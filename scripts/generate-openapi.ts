import { writeFileSync } from "node:fs";
import { openApiYaml } from "../src/http/routes/index.js";

// openapi.yaml is generated from the zod route definitions; test/openapi.test.ts fails on drift.
writeFileSync(new URL("../openapi.yaml", import.meta.url), openApiYaml());
console.log("wrote openapi.yaml");
