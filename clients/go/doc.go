// Package leasehold is a client for leasehold, an HTTP lock service on etcd with
// fencing tokens. It uses only the standard library.
//
// WithLock runs a function while a lock is held: it acquires (retrying transient
// failures with one Idempotency-Key, so a retry after a lost response gets the same
// grant), renews every ttl/3, cancels the function's context when the lock is lost,
// and releases when the function returns:
//
//	c := leasehold.NewClient("", "") // LEASEHOLD_URL, LEASEHOLD_API_KEY
//	err := c.WithLock(ctx, "report:daily", leasehold.LockOptions{
//		AcquireOptions: leasehold.AcquireOptions{TTL: 30, Wait: 10 * time.Second},
//	}, func(ctx context.Context, held *leasehold.Held) error {
//		return buildReport(ctx, held.Token) // pass the fencing token with every write
//	})
//	if leasehold.IsLockHeld(err) { … }
//
// Every failure the service reports is an *Error carrying its problem code; match it
// with errors.Is and the Err sentinels (errors.Is(err, leasehold.ErrLockHeld)), the Is
// helpers, or errors.As for the details (Status, Holder, RetryAfter, …).
package leasehold
