import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
