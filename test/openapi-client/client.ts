import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

/**
 * A lock's life through a client generated from openapi.yaml (openapi-typescript's
 * `paths`, called with openapi-fetch), written as a user of those tools would write it:
 * acquire, check the fence, renew, release; and the refusals a second caller meets.
 * Every answer is typed by openapi.yaml alone: `grant.token` is a number, the fence
 * check's `token` parameter takes one, a 409's `code` is one of the codes listed for it.
 */
export async function lockLife(baseUrl: string, name: string, apiKey: string) {
  const client = createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${apiKey}` } });
  const path = { name };

  const acquired = await client.POST("/locks/{name}", {
    params: { path },
    body: { ttl: 30, owner: "openapi-fetch", value: "generated" },
  });
  // 201 (or 200, a retry's replay) is a grant; 202 a place in line, only with `queue: true`.
  if (!acquired.data || !("lease" in acquired.data)) {
    throw new Error(`acquire: ${acquired.response.status} ${JSON.stringify(acquired.error ?? acquired.data)}`);
  }
  const grant = acquired.data;

  const contended = await client.POST("/locks/{name}", { params: { path }, body: { ttl: 30 } });
  if (contended.error?.code !== "lock-held") throw new Error(`a second acquire: ${contended.response.status}`);
  const heldUntil = contended.error.holder?.expiresAt;

  const fence = await client.GET("/locks/{name}/fence", { params: { path, query: { token: grant.token } } });
  if (fence.data?.current !== true) throw new Error(`fence: ${fence.response.status}`);

  const renewed = await client.PUT("/locks/{name}/renew", {
    params: { path },
    body: { lease: grant.lease, value: "renewed" },
  });
  if (!renewed.data) throw new Error(`renew: ${renewed.response.status} ${JSON.stringify(renewed.error)}`);

  // The lease in the body of a POST: not in a URL (access logs), nor in a DELETE's body.
  const released = await client.POST("/locks/{name}/release", { params: { path }, body: { lease: grant.lease } });
  if (released.error) throw new Error(`release: ${released.response.status}`);

  const again = await client.PUT("/locks/{name}/renew", { params: { path }, body: { lease: grant.lease } });
  // openapi-fetch types `error` as any of the renew's problems; the status and code name which.
  const lost = again.response.status === 410 && again.error?.code === "lock-lost";

  return {
    grant,
    heldUntil,
    renewed: renewed.data,
    releasedStatus: released.response.status,
    lost,
  };
}

/** What the generated types refuse: type-checked, never run. */
export function refusedByTheTypes(baseUrl: string): void {
  const client = createClient<paths>({ baseUrl });
  const path = { name: "n" };
  // @ts-expect-error ttl is a number of seconds, not a string
  void client.POST("/locks/{name}", { params: { path }, body: { ttl: "30" } });
  // @ts-expect-error the fence check needs the token it checks
  void client.GET("/locks/{name}/fence", { params: { path, query: {} } });
  // @ts-expect-error no such route
  void client.GET("/lock/{name}", { params: { path } });
  void client.POST("/semaphores/{name}", { params: { path }, body: { limit: 2 } }).then(({ error }) => {
    // @ts-expect-error an acquire's problems carry only the codes openapi.yaml lists for it
    return error?.code === "no-such-code";
  });
}
