import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type LeaseholdClient } from "../../src/client/index.js";
import { uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

// Node's fetch (undici) closes the connection after a request whose method expects no
// body (DELETE, GET) but carried one, and fetch has no option to keep it. A client that
// released with DELETE and the lease in the body paid a new TCP connection per release;
// here every cycle must run over the connections the first one opened.
const CYCLES = 20;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc?.stop();
});

/** The TCP connections the service accepted while `fn` ran. */
async function connectionsDuring(fn: () => Promise<void>): Promise<number> {
  const count = svc.connections;
  if (!count) throw new Error("the test service does not count its connections");
  const before = count();
  await fn();
  return count() - before;
}

// At most 2: undici may open a second connection when a request is sent in the same
// tick as the previous answer ends, before that connection is back in its pool.
const FEW = 2;

// As users run it on Node (node:http, src/client/transport.ts), and on Node's global fetch
// (what it uses given a `fetch`, and on every other runtime).
describe.each([
  ["node:http", {}],
  ["Node's fetch", { fetch: (input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init) }],
])("the official client on %s keeps its connection", (_, options) => {
  /** A fresh client, warmed by one call so that the connection it opens first is not counted against the cycles. */
  async function warmClient(): Promise<LeaseholdClient> {
    const client = createClient({ url: svc.url, ...options });
    await client.list({ limit: 1 });
    return client;
  }

  it(`across ${CYCLES} lock acquire and release cycles`, async () => {
    const client = await warmClient();
    const name = uniqueName("conn");
    const opened = await connectionsDuring(async () => {
      for (let i = 0; i < CYCLES; i++) {
        const grant = await client.acquire(name, { ttl: 10 });
        await client.release(name, grant.lease);
      }
    });
    expect(opened).toBeLessThanOrEqual(FEW);
  });

  it(`across ${CYCLES} semaphore acquire and release cycles`, async () => {
    const client = await warmClient();
    const sem = client.semaphore(uniqueName("conn"), 2);
    const opened = await connectionsDuring(async () => {
      for (let i = 0; i < CYCLES; i++) {
        const permit = await sem.acquire({ ttl: 10 });
        await sem.release(permit.lease);
      }
    });
    expect(opened).toBeLessThanOrEqual(FEW);
  });

  it(`across ${CYCLES} places in line taken and left`, async () => {
    const client = await warmClient();
    const name = uniqueName("conn");
    const holder = await client.acquire(name, { ttl: 10 });
    const opened = await connectionsDuring(async () => {
      for (let i = 0; i < CYCLES; i++) {
        const place = await client.acquire(name, { queue: true, ticketTtl: 10 });
        if (!("ticket" in place)) throw new Error("the lock is held: the answer should be a place in line");
        await client.leave(name, place.ticket);
      }
    });
    await client.release(name, holder.lease);
    expect(opened).toBeLessThanOrEqual(FEW);
  });
});
