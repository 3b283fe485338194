package leasehold_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	leasehold "github.com/leasehold/leasehold/clients/go"
)

// The fencing calls against the real service: the fence check, guarded state (on the
// client, on semaphores and on a held lock) and lock-delay.

func TestFence(t *testing.T) {
	_, ctx, c, name := begin(t, "fence")
	a, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 30})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	expectFence := func(token int64, want bool) {
		t.Helper()
		if got, err := c.Fence(ctx, name, token); err != nil || got != want {
			t.Fatalf("Fence(%d) = %v, %v; want %v", token, got, err, want)
		}
	}
	expectFence(a.Token, true)
	if err := c.Release(ctx, name, a.Lease); err != nil {
		t.Fatalf("release: %v", err)
	}
	expectFence(a.Token, false)
	b, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 30})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	expectFence(a.Token, false)
	expectFence(b.Token, true)
	expectFence(b.Token+1, false)
	// Not being able to ask is an error, never an answer.
	if ok, err := c.Fence(ctx, name, -1); ok || !errors.Is(err, leasehold.ErrInvalidRequest) {
		t.Fatalf("Fence(-1) = %v, %v; want invalid-request", ok, err)
	}
	_ = c.Release(ctx, name, b.Lease)

	sem := c.Semaphore(uniqueName(t, "fence-sem"), 2)
	p, err := sem.Acquire(ctx, leasehold.AcquireOptions{TTL: 30})
	if err != nil {
		t.Fatalf("semaphore acquire: %v", err)
	}
	if ok, err := sem.Fence(ctx, p.Token); !ok || err != nil {
		t.Fatalf("semaphore Fence of a current permit = %v, %v", ok, err)
	}
	_ = sem.Release(ctx, p.Lease)
	if ok, err := sem.Fence(ctx, p.Token); ok || err != nil {
		t.Fatalf("semaphore Fence of a released permit = %v, %v; want false", ok, err)
	}
}

func TestGuardedState(t *testing.T) {
	_, ctx, c, name := begin(t, "state")
	if s, err := c.ReadState(ctx, name); s != nil || err != nil {
		t.Fatalf("ReadState before any write = %+v, %v; want nil, nil", s, err)
	}
	a, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 30})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	written, err := c.WriteState(ctx, name, a.Lease, "run 1 done")
	if err != nil || written.Value != "run 1 done" || written.Token != a.Token || written.Revision <= 0 || written.UpdatedAt.IsZero() {
		t.Fatalf("WriteState = %+v, %v; want the value, token %d, a revision and a time", written, err, a.Token)
	}
	_ = c.Release(ctx, name, a.Lease)
	if s, err := c.ReadState(ctx, name); err != nil || *s != *written {
		t.Fatalf("ReadState after the release = %+v, %v; want %+v", s, err, written)
	}

	b, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 30})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	_, err = c.WriteState(ctx, name, a.Lease, "a, late")
	if e := asError(t, err); e.Status != 410 || !leasehold.IsLockLost(err) || strings.Contains(err.Error(), a.Lease) {
		t.Fatalf("a stale lease's write = %v; want 410 lock-lost without the lease", err)
	}
	if s, _ := c.ReadState(ctx, name); s == nil || *s != *written {
		t.Fatalf("the stale write changed the state: %+v", s)
	}
	_, err = c.WriteState(ctx, name, b.Lease, strings.Repeat("x", 65_537))
	if e := asError(t, err); e.Status != 413 || e.Code != leasehold.CodePayloadTooLarge {
		t.Fatalf("an oversized state = %v; want 413 payload-too-large", err)
	}
	later, err := c.WriteState(ctx, name, b.Lease, "")
	if err != nil || later.Value != "" || later.Token != b.Token || later.Revision <= written.Revision {
		t.Fatalf("the next holder's (empty) write = %+v, %v", later, err)
	}
	_ = c.Release(ctx, name, b.Lease)

	// A semaphore: any current permit writes its one state.
	sem := c.Semaphore(uniqueName(t, "state-sem"), 2)
	p, err := sem.Acquire(ctx, leasehold.AcquireOptions{TTL: 30})
	if err != nil {
		t.Fatalf("semaphore acquire: %v", err)
	}
	if s, err := sem.WriteState(ctx, p.Lease, "from the permit"); err != nil || s.Token != p.Token {
		t.Fatalf("semaphore WriteState = %+v, %v", s, err)
	}
	_ = sem.Release(ctx, p.Lease)
	if _, err := sem.WriteState(ctx, p.Lease, "again"); !leasehold.IsLockLost(err) {
		t.Fatalf("a released permit's write = %v, want lock-lost", err)
	}
	if s, err := sem.ReadState(ctx); err != nil || s == nil || s.Value != "from the permit" {
		t.Fatalf("semaphore ReadState = %+v, %v", s, err)
	}
	if s, err := c.ReadState(ctx, sem.Name()); s != nil || err != nil {
		t.Fatalf("a lock of the semaphore's name has a state of its own: %+v, %v", s, err)
	}
}

