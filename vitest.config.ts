import { defineConfig } from "vitest/config";
import { LongFilesFirst } from "./test/support/sequencer.js";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll waits for an event (a page update, a lock's release); its default of 1 s
    // is a fixed deadline a loaded two-core machine misses, not a statement about the code.
    expect: { poll: { timeout: 10_000 } },
    // Each file starts its own etcd; two cores gain nothing from more parallel files.
    maxWorkers: 2,
    sequence: { sequencer: LongFilesFirst },
    reporters: ["default", ["json", { outputFile: "test-output/vitest.json" }]],
  },
});
