package leasehold_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	leasehold "github.com/leasehold/leasehold/clients/go"
)

// service is the leasehold service the tests run against, and its keys. They need a
// real one: LEASEHOLD_URL, LEASEHOLD_API_KEY (a key that may use names starting with
// "go-test:") and LEASEHOLD_ADMIN_KEY (an admin key, for force release).
type service struct {
	url, apiKey, adminKey string
}

func needService(t *testing.T) service {
	t.Helper()
	s := service{os.Getenv("LEASEHOLD_URL"), os.Getenv("LEASEHOLD_API_KEY"), os.Getenv("LEASEHOLD_ADMIN_KEY")}
	var missing []string
	for _, v := range [][2]string{{"LEASEHOLD_URL", s.url}, {"LEASEHOLD_API_KEY", s.apiKey}, {"LEASEHOLD_ADMIN_KEY", s.adminKey}} {
		if v[1] == "" {
			missing = append(missing, v[0])
		}
	}
	if len(missing) > 0 {
		t.Fatalf("these tests run against a real leasehold service with auth on: set LEASEHOLD_URL (its URL), "+
			"LEASEHOLD_API_KEY (a key for names starting with \"go-test:\") and LEASEHOLD_ADMIN_KEY (an admin key); "+
			"missing: %s (test/clients/go.test.ts starts etcd and the service and sets them)", strings.Join(missing, ", "))
	}
	return s
}

// client is a client with the normal key; admin one with the admin key.
func (s service) client() *leasehold.Client { return leasehold.NewClient(s.url, s.apiKey) }
func (s service) admin() *leasehold.Client  { return leasehold.NewClient(s.url, s.adminKey) }

// uniqueName is a lock name no other test (or earlier run) uses.
func uniqueName(t *testing.T, what string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "go-test:" + what + "-" + hex.EncodeToString(b[:])
}

// begin is what most tests start with: the service, a bounded context, a client with
// the normal key, and a fresh name.
func begin(t *testing.T, what string) (service, context.Context, *leasehold.Client, string) {
	t.Helper()
	s := needService(t)
	return s, bounded(t, 30*time.Second), s.client(), uniqueName(t, what)
}

// beginProxied is begin with the client going through a proxy (see proxy_test.go).
func beginProxied(t *testing.T, what string) (service, context.Context, *proxy, *leasehold.Client, string) {
	t.Helper()
	s, ctx, _, name := begin(t, what)
	p := startProxy(t, s.url)
	return s, ctx, p, leasehold.NewClient(p.URL, s.apiKey), name
}

// bounded is a context that ends the test's waits instead of hanging it.
func bounded(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// asError is the *leasehold.Error in err, failing the test when there is none.
func asError(t *testing.T, err error) *leasehold.Error {
	t.Helper()
	var e *leasehold.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *leasehold.Error, got %T: %v", err, err)
	}
	return e
}

// until polls cond until it holds, failing the test after 10 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var leaseRe = regexp.MustCompile(`^[0-9a-f]{16,64}$`)

func TestNewClientDefaultsFromEnvironment(t *testing.T) {
	t.Setenv("LEASEHOLD_URL", "http://leasehold.example:9000/")
	t.Setenv("LEASEHOLD_API_KEY", "from-env")
	c := leasehold.NewClient("", "")
	if c.URL != "http://leasehold.example:9000" || c.APIKey != "from-env" {
		t.Fatalf("NewClient(\"\", \"\") = %q %q, want LEASEHOLD_URL without its slash and LEASEHOLD_API_KEY", c.URL, c.APIKey)
	}
	c = leasehold.NewClient("http://other:1", "given")
	if c.URL != "http://other:1" || c.APIKey != "given" {
		t.Fatalf("arguments must win over the environment, got %q %q", c.URL, c.APIKey)
	}
	t.Setenv("LEASEHOLD_URL", "")
	t.Setenv("LEASEHOLD_API_KEY", "")
	if c := leasehold.NewClient("", ""); c.URL != leasehold.DefaultURL || c.APIKey != "" {
		t.Fatalf("without arguments or environment: %q %q, want %q and no key", c.URL, c.APIKey, leasehold.DefaultURL)
	}
}

