#!/usr/bin/env node
// The `leasehold` command. The package runs from its TypeScript sources, so this shim
// registers tsx (a runtime dependency) with the package's own tsconfig, then runs
// src/cli/main.ts.
import { fileURLToPath } from "node:url";
import { register } from "tsx/esm/api";

register({ tsconfig: fileURLToPath(new URL("../tsconfig.json", import.meta.url)) });
const { cli } = await import("../src/cli/main.ts");
await cli(process.argv.slice(2));
