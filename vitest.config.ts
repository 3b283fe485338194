import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each file starts its own etcd; two cores gain nothing from more parallel files.
    maxWorkers: 2,
    reporters: ["default", ["json", { outputFile: "test-output/vitest.json" }]],
  },
});