func TestGrant(t *testing.T) {
	_, ctx, c, name := begin(t, "grant")

	g, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 10, Owner: "go-a"})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	if g.Name != name || g.Token <= 0 || !leaseRe.MatchString(g.Lease) || g.TTL != 10 || g.Owner != "go-a" {
		t.Fatalf("grant = %+v (lease %q), want %s, a positive token, a hex lease, ttl 10, owner go-a", g, g.Lease, name)
	}
	if strings.Contains(g.String(), g.Lease) || strings.Contains(fmt.Sprintf("%+v", g), g.Lease) {
		t.Fatalf("printing a grant shows its lease: %s", g)
	}

	info, err := c.Inspect(ctx, name)
	if err != nil || info == nil {
		t.Fatalf("inspect: %v, %v", info, err)
	}
	if info.Token != g.Token || info.Owner != "go-a" || info.TTL <= 0 || info.TTL > 10 || info.Index <= 0 {
		t.Fatalf("inspect = %+v, want token %d, owner go-a, 0 < ttl ≤ 10, an index", info, g.Token)
	}

	list, err := c.List(ctx, leasehold.ListOptions{Prefix: name})
	if err != nil || len(list.Items) != 1 || list.Items[0].Token != g.Token {
		t.Fatalf("list = %+v, %v; want the one lock", list, err)
	}

	r, err := c.Renew(ctx, name, g.Lease)
	if err != nil || r.Token != g.Token || r.Lease != g.Lease || r.TTL != 10 {
		t.Fatalf("renew = %+v, %v; want the same token and lease, ttl 10", r, err)
	}

	if err := c.Release(ctx, name, g.Lease); err != nil {
		t.Fatalf("release: %v", err)
	}
	if info, err := c.Inspect(ctx, name); err != nil || info != nil {
		t.Fatalf("inspect after release = %+v, %v; want nil, nil", info, err)
	}
	err = c.Release(ctx, name, g.Lease)
	if e := asError(t, err); e.Status != 410 || e.Code != leasehold.CodeLockLost || !leasehold.IsLockLost(err) ||
		!errors.Is(err, leasehold.ErrLockLost) || errors.Is(err, leasehold.ErrLockHeld) {
		t.Fatalf("second release: %v, want 410 lock-lost matching ErrLockLost only", err)
	}
	if strings.Contains(err.Error(), g.Lease) {
		t.Fatalf("the error shows the lease: %v", err)
	}

	// WithLock: fn runs holding a newer grant, which is released when fn returns.
	var seen int64
	err = c.WithLock(ctx, name, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{TTL: 6}},
		func(ctx context.Context, held *leasehold.Held) error {
			seen = held.Token
			if strings.Contains(fmt.Sprintf("%v %+v", held, held), held.Lease) {
				t.Errorf("printing a Held shows its lease: %v", held)
			}
			left := time.Until(held.ValidUntil())
			if held.Token <= g.Token || left <= 4*time.Second || left > 6*time.Second || held.Err() != nil {
				t.Errorf("held: token %d (before: %d), valid for %s, err %v; want a larger token, 4–6 s, no error", held.Token, g.Token, left, held.Err())
			}
			info, err := c.Inspect(ctx, name)
			if err != nil || info == nil || info.Token != held.Token {
				t.Errorf("inspect inside WithLock = %+v, %v; want token %d", info, err, held.Token)
			}
			return nil
		})
	if err != nil || seen == 0 {
		t.Fatalf("WithLock = %v (fn ran: %v)", err, seen != 0)
	}
	if info, err := c.Inspect(ctx, name); err != nil || info != nil {
		t.Fatalf("after WithLock returned the lock must be released: %+v, %v", info, err)
	}

	// fn's error comes back as it is.
	boom := errors.New("boom")
	if err := c.WithLock(ctx, name, leasehold.LockOptions{}, func(context.Context, *leasehold.Held) error { return boom }); err != boom {
		t.Fatalf("WithLock returned %v, want fn's error", err)
	}
}

