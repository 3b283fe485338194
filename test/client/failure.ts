import { expect } from "vitest";
import { LeaseholdError } from "../../src/client/index.js";

/** The LeaseholdError a promise rejects with (failing the test when it resolves or rejects otherwise). */
export async function failure(p: Promise<unknown>): Promise<LeaseholdError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LeaseholdError);
  return err as LeaseholdError;
}
