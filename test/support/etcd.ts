import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EtcdClient } from "../../src/etcd/types.js";
import { type LocalEtcd, startLocalEtcd } from "../../src/node/local-etcd.js";

/**
 * Starts a real etcd on free loopback ports with a temp data dir. Throws (never skips)
 * when etcd cannot be started, so a machine without etcd fails the suite loudly.
 */
export async function startTestEtcd(): Promise<LocalEtcd & { destroy(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), "leasehold-etcd-"));
  const etcd = await startLocalEtcd({ dataDir });
  return Object.assign(etcd, {
    destroy: async () => {
      await etcd.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}

/** Counts calls per EtcdClient method, passing everything through to real etcd. */
export function counting(inner: EtcdClient) {
  const calls: Record<string, number> = {};
  const client = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls[String(prop)] = (calls[String(prop)] ?? 0) + 1;
        return value.apply(target, args);
      };
    },
  });
  const reset = () => {
    for (const k of Object.keys(calls)) delete calls[k];
  };
  return { client, calls, reset };
}
