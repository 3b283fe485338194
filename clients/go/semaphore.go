package leasehold

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Semaphore is the semaphore name: at most limit holders at once, each permit with
// its own fencing token. Get one from Client.Semaphore; its calls mirror the client's
// lock calls.
type Semaphore struct {
	c *Client
	l line
}

// Semaphore returns the semaphore name of limit permits (1–10,000). Every caller must
// use the same limit: another one is refused with limit-mismatch while it has holders.
func (c *Client) Semaphore(name string, limit int) *Semaphore {
	return &Semaphore{c: c, l: line{kind: "semaphore", name: name, limit: limit}}
}

// Name is the semaphore's name.
func (s *Semaphore) Name() string { return s.l.name }

// Limit is the limit this handle sends.
func (s *Semaphore) Limit() int { return s.l.limit }

// Acquire takes a permit (see Client.Acquire): lock-held when every permit is taken.
func (s *Semaphore) Acquire(ctx context.Context, opts AcquireOptions) (*Grant, error) {
	t, err := s.c.take(ctx, s.l, opts, nil)
	if err != nil {
		return nil, err
	}
	return t.onlyGrant()
}

// Queue takes a permit or a place in line (see Client.Queue).
func (s *Semaphore) Queue(ctx context.Context, opts QueueOptions) (*Grant, *Ticket, error) {
	t, err := s.c.take(ctx, s.l, opts.AcquireOptions, &opts.TicketTTL)
	return t.grant, t.ticket, err
}

// Redeem comes back with a ticket (see Client.Redeem).
func (s *Semaphore) Redeem(ctx context.Context, ticket string, wait time.Duration) (*Grant, *Ticket, error) {
	t, err := s.c.redeem(ctx, s.l, ticket, wait, 0)
	return t.grant, t.ticket, err
}

// Leave gives up a place in line.
func (s *Semaphore) Leave(ctx context.Context, ticket string) error {
	return s.c.leave(ctx, s.l, ticket)
}

// Renew resets the permit's lease to its granted TTL.
func (s *Semaphore) Renew(ctx context.Context, lease string) (*Grant, error) {
	return s.c.renew(ctx, s.l, lease, nil)
}

// Release gives the permit back.
func (s *Semaphore) Release(ctx context.Context, lease string) error {
	return s.c.release(ctx, s.l, lease)
}

// ForceRelease ends the permit with that token, whoever holds it (an admin API key only).
func (s *Semaphore) ForceRelease(ctx context.Context, token int64) error {
	_, err := s.c.call(ctx, http.MethodDelete, s.l.path()+"?force=true&token="+strconv.FormatInt(token, 10), nil, nil, 0)
	return err
}

// Inspect returns the holders and the number waiting, or nil when nobody holds a permit.
func (s *Semaphore) Inspect(ctx context.Context) (*SemaphoreInfo, error) {
	var info SemaphoreInfo
	found, _, err := s.c.inspect(ctx, s.l, 0, 0, &info)
	if err != nil || !found {
		return nil, err
	}
	return &info, nil
}

// Fence asks whether token is a current permit's fencing token (see Client.Fence).
func (s *Semaphore) Fence(ctx context.Context, token int64) (bool, error) {
	return s.c.fence(ctx, s.l, token)
}

// WriteState writes the semaphore's one guarded state: the holder of any current
// permit may (the state records that permit's token); lock-lost when lease's permit is
// not current. See Client.WriteState.
func (s *Semaphore) WriteState(ctx context.Context, lease, value string) (*State, error) {
	return s.c.writeState(ctx, s.l, lease, value)
}

// ReadState returns the semaphore's guarded state, or nil when never written.
func (s *Semaphore) ReadState(ctx context.Context) (*State, error) {
	return s.c.readState(ctx, s.l)
}

// WithPermit runs fn while holding one permit, with WithLock's discipline: renews
// every ttl/3, cancels fn's ctx when the permit is lost, releases when fn returns.
func (s *Semaphore) WithPermit(ctx context.Context, opts LockOptions, fn func(ctx context.Context, held *Held) error) error {
	return s.c.hold(ctx, s.l, opts, fn)
}