func TestContention(t *testing.T) {
	s := needService(t)
	ctx := bounded(t, 30*time.Second)
	a, b := s.client(), s.client()
	name := uniqueName(t, "contention")

	g, err := a.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 20, Owner: "holder-a"})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	_, err = b.Acquire(ctx, name, leasehold.AcquireOptions{Owner: "b"})
	e := asError(t, err)
	if e.Status != 409 || e.Code != leasehold.CodeLockHeld || !leasehold.IsLockHeld(err) || !errors.Is(err, leasehold.ErrLockHeld) {
		t.Fatalf("second acquire: %v, want 409 lock-held", err)
	}
	if e.Holder == nil || e.Holder.Owner != "holder-a" || e.Holder.Token != g.Token || e.Holder.ExpiresAt.IsZero() {
		t.Fatalf("lock-held holder = %+v, want owner holder-a, token %d", e.Holder, g.Token)
	}
	if e.RetryAfter < time.Second || e.RetryAfter > 20*time.Second {
		t.Fatalf("RetryAfter = %s, want the holder's remaining TTL (1–20 s)", e.RetryAfter)
	}
	if e.Transient() {
		t.Fatal("lock-held must not count as transient")
	}

	// WithLock does not call fn when it can't have the lock.
	called := false
	err = b.WithLock(ctx, name, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{Wait: 300 * time.Millisecond}},
		func(context.Context, *leasehold.Held) error { called = true; return nil })
	if !leasehold.IsLockHeld(err) || called {
		t.Fatalf("WithLock on a held lock = %v (fn called: %v), want lock-held without calling fn", err, called)
	}

	// A waiting acquire gets the lock once the holder releases it.
	type result struct {
		g   *leasehold.Grant
		err error
	}
	done := make(chan result, 1)
	go func() {
		g, err := b.Acquire(ctx, name, leasehold.AcquireOptions{Wait: 15 * time.Second, Owner: "b"})
		done <- result{g, err}
	}()
	until(t, "the waiting acquire to be in line", func() bool {
		info, err := a.Inspect(ctx, name)
		return err == nil && info != nil && info.Waiters == 1
	})
	if err := a.Release(ctx, name, g.Lease); err != nil {
		t.Fatalf("release: %v", err)
	}
	r := <-done
	if r.err != nil || r.g.Token <= g.Token || r.g.Owner != "b" {
		t.Fatalf("waiting acquire = %+v, %v; want a grant for b with a token above %d", r.g, r.err, g.Token)
	}
	if err := b.Release(ctx, name, r.g.Lease); err != nil {
		t.Fatalf("release: %v", err)
	}
}

