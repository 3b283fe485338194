import { Problem } from "../../problems.js";

/** The lease handle from the body and/or `?lease=`; when both are given they must match. */
export function requiredLease(fromBody: string | undefined, fromQuery: string | undefined): string {
  const lease = handleFrom("lease", fromBody, fromQuery);
  if (lease === undefined) {
    throw new Problem("invalid-request", 'lease is required: send {"lease": "…"} or ?lease=…');
  }
  return lease;
}

/**
 * A secret handle (a lease or a ticket) given in the body and/or the query, in lower case
 * (hex, any case accepted); when both are given they must match.
 */
export function handleFrom(
  field: "lease" | "ticket",
  fromBody: string | undefined,
  fromQuery: string | undefined,
): string | undefined {
  const a = fromBody?.toLowerCase();
  const b = fromQuery?.toLowerCase();
  if (a !== undefined && b !== undefined && a !== b) {
    throw new Problem("invalid-request", `the ${field} in the body and the ${field} in the query differ`);
  }
  return a ?? b;
}
