import { createClient, LeaseholdError, withLock } from "../../../src/client/index.js";

/**
 * Runs withLock inside workerd against the service at env.LEASEHOLD_URL and reports
 * what it saw: the client must work with nothing but the Workers runtime.
 */
export default {
  async fetch(request: Request, env: { LEASEHOLD_URL: string }): Promise<Response> {
    const url = env.LEASEHOLD_URL;
    const name = new URL(request.url).searchParams.get("name") ?? "worker:check";
    const client = createClient({ url });
    const expiries = new Set<string>();
    const seen = await withLock(
      name,
      async (lock) => {
        const other = await client.acquire(name, { retryMs: 0 }).then(
          () => "acquired",
          (err: unknown) => (err instanceof LeaseholdError ? err.code : String(err)),
        );
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, 250));
          expiries.add(lock.grant.expiresAt);
        }
        return {
          token: lock.token,
          other,
          aborted: lock.signal.aborted,
          inspected: (await client.inspect(name))?.token,
        };
      },
      { url, ttl: 2 },
    );
    return Response.json({ ...seen, renewals: expiries.size - 1, after: (await client.inspect(name)) ?? null });
  },
};
