import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Test files that run for about a minute each (the verify scenarios, the benchmark's smoke
 * runs), longest first. Started last (a clean clone has no timings, and vitest then orders
 * by file size, which puts these small files at the end), they left one of the two workers
 * idle for the last minute of CI; started first, the short files fill in around them.
 */
const LONG_FIRST: readonly RegExp[] = [
  /test\/verify\/faults-(grpc|http)\.test\.ts$/,
  /test\/verify\/short-(grpc|http)\.test\.ts$/,
  /test\/verify\/(lock-set|leaders|lines)-(grpc|http)\.test\.ts$/,
  /test\/bench\/smoke\.test\.ts$/,
  /test\/verify\/faults-proxy\.test\.ts$/,
  /test\/bench\/[a-z0-9]+-smoke\.test\.ts$/,
];

export class LongFilesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = LONG_FIRST.findIndex((re) => re.test(f.moduleId));
      return i < 0 ? LONG_FIRST.length : i;
    };
    // Array sort is stable: within a rank, vitest's own order (its timings when it has them).
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}
