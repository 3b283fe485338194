/**
 * Holder validity: until when the holder of a grant may act on it, by its own clock.
 *
 * etcd starts a lease's countdown of `ttl` seconds when it grants or renews the lease,
 * which is after the holder sent the request: counted from the send time, the lease
 * cannot end before `sentAt + ttl`, however slow the network was. What can still make
 * the holder's count wrong, and what the margin subtracted from it covers:
 *
 * - **Clock rate.** The holder counts the ttl on its clock, etcd's leader on its own; if
 *   the leader's runs faster than the holder's, the lease ends sooner than the holder
 *   counts. `MARGIN_RATE` allows a combined rate difference of 5 %: a hundred times the
 *   500 ppm an NTP daemon lets the kernel slew a clock, with room for virtual machines
 *   that drift without one. (Offsets between the two clocks don't matter: nothing
 *   compares a time from one with a time from the other.) A host whose clock is pulled in
 *   faster (chrony slews at up to 8 % to correct a large offset) needs a larger margin.
 * - **Scheduling and the network.** A timer fires late on a busy host, a signal takes a
 *   moment to land, and a write started just before the deadline reaches the resource a
 *   little later: `MARGIN_FIXED_MS`, 0.5 s.
 *
 * Needing no margin: when etcd elects a new leader (or restarts), every lease's countdown
 * starts again from its full ttl. That lengthens leases, never shortens them: others wait
 * longer for the lock, while the holder's own deadline stays on the safe side.
 *
 * Beyond any margin: a holder paused (a GC pause, a stopped VM) between looking at its
 * deadline and acting. Only the fencing token, checked by the resource, covers that.
 */

/** The share of the ttl allowed for the clock-rate difference between a holder and etcd's leader. */
export const MARGIN_RATE = 0.05;

/** Milliseconds allowed for scheduling and the network: late timers, a write in flight. */
export const MARGIN_FIXED_MS = 500;

/**
 * The safety margin (ms) a holder subtracts from a grant of `ttl` seconds: 5 % of the
 * ttl + 0.5 s (2 s at ttl 30, 0.6 s at ttl 2). The holder may act until
 * `sentAt + ttl − margin`, where `sentAt` is the send time (its own clock) of the last
 * acquire or renew that succeeded.
 */
export function holderMarginMs(ttl: number): number {
  return ttl * 1000 * MARGIN_RATE + MARGIN_FIXED_MS;
}

/**
 * Until when (epoch ms, this machine's clock) the holder may act on a grant of `ttl`
 * seconds whose acquire or renew was sent at `sentAt`: `sentAt + ttl − margin`, with
 * `holderMarginMs(ttl)` unless `marginMs` is given.
 */
export function holderValidUntil(sentAt: number, ttl: number, marginMs: number = holderMarginMs(ttl)): number {
  return sentAt + ttl * 1000 - marginMs;
}
