/**
 * The production build (`npm run build`, and `npm pack` through `prepack`): the Node
 * service, src/node/main.ts, bundled by esbuild into ES modules under dist/ that plain
 * `node` runs: dist/main.js, plus chunks for what main.js imports lazily (each etcd
 * transport with its libraries), and source maps; the `leasehold` command,
 * src/cli/main.ts, into dist/cli/main.js (sharing those chunks; `serve` imports
 * dist/main.js); and the client (scripts/build-client.ts). npm packages stay imports
 * resolved from node_modules. `npm run start:prod` runs the service. Running the
 * TypeScript through tsx instead (`npm start`) costs about 25 MB of memory for tsx's
 * loader and caches (see BENCHMARKS.md).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { build } from "esbuild";
import { buildClient } from "./build-client.js";

const repo = new URL("..", import.meta.url).pathname;

/**
 * Builds `root`'s service into `outdir` and returns the entry's path. Files are written
 * under temporary names and renamed into place, the entries last, so a process starting
 * meanwhile (a test, the bench) never loads half a build; chunks from earlier builds
 * that this one does not use are removed.
 */
export async function buildService(root = repo, outdir = join(root, "dist")): Promise<string> {
  const cli = join(root, "src", "cli", "main.ts");
  const result = await build({
    absWorkingDir: root,
    entryPoints: {
      main: join(root, "src", "node", "main.ts"),
      // At the depth of its source, so its `../../package.json` (for --version) is the
      // package's. Older checkouts the bench builds have no CLI.
      ...(existsSync(cli) ? { "cli/main": cli } : {}),
    },
    outdir,
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "linked",
    write: false,
    logLevel: "warning",
  });
  const entry = join(outdir, "main.js");
  const temp = `.tmp-${process.pid}-${Date.now().toString(36)}`;
  const files = result.outputFiles;
  // What the entries load first (chunks, source maps), the entries themselves last.
  const entries = new Set([join(outdir, "cli", "main.js"), entry]);
  const order = [...files.filter((f) => !entries.has(f.path)), ...files.filter((f) => entries.has(f.path))];
  mkdirSync(join(outdir, "chunks"), { recursive: true });
  for (const f of order) mkdirSync(dirname(f.path), { recursive: true });
  for (const f of order) writeFileSync(f.path + temp, f.contents);
  for (const f of order) renameSync(f.path + temp, f.path);
  const written = new Set(files.map((f) => f.path));
  for (const name of readdirSync(join(outdir, "chunks"))) {
    const path = join(outdir, "chunks", name);
    if (!written.has(path) && !name.includes(".tmp-")) rmSync(path, { force: true });
  }
  return entry;
}

if (process.argv[1] && relative(repo, process.argv[1]) === join("scripts", "build.ts")) {
  const entry = await buildService();
  await buildClient();
  console.log(`built ${relative(process.cwd(), entry) || entry}, dist/cli/main.js and the client`);
}
