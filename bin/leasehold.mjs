#!/usr/bin/env node
// The `leasehold` command. An installed package runs the compiled CLI, dist/cli/main.js
// (built by `npm run build`, which `npm pack` runs first), with plain node. A source
// checkout (src/ beside bin/; the package does not ship it) runs the TypeScript sources
// instead, through tsx, a devDependency, so an edit takes effect without a build and a
// stale dist/ is never what runs.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const source = new URL("../src/cli/main.ts", import.meta.url);
let cli;
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register({ tsconfig: fileURLToPath(new URL("../tsconfig.json", import.meta.url)) });
  ({ cli } = await import(source.href));
} else {
  ({ cli } = await import("../dist/cli/main.js"));
}
await cli(process.argv.slice(2));