func TestLostLockCancelsFn(t *testing.T) {
	s, ctx, c, name := begin(t, "lost")

	started := make(chan *leasehold.Held, 1)
	var lostAfter time.Duration
	var reason error
	done := make(chan error, 1)
	go func() {
		done <- c.WithLock(ctx, name, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{TTL: 6}},
			func(fctx context.Context, held *leasehold.Held) error {
				started <- held
				t0 := time.Now()
				<-fctx.Done()
				lostAfter, reason = time.Since(t0), held.Err()
				return fctx.Err()
			})
	}()
	var held *leasehold.Held
	select {
	case held = <-started:
	case err := <-done:
		t.Fatalf("WithLock returned before fn ran: %v", err)
	}
	// A normal key may not force-release; the admin key may.
	err := c.ForceRelease(ctx, name)
	if e := asError(t, err); e.Status != 403 || !errors.Is(err, leasehold.ErrForbidden) {
		t.Fatalf("force release with a normal key: %v, want 403 forbidden", err)
	}
	if err := s.admin().ForceRelease(ctx, name); err != nil {
		t.Fatalf("force release with the admin key: %v", err)
	}
	err = <-done
	// Renewals run every ttl/3 (2 s): the first one after the force release is refused,
	// well before the client's own deadline (5.4 s) would have said lock-expired.
	if !errors.Is(err, leasehold.ErrLockLost) || !leasehold.IsLost(err) || asError(t, err).Status != 410 {
		t.Fatalf("WithLock after a force release = %v, want the loss: 410 lock-lost", err)
	}
	if !errors.Is(reason, leasehold.ErrLockLost) || !errors.Is(held.Err(), leasehold.ErrLockLost) {
		t.Fatalf("held.Err() = %v, want lock-lost", reason)
	}
	if lostAfter > 5*time.Second {
		t.Fatalf("fn's context was cancelled %s after the start, want at the first renew (~2 s)", lostAfter)
	}
	if info, err := c.Inspect(ctx, name); err != nil || info != nil {
		t.Fatalf("inspect after the force release = %+v, %v; want nobody", info, err)
	}
	// A later holder gets a larger token, and WithLock answers normally again.
	if err := c.WithLock(ctx, name, leasehold.LockOptions{}, func(_ context.Context, h *leasehold.Held) error {
		if h.Token <= held.Token {
			t.Errorf("token after the loss %d ≤ %d", h.Token, held.Token)
		}
		return nil
	}); err != nil {
		t.Fatalf("WithLock after the loss: %v", err)
	}
}

func TestLockExpiresAtTheClientDeadlineWhenRenewsGetNoAnswer(t *testing.T) {
	_, ctx, p, c, name := beginProxied(t, "expired")

	var validUntil, cancelledAt time.Time
	var reason error
	err := c.WithLock(ctx, name, leasehold.LockOptions{AcquireOptions: leasehold.AcquireOptions{TTL: 3}},
		func(fctx context.Context, held *leasehold.Held) error {
			validUntil = held.ValidUntil()
			// From now on no renew gets an answer.
			p.setPlan(func(method, path string) action {
				if method == "PUT" {
					return blackhole
				}
				return forward
			})
			<-fctx.Done()
			cancelledAt, reason = time.Now(), held.Err()
			return fctx.Err()
		})
	if !errors.Is(err, leasehold.ErrLockExpired) || !leasehold.IsLost(err) || !errors.Is(reason, leasehold.ErrLockExpired) {
		t.Fatalf("WithLock = %v (held.Err %v), want lock-expired", err, reason)
	}
	// Cancelled at the deadline (a blackholed renew may have pushed it no further).
	if cancelledAt.Before(validUntil) || cancelledAt.Sub(validUntil) > time.Second {
		t.Fatalf("fn's context was cancelled %s after ValidUntil, want at it", cancelledAt.Sub(validUntil))
	}
	renews := 0
	for _, r := range p.requests() {
		if r.Method == "PUT" {
			renews++
		}
	}
	if renews == 0 {
		t.Fatal("no renew was sent")
	}
}

