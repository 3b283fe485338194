package leasehold

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// LockOptions are WithLock's (and WithPermit's): an acquire's options, and how the
// lock is held.
type LockOptions struct {
	AcquireOptions
	// Margin is a safety margin: the lock counts as lost at (send time of the last
	// successful acquire or renew) + ttl − Margin. 0 means ttl/10, at most 2 s.
	Margin time.Duration
	// KeepOnExit leaves the lock to expire on its own (one ttl after the last renew)
	// instead of releasing it when fn returns.
	KeepOnExit bool
	// Queue waits in line, served in arrival order, for as long as it takes (or up to
	// Wait when it is not 0) instead of giving up after one request's Wait: it joins the
	// line with a ticket and redeems it with long polls of PollWait until its turn, and
	// leaves the line when it gives up (ctx ended, Wait ran out, or an error).
	Queue bool
	// TicketTTL (with Queue) is how many seconds the service keeps the place between two
	// polls (0: the service's default, 30).
	TicketTTL int
	// PollWait (with Queue) is how long each request in line waits; at most the
	// service's LEASEHOLD_MAX_WAIT. 0 means 20 s.
	PollWait time.Duration
	// OnQueued (with Queue) hears the number of waiters ahead whenever the service reports it.
	OnQueued func(position int)
}

// Held is the lock (or the permit) as WithLock (WithPermit) hands it to fn.
type Held struct {
	Name string
	// Token is the fencing token: pass it with every write to the protected resource.
	Token int64
	// Lease is the holder's secret handle.
	Lease string

	mu         sync.Mutex
	grant      Grant
	validUntil time.Time
	err        error
	h          *holding
}

// String leaves the lease out, so printing a Held does not leak it.
func (h *Held) String() string {
	return fmt.Sprintf("{name:%s token:%d validUntil:%s}", h.Name, h.Token, h.ValidUntil().Format(time.RFC3339Nano))
}

// Grant is the latest grant (renewals update ExpiresAt).
func (h *Held) Grant() Grant {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.grant
}

// ValidUntil is the time (this machine's clock) until which the lock is known to be
// held: the send time of the last successful acquire or renew + ttl − margin.
func (h *Held) ValidUntil() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.validUntil
}

// Err is nil while the lock is held, and says why once it was lost: an *Error with
// code lock-lost (a renew was refused: expired, revoked or force-released) or
// lock-expired (no successful renew before ValidUntil), or another refusal that can't
// heal (401, 403).
func (h *Held) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Fence asks the service whether this grant's token is still current (a linearizable
// read): true, or false when it is not, which also counts as losing the lock (fn's ctx
// is cancelled, Err says lock-lost). False at once, without asking, once the lock
// counts as lost or fn has returned.
func (h *Held) Fence(ctx context.Context) (bool, error) {
	if h.Err() != nil || h.h.stopCtx.Err() != nil {
		return false, nil
	}
	current, err := h.h.c.fence(ctx, h.h.l, h.Token)
	if err == nil && !current {
		h.h.lose(&Error{Code: CodeLockLost, Detail: fmt.Sprintf("%s: its fencing token %d is no longer current", h.h.l, h.Token)})
	}
	return current, err
}

// WriteState writes the guarded state (at most 65,536 UTF-8 bytes) in the etcd
// transaction that checks this grant is still current: lock-lost (nothing written) when
// it is not, which also counts as losing the lock. Once the lock counts as lost it
// returns Err without sending.
func (h *Held) WriteState(ctx context.Context, value string) (*State, error) {
	if err := h.asHolder(); err != nil {
		return nil, err
	}
	s, err := h.h.c.writeState(ctx, h.h.l, h.Lease, value)
	if errors.Is(err, ErrLockLost) {
		h.h.lose(err)
	}
	return s, err
}

// ReadState returns the guarded state as last written (by this or an earlier grant),
// or nil when never written.
func (h *Held) ReadState(ctx context.Context) (*State, error) {
	return h.h.c.readState(ctx, h.h.l)
}

// asHolder refuses a call with this grant's lease once the lock counts as lost (its
// reason) or fn has returned.
func (h *Held) asHolder() error {
	if err := h.Err(); err != nil {
		return err
	}
	if h.h.stopCtx.Err() != nil {
		return &Error{Code: CodeLockLost, Detail: h.h.l.String() + ": no longer held here"}
	}
	return nil
}

