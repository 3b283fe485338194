import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { openApiYaml } from "../src/http/routes/index.js";

describe("openapi.yaml", () => {
  it("is exactly what the zod route definitions generate (run `npm run openapi` after changing routes)", () => {
    const committed = readFileSync(new URL("../openapi.yaml", import.meta.url), "utf8");
    expect(committed).toBe(openApiYaml());
  });

  it("documents every endpoint of the HTTP contract", () => {
    const doc = parse(openApiYaml());
    expect(Object.keys(doc.paths).sort()).toEqual(
      ["/healthz", "/locks", "/locks/{name}", "/locks/{name}/renew", "/readyz"].sort(),
    );
    expect(Object.keys(doc.paths["/locks/{name}"]).sort()).toEqual(["delete", "get", "post"]);
    const acquire = doc.paths["/locks/{name}"].post;
    expect(Object.keys(acquire.responses)).toEqual(
      expect.arrayContaining(["200", "201", "409", "400", "413", "415", "503"]),
    );
    expect(Object.keys(acquire.requestBody.content).sort()).toEqual([
      "application/json",
      "application/x-www-form-urlencoded",
    ]);
  });
});
