import type { Context } from "hono";
import { Problem } from "../../problems.js";
import { readBody } from "../body.js";
import { LeaseBody } from "../schemas.js";

/** The lease handle from the body and/or `?lease=`; when both are given they must match. */
export async function leaseFrom(c: Context, fromQuery: string | undefined): Promise<string> {
  const body = await readBody(c, LeaseBody);
  const a = body.lease?.toLowerCase();
  const b = fromQuery?.toLowerCase();
  if (a !== undefined && b !== undefined && a !== b) {
    throw new Problem("invalid-request", "the lease in the body and the lease in the query differ");
  }
  const lease = a ?? b;
  if (lease === undefined) {
    throw new Problem("invalid-request", 'lease is required: send {"lease": "…"} or ?lease=…');
  }
  return lease;
}
