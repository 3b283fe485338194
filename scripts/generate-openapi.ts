import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { openApiYaml } from "../src/http/routes/index.js";

// openapi.yaml is generated from the zod route definitions, and the client test project's
// types from openapi.yaml; test/openapi.test.ts and test/openapi-tools.test.ts fail on drift.
const root = fileURLToPath(new URL("..", import.meta.url));
writeFileSync(join(root, "openapi.yaml"), openApiYaml());
console.log("wrote openapi.yaml");

// openapi-typescript lives in the client project (it needs TypeScript 5's compiler API), and
// runs there as a user would: with its own lint settings, not the repository's redocly.yaml.
const project = join(root, "test/openapi-client");
const cli = join(
  dirname(createRequire(join(project, "package.json")).resolve("openapi-typescript/package.json")),
  "bin/cli.js",
);
execFileSync(process.execPath, [cli, "../../openapi.yaml", "-o", "schema.d.ts"], { cwd: project, stdio: "inherit" });
