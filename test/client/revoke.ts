import type { TestService } from "../support/service.js";

/**
 * Revokes the etcd lease behind a held lock, behind its holder's back (as an operator,
 * or etcd expiring it, would). Found through the key, whatever the handle looks like.
 */
export async function revokeInEtcd(svc: TestService, name: string): Promise<void> {
  const { kv } = await svc.direct.get(svc.prefix + name);
  if (!kv) throw new Error(`${name} is not held`);
  await svc.direct.leaseRevoke(kv.lease);
}
