import type { KeyValue } from "../../src/etcd/types.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import type { TestService } from "../support/service.js";

/** The etcd key of the lock's holder (the oldest participant in its line), if any. */
export async function holderInEtcd(
  svc: Pick<TestService, "direct" | "prefix">,
  name: string,
): Promise<KeyValue | undefined> {
  const { start, end } = new LineKeys(svc.prefix).range({ kind: "lock", name });
  const { kvs } = await svc.direct.range(start, end, 0);
  return kvs.sort((a, b) => a.createRevision - b.createRevision)[0];
}

/**
 * Revokes the etcd lease behind a held lock, behind its holder's back (as an operator,
 * or etcd expiring it, would). Found through the line's keys, whatever the handle looks like.
 */
export async function revokeInEtcd(svc: TestService, name: string): Promise<void> {
  const holder = await holderInEtcd(svc, name);
  if (!holder) throw new Error(`${name} is not held`);
  await svc.direct.leaseRevoke(holder.lease);
}
