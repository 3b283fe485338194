import { describe, expect, it } from "vitest";
import { EtcdUnavailableError } from "../../src/etcd/types.js";
import { LockHeld } from "../../src/lock/index.js";
import { LineKeys } from "../../src/lock/line-keys.js";
import { fakeLines, leaseOf, lockLine, PREFIX, rejection } from "../unit/support.js";

const keys = new LineKeys(PREFIX);
const markerKey = (name: string) => keys.delayMarker(lockLine(name));

/**
 * Lock-delay under faults a real etcd cannot be made to produce on cue (one of two calls
 * failing, a lease's countdown at a chosen moment): on FakeEtcd, its clock moved by hand.
 */
describe.each([
  { worker: false, how: "Node strategies" },
  { worker: true, how: "Worker strategies" },
])("lock-delay under faults: $how", ({ worker }) => {
  it("a renew whose marker keep-alive fails does not extend the grant past its marker", async () => {
    const { fake, locks } = fakeLines({ worker });
    const { grant } = await locks.acquire("r", { ttl: 10, wait: 0, lockDelay: 5 });
    const marker = fake.peek(markerKey("r"))?.lease;
    expect(marker).toBeDefined();
    fake.advance(8_000);
    fake.failNext("leaseKeepAliveOnce", { match: (id) => id === marker });
    expect(await rejection(locks.renew("r", grant.lease))).toBeInstanceOf(EtcdUnavailableError);
    // Whatever the renew did, the marker is still the delay ahead of the grant...
    const held = fake.lease(leaseOf(grant.lease));
    const kept = fake.lease(marker ?? 0n);
    expect(held && kept && kept.expiresAt - held.expiresAt).toBeGreaterThanOrEqual(5_000);
    // ...so once the grant has expired, the lock is kept back.
    fake.advance((held?.expiresAt ?? 0) - fake.now());
    expect(await locks.inspect("r")).toBeUndefined();
    const refused = await rejection(locks.acquire("r", { ttl: 10, wait: 0 }));
    expect(refused).toBeInstanceOf(LockHeld);
    expect((refused as LockHeld).reason).toBe("lock-delay");
  });
});