func TestHeldFencesAndState(t *testing.T) {
	s, ctx, _, name := begin(t, "held")
	p := startProxy(t, s.url)
	c := leasehold.NewClient(p.URL, s.apiKey)
	stateWrites := func() (n int) {
		for _, r := range p.requests() {
			if r.Method == "PUT" && strings.HasSuffix(r.Path, "/state") {
				n++
			}
		}
		return n
	}
	var cancelled bool
	err := c.WithLock(ctx, name, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{TTL: 30}},
		func(fctx context.Context, held *leasehold.Held) error {
			if ok, err := held.Fence(fctx); !ok || err != nil {
				t.Errorf("held.Fence = %v, %v; want true", ok, err)
			}
			w, err := held.WriteState(fctx, "checkpoint 1")
			if err != nil || w.Token != held.Token {
				t.Errorf("held.WriteState = %+v, %v", w, err)
			}
			if r, err := held.ReadState(fctx); err != nil || r == nil || *r != *w {
				t.Errorf("held.ReadState = %+v, %v; want %+v", r, err, w)
			}
			if err := s.admin().ForceRelease(fctx, name); err != nil {
				t.Errorf("force release: %v", err)
			}
			_, err = held.WriteState(fctx, "too late")
			if !leasehold.IsLockLost(err) || !errors.Is(held.Err(), leasehold.ErrLockLost) {
				t.Errorf("a write after the force = %v (held.Err %v); want lock-lost, and the lock lost", err, held.Err())
			}
			select {
			case <-fctx.Done():
				cancelled = true
			case <-time.After(5 * time.Second):
			}
			sent := stateWrites()
			if _, err := held.WriteState(fctx, "later still"); !leasehold.IsLockLost(err) || stateWrites() != sent {
				t.Errorf("a write once lost = %v, sent: %v; want lock-lost, unsent", err, stateWrites() != sent)
			}
			if ok, err := held.Fence(fctx); ok || err != nil {
				t.Errorf("held.Fence once lost = %v, %v; want false", ok, err)
			}
			return nil
		})
	if err != nil || !cancelled {
		t.Fatalf("WithLock = %v (fn's ctx cancelled by the refused write: %v)", err, cancelled)
	}
	if st, err := c.ReadState(ctx, name); err != nil || st == nil || st.Value != "checkpoint 1" {
		t.Fatalf("state after the refused write = %+v, %v; want checkpoint 1", st, err)
	}

	// A stale fence check of its own token counts as losing the lock.
	name2 := uniqueName(t, "held-fence")
	err = c.WithLock(ctx, name2, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{TTL: 30}},
		func(fctx context.Context, held *leasehold.Held) error {
			if err := s.admin().ForceRelease(fctx, name2); err != nil {
				return err
			}
			if ok, err := held.Fence(fctx); ok || err != nil {
				t.Errorf("held.Fence after the force = %v, %v; want false", ok, err)
			}
			<-fctx.Done()
			return fctx.Err()
		})
	if !leasehold.IsLockLost(err) {
		t.Fatalf("WithLock after a stale fence = %v, want lock-lost", err)
	}
}

func TestLockDelay(t *testing.T) {
	s, ctx, c, name := begin(t, "delay")
	admin := s.admin()
	expectDelayed := func(name string) {
		t.Helper()
		_, err := c.Acquire(ctx, name, leasehold.AcquireOptions{})
		e := asError(t, err)
		if !leasehold.IsLockHeld(err) || e.Reason != "lock-delay" || e.Holder != nil || e.RetryAfter < time.Second {
			t.Fatalf("acquire in the lock-delay = %v (reason %q, holder %+v, retry after %s); want lock-held, reason lock-delay, no holder, Retry-After ≥ 1 s",
				err, e.Reason, e.Holder, e.RetryAfter)
		}
	}

	a, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 30, LockDelay: 3})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	if err := admin.ForceRelease(ctx, name); err != nil {
		t.Fatalf("force release: %v", err)
	}
	expectDelayed(name)
	// A waiting WithLock gets it once the delay is over.
	var token int64
	if err := c.WithLock(ctx, name, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{Wait: 20 * time.Second}},
		func(_ context.Context, held *leasehold.Held) error { token = held.Token; return nil }); err != nil || token <= a.Token {
		t.Fatalf("WithLock waiting out the delay = %v, token %d (before %d)", err, token, a.Token)
	}

	// A WithLock in line sends it with its join too.
	queued := uniqueName(t, "delay-queue")
	if err := c.WithLock(ctx, queued, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{LockDelay: 5}, Queue: true},
		func(fctx context.Context, _ *leasehold.Held) error { return admin.ForceRelease(fctx, queued) }); err != nil {
		t.Fatalf("WithLock in line: %v", err)
	}
	expectDelayed(queued)
}