func TestRetryAfterDroppedResponse(t *testing.T) {
	s, ctx, p, c, name := beginProxied(t, "dropped")
	p.dropFirstAcquire(name)

	g, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 10})
	if err != nil {
		t.Fatalf("acquire through a lost response: %v", err)
	}
	posts := p.requests()
	if len(posts) != 2 || posts[0].Action != dropResponse || posts[1].Method != "POST" {
		t.Fatalf("the proxy saw %+v, want the dropped POST and one retry", posts)
	}
	if posts[0].IdempotencyKey == "" || posts[0].IdempotencyKey != posts[1].IdempotencyKey {
		t.Fatalf("Idempotency-Keys %q then %q, want one key on both attempts", posts[0].IdempotencyKey, posts[1].IdempotencyKey)
	}
	var lost leasehold.Grant
	if err := json.Unmarshal(posts[0].Answer, &lost); err != nil || posts[0].Status != 201 {
		t.Fatalf("the dropped answer: %d %s", posts[0].Status, posts[0].Answer)
	}
	if posts[1].Status != 200 || g.Token != lost.Token || g.Lease != lost.Lease {
		t.Fatalf("retry answered %d with token %d, want 200 and the lost grant's token %d and lease", posts[1].Status, g.Token, lost.Token)
	}
	// The grant is the live one: it renews and releases (straight to the service).
	direct := s.client()
	if r, err := direct.Renew(ctx, name, g.Lease); err != nil || r.Token != g.Token {
		t.Fatalf("renew of the replayed grant = %+v, %v", r, err)
	}
	if err := direct.Release(ctx, name, g.Lease); err != nil {
		t.Fatalf("release: %v", err)
	}

	// WithLock through a lost response: the same, then fn runs.
	name2 := uniqueName(t, "dropped-withlock")
	p.dropFirstAcquire(name2)
	ran := false
	if err := c.WithLock(ctx, name2, leasehold.LockOptions{}, func(context.Context, *leasehold.Held) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("WithLock through a lost response = %v (fn ran: %v)", err, ran)
	}
	// It released with the lease in a POST's body, as every leasehold client does.
	seen := p.requests()
	if last := seen[len(seen)-1]; last.Method != "POST" || last.Path != "/locks/"+name2+"/release" || last.Status != 204 {
		t.Fatalf("the release went as %s %s (%d), want POST /locks/%s/release (204)", last.Method, last.Path, last.Status, name2)
	}
}

func TestRetryGivesUpAfterRetryFor(t *testing.T) {
	// A proxy in front of a port nothing listens on (it was free a moment ago): every
	// connection is cut without an answer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	p := startProxy(t, dead)
	c := leasehold.NewClient(p.URL, "k")
	t0 := time.Now()
	_, err = c.Acquire(bounded(t, 10*time.Second), "go-test:nobody", leasehold.AcquireOptions{RetryFor: 500 * time.Millisecond})
	e := asError(t, err)
	if e.Code != leasehold.CodeNetworkError || e.Status != 0 || !e.Transient() {
		t.Fatalf("acquire with the service unreachable = %v, want network-error", err)
	}
	if elapsed := time.Since(t0); elapsed > 3*time.Second {
		t.Fatalf("gave up after %s, want about RetryFor (0.5 s)", elapsed)
	}
	if n := len(p.requests()); n < 2 {
		t.Fatalf("%d attempts, want retries within RetryFor", n)
	}

	// The caller's context ends the retries with its own error.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err = c.Acquire(ctx, "go-test:nobody", leasehold.AcquireOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire after the context was cancelled = %v, want context.Canceled", err)
	}
}

func TestRequestErrors(t *testing.T) {
	s := needService(t)
	ctx := bounded(t, 30*time.Second)
	c := s.client()

	_, err := c.Acquire(ctx, "go-test:bad name", leasehold.AcquireOptions{})
	if e := asError(t, err); e.Status != 400 || !errors.Is(err, leasehold.ErrInvalidRequest) || e.Detail == "" {
		t.Fatalf("a name with a space: %v, want 400 invalid-request", err)
	}
	_, err = c.Acquire(ctx, uniqueName(t, "ttl"), leasehold.AcquireOptions{TTL: -1})
	if e := asError(t, err); e.Status != 400 || len(e.Errors) == 0 || e.Errors[0].Field != "ttl" {
		t.Fatalf("ttl -1: %v (errors %+v), want 400 naming ttl", err, asError(t, err).Errors)
	}

	_, err = leasehold.NewClient(s.url, "not-a-key").Acquire(ctx, uniqueName(t, "auth"), leasehold.AcquireOptions{})
	if e := asError(t, err); e.Status != 401 || !errors.Is(err, leasehold.ErrUnauthorized) {
		t.Fatalf("an unknown key: %v, want 401 unauthorized", err)
	}

	name := uniqueName(t, "idem")
	g, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 10, IdempotencyKey: "go-test-key-" + name})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 10, IdempotencyKey: "go-test-key-" + name})
	if err != nil || again.Token != g.Token || again.Lease != g.Lease {
		t.Fatalf("the same Idempotency-Key and fields = %+v, %v; want the same grant", again, err)
	}
	_, err = c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 11, IdempotencyKey: "go-test-key-" + name})
	if e := asError(t, err); e.Status != 422 || !errors.Is(err, leasehold.ErrIdempotencyKeyMismatch) {
		t.Fatalf("the same Idempotency-Key with another ttl: %v, want 422 idempotency-key-mismatch", err)
	}
	if err := c.Release(ctx, name, g.Lease); err != nil {
		t.Fatal(err)
	}
}