// WithLock runs fn while holding the lock name. It acquires (retrying transient
// failures with one Idempotency-Key), renews every ttl/3 in the background, and
// cancels fn's ctx when the lock is lost: a renew answered 410 lock-lost, or no
// successful renew before the client's own deadline (Held.ValidUntil). It releases
// the lock when fn returns, and returns fn's error. When the lock cannot be had it
// returns the error (lock-held after Wait, …) without calling fn.
//
// When fn returns an error wrapping context.Canceled because the lock was lost (not
// because the caller's ctx ended), WithLock returns the loss instead (Held.Err), so
// errors.Is(err, ErrLockLost) or IsLost(err) tells. A lost lock does not otherwise
// change fn's result: make fn honour its ctx.
func (c *Client) WithLock(ctx context.Context, name string, opts LockOptions, fn func(ctx context.Context, held *Held) error) error {
	return c.hold(ctx, lockLine(name), opts, fn)
}

func (c *Client) hold(ctx context.Context, l line, opts LockOptions, fn func(context.Context, *Held) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var t taken
	var err error
	if opts.Queue {
		t, err = c.waitInLine(ctx, l, opts)
	} else if t, err = c.take(ctx, l, opts.AcquireOptions, nil); err == nil {
		_, err = t.onlyGrant()
	}
	if err != nil {
		return err
	}
	return c.holdTaken(ctx, l, t, opts, fn)
}

// holdTaken holds a grant while fn runs: confirms it, renews in the background,
// releases at the end.
func (c *Client) holdTaken(ctx context.Context, l line, t taken, opts LockOptions, fn func(context.Context, *Held) error) error {
	fctx, cancel := context.WithCancel(ctx)
	stopCtx, stop := context.WithCancel(context.Background())
	h := &holding{
		c: c, l: l, opts: opts, cancel: cancel, stopCtx: stopCtx, stop: stop,
		held: &Held{Name: t.grant.Name, Token: t.grant.Token, Lease: t.grant.Lease},
	}
	h.held.h = h
	h.renewed(*t.grant, t.since)
	// Also on a panic in fn: stop renewing and release.
	defer h.end()
	if err := h.confirm(fctx); err != nil {
		return err
	}
	h.start()
	err := fn(fctx, h.held)
	h.end()
	if err != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) {
		if lost := h.held.Err(); lost != nil {
			return lost
		}
	}
	return err
}

// holding is the renew loop and loss detection behind WithLock and WithPermit.
type holding struct {
	c      *Client
	l      line
	opts   LockOptions
	held   *Held
	cancel context.CancelFunc // fn's ctx
	// since is the send time of the last successful acquire or renew (the loop's own
	// once it started).
	since   time.Time
	stopCtx context.Context
	stop    context.CancelFunc
	done    chan struct{}
	endOnce sync.Once
}

func (h *holding) ttl() time.Duration {
	return time.Duration(h.held.Grant().TTL) * time.Second
}

func (h *holding) margin() time.Duration {
	if h.opts.Margin > 0 {
		return h.opts.Margin
	}
	m := h.ttl() / 10
	if m > 2*time.Second {
		m = 2 * time.Second
	}
	return m
}

func (h *holding) renewed(g Grant, sent time.Time) {
	h.since = sent
	h.held.mu.Lock()
	h.held.grant = g
	h.held.mu.Unlock()
	deadline := sent.Add(h.ttl() - h.margin())
	h.held.mu.Lock()
	h.held.validUntil = deadline
	h.held.mu.Unlock()
}

