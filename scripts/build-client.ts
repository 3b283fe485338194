/**
 * Builds the TypeScript client (src/client) into the two places it is published from:
 * clients/typescript/dist, the `leasehold-client` package (the client alone, no
 * dependencies), and dist/client, which the `leasehold` package exports as
 * `leasehold/client`. Each module becomes one ES module (esbuild, ES2022, nothing
 * bundled) and one declaration file (tsc with clients/typescript/tsconfig.json).
 *
 * The build fails when the client reaches outside src/client, so neither package can
 * pull in server code or a dependency: a value import is caught by esbuild's bundling
 * pass, a type import of a source file by tsc's `rootDir`, and an import of a package
 * (types included) by the check of every import the emitted files make.
 */
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { build } from "esbuild";

const repo = new URL("..", import.meta.url).pathname;

/** Builds the client into both packages; returns the file names written to each. */
export async function buildClient(root = repo): Promise<string[]> {
  const source = join(root, "src", "client");
  const out = mkdtempSync(join(tmpdir(), "leasehold-client-build-"));
  try {
    // Bundled only to learn the module graph: every module the client runs must be its own.
    const graph = await build({
      absWorkingDir: root,
      entryPoints: [join(source, "index.ts")],
      bundle: true,
      platform: "neutral",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const modules = Object.keys(graph.metafile.inputs).map((p) => join(root, p));
    const outside = modules.filter((p) => dirname(p) !== source);
    if (outside.length > 0) {
      throw new Error(`the client imports modules outside src/client: ${outside.map((p) => relative(root, p))}`);
    }
    await build({
      absWorkingDir: root,
      entryPoints: modules,
      outdir: out,
      outbase: source,
      platform: "neutral",
      format: "esm",
      target: "es2022",
      logLevel: "warning",
    });
    const tsc = join(dirname(createRequire(import.meta.url).resolve("typescript/package.json")), "bin", "tsc");
    const project = join(root, "clients", "typescript", "tsconfig.json");
    const checked = spawnSync(process.execPath, [tsc, "-p", project, "--outDir", out, "--noEmitOnError"], {
      encoding: "utf8",
    });
    if (checked.status !== 0)
      throw new Error(`tsc -p ${relative(root, project)} failed:\n${checked.stdout}${checked.stderr}`);

    const files = readdirSync(out).sort();
    checkSelfContained(out, files);
    for (const target of [join(root, "clients", "typescript", "dist"), join(root, "dist", "client")]) {
      install(out, files, target);
    }
    // The license travels with the package (npm packs LICENSE from the package's directory).
    copyFileSync(join(root, "LICENSE"), join(root, "clients", "typescript", "LICENSE"));
    return files;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/**
 * Each module must have its declarations (a module of types only has nothing else), and
 * every import in the emitted files must be a sibling that was emitted: nothing from a
 * package, nothing from the server.
 */
function checkSelfContained(out: string, files: string[]): void {
  const names = new Set(files);
  const problems: string[] = [];
  for (const file of files) {
    if (file.endsWith(".js") && !names.has(file.replace(/\.js$/, ".d.ts"))) problems.push(`${file} has no .d.ts`);
    const text = readFileSync(join(out, file), "utf8");
    for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g)) {
      const spec = m[1] ?? "";
      const target = spec.startsWith("./")
        ? spec.slice(2).replace(/\.js$/, file.endsWith(".d.ts") ? ".d.ts" : ".js")
        : "";
      if (!names.has(target)) problems.push(`${file} imports ${JSON.stringify(spec)}`);
    }
  }
  if (problems.length > 0) throw new Error(`the built client is not self-contained:\n${problems.join("\n")}`);
}

/**
 * Puts the files in `target`, each under a temporary name renamed into place (a process
 * loading the client meanwhile never reads half a file), and removes what an earlier
 * build left there that this one did not write.
 */
function install(from: string, files: string[], target: string): void {
  mkdirSync(target, { recursive: true });
  const temp = `.tmp-${process.pid}-${Date.now().toString(36)}`;
  for (const file of files) writeFileSync(join(target, file + temp), readFileSync(join(from, file)));
  for (const file of files) renameSync(join(target, file + temp), join(target, file));
  const written = new Set(files);
  for (const name of readdirSync(target)) {
    if (!written.has(name) && !name.includes(".tmp-")) rmSync(join(target, name), { recursive: true, force: true });
  }
}

if (process.argv[1] && relative(repo, process.argv[1]) === join("scripts", "build-client.ts")) {
  const files = await buildClient();
  console.log(`built the client (${files.length} files) into clients/typescript/dist and dist/client`);
}