func TestSemaphore(t *testing.T) {
	s, ctx, c, name := begin(t, "sem")
	sem := c.Semaphore(name, 2)

	p1, err := sem.Acquire(ctx, leasehold.AcquireOptions{TTL: 10, Owner: "one"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := sem.Acquire(ctx, leasehold.AcquireOptions{TTL: 10, Owner: "two"})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Limit != 2 || p2.Limit != 2 || p2.Token <= p1.Token || p1.Lease == p2.Lease {
		t.Fatalf("permits %+v and %+v, want limit 2 and increasing tokens", p1, p2)
	}
	_, err = sem.Acquire(ctx, leasehold.AcquireOptions{})
	if e := asError(t, err); e.Status != 409 || !leasehold.IsLockHeld(err) || e.Holder != nil {
		t.Fatalf("a third permit: %v, want 409 lock-held (no holder for a semaphore)", err)
	}
	_, err = c.Semaphore(name, 3).Acquire(ctx, leasehold.AcquireOptions{})
	if e := asError(t, err); e.Status != 409 || !errors.Is(err, leasehold.ErrLimitMismatch) || e.Limit != 2 {
		t.Fatalf("another limit: %v, want 409 limit-mismatch with limit 2", err)
	}
	info, err := sem.Inspect(ctx)
	if err != nil || info == nil || info.Limit != 2 || len(info.Holders) != 2 || info.Holders[0].Token != p1.Token || info.Holders[1].Owner != "two" {
		t.Fatalf("inspect = %+v, %v; want both holders, oldest first", info, err)
	}
	list, err := c.ListSemaphores(ctx, leasehold.ListOptions{Prefix: name})
	if err != nil || len(list.Items) != 1 || len(list.Items[0].Holders) != 2 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if r, err := sem.Renew(ctx, p1.Lease); err != nil || r.Token != p1.Token || r.Limit != 2 {
		t.Fatalf("renew = %+v, %v", r, err)
	}
	if err := s.admin().Semaphore(name, 2).ForceRelease(ctx, p2.Token); err != nil {
		t.Fatalf("force release of permit %d: %v", p2.Token, err)
	}
	if err := sem.Release(ctx, p2.Lease); !leasehold.IsLockLost(err) {
		t.Fatalf("release of a force-released permit = %v, want lock-lost", err)
	}

	// One permit is free: WithPermit takes it and gives it back.
	err = sem.WithPermit(ctx, leasehold.LockOptions{}, func(ctx context.Context, held *leasehold.Held) error {
		if g := held.Grant(); held.Token <= p2.Token || g.Limit != 2 {
			t.Errorf("permit %+v, want a new token and limit 2", g)
		}
		info, err := sem.Inspect(ctx)
		if err != nil || info == nil || len(info.Holders) != 2 {
			t.Errorf("inspect inside WithPermit = %+v, %v", info, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WithPermit: %v", err)
	}
	if err := sem.Release(ctx, p1.Lease); err != nil {
		t.Fatal(err)
	}
	if info, err := sem.Inspect(ctx); err != nil || info != nil {
		t.Fatalf("inspect after every release = %+v, %v; want nil", info, err)
	}
}

func TestTickets(t *testing.T) {
	_, ctx, c, name := begin(t, "tickets")

	g, tk, err := c.Queue(ctx, name, leasehold.QueueOptions{AcquireOptions: leasehold.AcquireOptions{TTL: 10}})
	if err != nil || g == nil || tk != nil {
		t.Fatalf("queue on a free lock = %v, %v, %v; want a grant", g, tk, err)
	}
	g2, tk, err := c.Queue(ctx, name, leasehold.QueueOptions{TicketTTL: 10})
	if err != nil || g2 != nil || tk == nil || tk.Position != 0 || tk.TTL != 10 || tk.Ticket == "" {
		t.Fatalf("queue on a held lock = %v, %+v, %v; want a ticket at position 0 kept 10 s", g2, tk, err)
	}
	if strings.Contains(tk.String(), tk.Ticket) {
		t.Fatalf("printing a ticket shows it: %s", tk)
	}
	_, tk3, err := c.Queue(ctx, name, leasehold.QueueOptions{})
	if err != nil || tk3 == nil || tk3.Position != 1 {
		t.Fatalf("a second ticket = %+v, %v; want position 1", tk3, err)
	}
	if err := c.Leave(ctx, name, tk3.Ticket); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if _, again, err := c.Redeem(ctx, name, tk.Ticket, 0); err != nil || again == nil || again.Position != 0 {
		t.Fatalf("redeem while held = %+v, %v; want the ticket, still first", again, err)
	}
	if err := c.Release(ctx, name, g.Lease); err != nil {
		t.Fatal(err)
	}
	turn, _, err := c.Redeem(ctx, name, tk.Ticket, 5*time.Second)
	if err != nil || turn == nil || turn.Token <= g.Token {
		t.Fatalf("redeem after the release = %+v, %v; want the grant", turn, err)
	}
	if err := c.Release(ctx, name, turn.Lease); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Redeem(ctx, name, tk.Ticket, 0); !leasehold.IsLockLost(err) {
		t.Fatalf("redeeming a spent ticket = %v, want lock-lost", err)
	}
}

func TestWithLockQueue(t *testing.T) {
	_, ctx, c, name := begin(t, "queue")
	g, err := c.Acquire(ctx, name, leasehold.AcquireOptions{TTL: 10})
	if err != nil {
		t.Fatal(err)
	}

	// Up to Wait in line, then lock-held, and the place is given up.
	err = c.WithLock(ctx, name, leasehold.LockOptions{Queue: true, AcquireOptions: leasehold.AcquireOptions{Wait: 300 * time.Millisecond}},
		func(context.Context, *leasehold.Held) error { t.Error("fn ran"); return nil })
	if e := asError(t, err); e.Code != leasehold.CodeLockHeld || e.Position == nil || *e.Position != 0 {
		t.Fatalf("WithLock in line past Wait = %v, want lock-held at position 0", err)
	}
	if info, err := c.Inspect(ctx, name); err != nil || info.Waiters != 0 {
		t.Fatalf("after giving up, waiters = %+v, %v; want 0", info, err)
	}

	// As long as it takes: served once the holder releases.
	queued := make(chan int, 10)
	done := make(chan error, 1)
	var token int64
	go func() {
		done <- c.WithLock(ctx, name, leasehold.LockOptions{Queue: true, PollWait: time.Second, OnQueued: func(p int) { queued <- p }},
			func(_ context.Context, held *leasehold.Held) error { token = held.Token; return nil })
	}()
	if p := <-queued; p != 0 {
		t.Fatalf("position %d, want 0", p)
	}
	if err := c.Release(ctx, name, g.Lease); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || token <= g.Token {
		t.Fatalf("WithLock in line = %v (token %d), want fn to run with a token above %d", err, token, g.Token)
	}
}
