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
    if (new URL(request.url).searchParams.has("observe")) return Response.json(await observed(client, name));
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

/**
 * observe and campaign inside workerd: the event stream read with the Workers fetch, a
 * campaign that publishes a value and proclaims another.
 */
async function observed(client: ReturnType<typeof createClient>, name: string) {
  const stream = client.observe(name);
  const events: string[] = [];
  let started: () => void = () => {};
  const reset = new Promise<void>((resolve) => {
    started = resolve;
  });
  const reading = (async () => {
    for await (const e of stream) {
      events.push(e.type === "reset" ? "reset" : `${e.type}${e.type === "held" && e.value ? ` ${e.value}` : ""}`);
      started();
      if (events.length === 4) break;
    }
  })();
  // Campaign once the stream is open, so that it sees every change.
  await reset;
  const token = await client.campaign(
    name,
    "one",
    async (_signal, leader) => {
      await leader.proclaim("two");
      return leader.token;
    },
    { ttl: 5 },
  );
  await reading;
  return { token, events, lastEventId: stream.lastEventId };
}
