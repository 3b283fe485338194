import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient } from "../../src/client/index.js";
import { acquires, startProxy } from "../client/proxy.js";
import { uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

/**
 * Attack: leasehold/client retries an acquire whose answer was lost with the same
 * Idempotency-Key, but sends the *remaining* `wait` each time. The server fingerprints
 * `wait` with the key, so the retry is 422 idempotency-key-mismatch: the caller fails
 * and the grant it was made stays held by nobody until its TTL.
 */
let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc?.stop();
});

it("a withLock/acquire with `wait` whose first answer was lost gets its grant on the retry", async () => {
  const proxy = await startProxy(svc.url);
  try {
    const name = uniqueName("waitretry");
    let dropped = false;
    proxy.plan = (r) => {
      if (r.method === "POST" && r.url === `/locks/${name}` && !dropped) {
        dropped = true;
        return "drop-response";
      }
      return "forward";
    };
    const client = createClient({ url: proxy.url });
    const outcome = await client.acquire(name, { ttl: 10, wait: 5 }).then(
      (g) => ({ ok: true as const, g }),
      (e: { code?: string }) => ({ ok: false as const, code: e.code }),
    );
    const tries = acquires(proxy).filter((s) => s.url === `/locks/${name}`);
    // Evidence: the two attempts' bodies differ in `wait`, and the second was refused.
    const bodies = tries.map((t) => t.body);
    const statuses = tries.map((t) => t.answer?.status);
    expect(outcome, `bodies ${JSON.stringify(bodies)} answered ${JSON.stringify(statuses)}`).toMatchObject({
      ok: true,
    });
    if (outcome.ok) await client.release(name, outcome.g.lease);
  } finally {
    await proxy.stop();
  }
});
