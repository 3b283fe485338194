/**
 * The production build (`npm run build`): the Node service, src/node/main.ts, bundled
 * by esbuild into ES modules under dist/ that plain `node` runs: dist/main.js, plus
 * chunks for what main.js imports lazily (each etcd transport with its libraries), and
 * source maps. npm packages stay imports resolved from node_modules. `npm run
 * start:prod` runs it. Running the TypeScript through tsx instead (`npm start`) costs
 * about 25 MB of memory for tsx's loader and caches (see BENCHMARKS.md).
 */
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { build } from "esbuild";

const repo = new URL("..", import.meta.url).pathname;

/**
 * Builds `root`'s service into `outdir` and returns the entry's path. Files are written
 * under temporary names and renamed into place, main.js last, so a process starting
 * meanwhile (a test, the bench) never loads half a build; chunks from earlier builds
 * that this one does not use are removed.
 */
export async function buildService(root = repo, outdir = join(root, "dist")): Promise<string> {
  const result = await build({
    absWorkingDir: root,
    entryPoints: { main: join(root, "src", "node", "main.ts") },
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
  // What main.js loads first (chunks, source maps), main.js itself last.
  const order = [...files.filter((f) => f.path !== entry), ...files.filter((f) => f.path === entry)];
  mkdirSync(join(outdir, "chunks"), { recursive: true });
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
  console.log(`built ${relative(process.cwd(), entry) || entry}`);
}
