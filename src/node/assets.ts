import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { AssetReader } from "../http/deps.js";

/** Swagger UI's files straight from the installed `swagger-ui-dist` package. */
export function nodeDocsAssets(): AssetReader {
  const dir = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  const cache = new Map<string, Promise<Uint8Array | undefined>>();
  return (file) => {
    let hit = cache.get(file);
    if (!hit) {
      hit = readFile(join(dir, file)).then(
        (buf) => new Uint8Array(buf),
        () => undefined,
      );
      cache.set(file, hit);
    }
    return hit;
  };
}
