// Invokes handler.mjs the way a function platform would: N concurrent invocations for
// the same day (default 3), each with its own context. Prints one JSON result a line.
//   npm run build   # in a clone: "leasehold/client" is the compiled client in dist/
//   LEASEHOLD_URL=http://127.0.0.1:8080 node examples/lambda/invoke.mjs 2026-11-21 3
import { randomUUID } from "node:crypto";
import { handler } from "./handler.mjs";

const day = process.argv[2] ?? new Date().toISOString().slice(0, 10);
const n = Number(process.argv[3] ?? 3);
const results = await Promise.all(
  Array.from({ length: n }, () => {
    const deadline = Date.now() + 30_000;
    return handler({ day }, { awsRequestId: randomUUID(), getRemainingTimeInMillis: () => deadline - Date.now() });
  }),
);
for (const r of results) console.log(JSON.stringify({ statusCode: r.statusCode, ...JSON.parse(r.body) }));
