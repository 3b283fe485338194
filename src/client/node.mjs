// leasehold/client for JavaScript on Node. The package ships TypeScript sources; this
// entry loads them through tsx (a dependency of leasehold) in a private namespace, so
// how the rest of the program is loaded does not change. Bundlers, Bun and TypeScript
// resolve "leasehold/client" to src/client/index.ts instead (see package.json "exports").
import { tsImport } from "tsx/esm/api";

const client = await tsImport("./index.ts", {
  parentURL: import.meta.url,
  tsconfig: new URL("../../tsconfig.json", import.meta.url).pathname,
});

export const {
  DEFAULT_URL,
  LeaseholdClient,
  LeaseholdError,
  Semaphore,
  campaign,
  createClient,
  observe,
  withLock,
  withPermit,
} = client;
