package leasehold_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	leasehold "github.com/leasehold/leasehold/clients/go"
)

// buildReport stands for the work the lock protects.
func buildReport(ctx context.Context, fence int64) error { return ctx.Err() }

// The README's first example: compiled by go vet and go test, so it stays true.
func ExampleClient_WithLock() {
	c := leasehold.NewClient("", "") // LEASEHOLD_URL, LEASEHOLD_API_KEY
	err := c.WithLock(context.Background(), "report:daily", leasehold.LockOptions{
		AcquireOptions: leasehold.AcquireOptions{TTL: 30, Wait: 10 * time.Second, Owner: "host-a"},
	}, func(ctx context.Context, held *leasehold.Held) error {
		// ctx is cancelled if the lock is lost: stop, and don't write. Pass held.Token
		// with every write to what the lock protects.
		return buildReport(ctx, held.Token)
	})
	var e *leasehold.Error
	switch {
	case errors.Is(err, leasehold.ErrLockHeld) && errors.As(err, &e) && e.Holder != nil:
		fmt.Printf("busy: %s holds it (token %d), retry in %s\n", e.Holder.Owner, e.Holder.Token, e.RetryAfter)
	case leasehold.IsLost(err):
		log.Printf("lost the lock midway: %v", err)
	case err != nil:
		log.Fatal(err)
	}
}

// Single calls: the caller renews and releases.
func ExampleClient_Acquire() {
	ctx := context.Background()
	c := leasehold.NewClient("http://127.0.0.1:8080", "my-key")
	g, err := c.Acquire(ctx, "cron:job9", leasehold.AcquireOptions{TTL: 30})
	if err != nil {
		log.Fatal(err)
	}
	// … work, passing g.Token to what the lock protects; renew within the TTL:
	if _, err := c.Renew(ctx, "cron:job9", g.Lease); err != nil {
		log.Fatal(err) // leasehold.IsLockLost(err): it is no longer yours
	}
	if err := c.Release(ctx, "cron:job9", g.Lease); err != nil {
		log.Fatal(err)
	}
}