// confirm renews once before fn runs when the acquire took long (it waited, or it was
// a replay of an earlier attempt's grant): the deadline counted from its send time is
// near or past, and fn should start with a full, confirmed TTL.
func (h *holding) confirm(ctx context.Context) error {
	if time.Now().Before(h.since.Add(h.ttl() / 3)) {
		return nil
	}
	retryFor := h.opts.RetryFor
	if retryFor == 0 {
		retryFor = defaultRetryFor
	}
	giveUpAt := time.Now().Add(retryFor)
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		g, err := h.c.renew(ctx, h.l, h.held.Lease, nil)
		if err == nil {
			h.renewed(*g, sent)
			return nil
		}
		var e *Error
		if !asError(err, &e) || !e.Transient() {
			return err
		}
		delay := backoff(attempt, time.Second, e.RetryAfter)
		if time.Now().Add(delay).After(giveUpAt) {
			return err
		}
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

func (h *holding) start() {
	h.done = make(chan struct{})
	go h.run()
}

// run renews at since + ttl/3 and loses the lock at its deadline. Each renew may run
// until the deadline at most: an answer after it is no use, the lock already counts
// as lost.
func (h *holding) run() {
	defer close(h.done)
	ttl := h.ttl()
	renewTimer := time.NewTimer(time.Until(h.since.Add(ttl / 3)))
	deadlineTimer := time.NewTimer(time.Until(h.held.ValidUntil()))
	defer renewTimer.Stop()
	defer deadlineTimer.Stop()
	failures := 0
	for {
		select {
		case <-h.stopCtx.Done():
			return
		case <-deadlineTimer.C:
			h.lose(h.expired())
			return
		case <-renewTimer.C:
		}
		deadline := h.held.ValidUntil()
		rctx, cancel := context.WithDeadline(h.stopCtx, deadline)
		sent := time.Now()
		g, err := h.c.renew(rctx, h.l, h.held.Lease, nil)
		cancel()
		if h.stopCtx.Err() != nil {
			return
		}
		if err == nil {
			h.renewed(*g, sent)
			failures = 0
			resetTimer(deadlineTimer, time.Until(h.held.ValidUntil()))
			resetTimer(renewTimer, time.Until(sent.Add(ttl/3)))
			continue
		}
		var e *Error
		if asError(err, &e) && !e.Transient() {
			// 410: someone else's now (or expired). Other refusals (401, 403, 400) won't heal either.
			h.lose(e)
			return
		}
		if !time.Now().Before(deadline) {
			h.lose(h.expired())
			return
		}
		// No answer or 503: try again soon; the deadline decides when it is too late.
		resetTimer(renewTimer, backoff(failures, ttl/6, 0))
		failures++
	}
}

func (h *holding) expired() *Error {
	return &Error{
		Code:   CodeLockExpired,
		Detail: h.l.String() + ": no successful renew before this client's deadline; it may have expired",
	}
}

func (h *holding) lose(reason error) {
	h.held.mu.Lock()
	if h.held.err == nil {
		h.held.err = reason
	}
	h.held.mu.Unlock()
	h.cancel()
}

// end stops renewing and releases (best effort: already gone, or the service is
// unreachable and the lease expires on its own). Safe to call more than once.
func (h *holding) end() {
	h.endOnce.Do(func() {
		h.stop()
		if h.done != nil {
			<-h.done
		}
		h.cancel()
		// A 410 said the lock is someone else's (or gone): nothing to release.
		if h.opts.KeepOnExit || errors.Is(h.held.Err(), ErrLockLost) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.c.release(ctx, h.l, h.held.Lease)
	})
}

// waitInLine waits in line for a grant, as long as it takes or up to opts.Wait: it
// joins with a ticket and redeems it with long polls of at most PollWait, so that no
// single request waits longer than the service allows. A ticket that dropped out of
// line (not redeemed within its TTL, say through an outage) joins again, at the back.
// Whatever ends the wait without a grant leaves the line.
func (c *Client) waitInLine(ctx context.Context, l line, opts LockOptions) (taken, error) {
	var deadline time.Time
	if opts.Wait > 0 {
		deadline = time.Now().Add(opts.Wait)
	}
	pollWait := opts.PollWait
	if pollWait <= 0 {
		pollWait = 20 * time.Second
	}
	poll := func() time.Duration {
		if deadline.IsZero() {
			return pollWait
		}
		left := time.Until(deadline)
		if left < 0 {
			return 0
		}
		if left < pollWait {
			return left
		}
		return pollWait
	}
	// The caller's Idempotency-Key belongs to the first join; a later join is a new request.
	join := AcquireOptions{TTL: opts.TTL, Owner: opts.Owner, LockDelay: opts.LockDelay, IdempotencyKey: opts.IdempotencyKey, RetryFor: opts.RetryFor}
	ticket := ""
	defer func() {
		if ticket != "" {
			// Given up (or failed): the place goes to the next in line at once, not after its TTL.
			lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = c.leave(lctx, l, ticket)
		}
	}()
	for rejoins := 0; ; {
		var t taken
		var err error
		if ticket == "" {
			t, err = c.take(ctx, l, join, &opts.TicketTTL)
			join.IdempotencyKey = ""
		} else if t, err = c.redeem(ctx, l, ticket, poll(), opts.RetryFor); errors.Is(err, ErrLockLost) {
			ticket = ""
			if err := sleep(ctx, backoff(rejoins, 2*time.Second, 0)); err != nil {
				return taken{}, err
			}
			rejoins++
			continue
		}
		if err != nil {
			return taken{}, err
		}
		if t.grant != nil {
			ticket = ""
			return t, nil
		}
		ticket = t.ticket.Ticket
		if opts.OnQueued != nil {
			opts.OnQueued(t.ticket.Position)
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			// Not an answer of the service (that was 202 each time): Status 0.
			position := t.ticket.Position
			e := clientError(CodeLockHeld, http.MethodPost, l.path(), "%s: still in line after waiting %s (%d ahead)", l, opts.Wait, position)
			e.Position = &position
			return taken{}, e
		}
	}
}
