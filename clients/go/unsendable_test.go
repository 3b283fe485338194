package leasehold_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	leasehold "github.com/leasehold/leasehold/clients/go"
)

// What no request can carry is refused at the call, before anything is sent, and never
// quoted: a URL with a user name or password (sent as Basic auth, and printed in every
// network error's message), an API key or an Idempotency-Key with a character a header
// cannot carry (net/http refuses it as a failure an acquire would retry for 10 s).

const secret = "s3cret-Zq9"

// stub is a server that counts the connections made to it and answers 204 to anything.
type stub struct {
	URL         string
	connections atomic.Int32
}

func startStub(t *testing.T) *stub {
	t.Helper()
	s := &stub{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.connections.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// expectRefused checks that err is an invalid-config error, not transient, that says
// what but quotes none of hidden.
func expectRefused(t *testing.T, what string, err error, says string, hidden ...string) {
	t.Helper()
	e := asError(t, err)
	if e.Code != leasehold.CodeInvalidConfig || !errors.Is(err, leasehold.ErrInvalidConfig) || e.Status != 0 {
		t.Fatalf("%s: got %v, want %s", what, err, leasehold.CodeInvalidConfig)
	}
	if leasehold.IsTransient(err) {
		t.Fatalf("%s: %v must not count as transient (it would be retried)", what, err)
	}
	if !strings.Contains(err.Error(), says) {
		t.Fatalf("%s: %q should say %q", what, err.Error(), says)
	}
	for _, h := range hidden {
		if strings.Contains(err.Error(), h) {
			t.Fatalf("%s: the message quotes %q: %q", what, h, err.Error())
		}
	}
}

func TestAURLWithCredentialsIsRefusedAtEveryCallAndNeverQuoted(t *testing.T) {
	s := startStub(t)
	host := strings.TrimPrefix(s.URL, "http://")
	ctx := bounded(t, 10*time.Second)
	for _, u := range []string{
		"http://user:" + secret + "@" + host,
		"http://" + secret + "@" + host,
		"http://:" + secret + "@" + host + "/base",
		"HTTP://user:" + secret + "@" + host,
		// No "//": url.Parse sees an opaque part or a path, a browser (and the
		// TypeScript client) a user and password.
		"http:user:" + secret + "@" + host,
		"http:/user:" + secret + "@" + host,
	} {
		c := leasehold.NewClient(u, "k")
		says := "user name or password"
		t0 := time.Now()
		_, err := c.Acquire(ctx, "job", leasehold.AcquireOptions{TTL: 5})
		expectRefused(t, u+": acquire", err, says, secret, u)
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("%s: acquire took %s: it was retried", u, d)
		}
		expectRefused(t, u+": release", c.Release(ctx, "job", "00112233445566778899aabbccddeeff"), says, secret)
		_, err = c.Inspect(ctx, "job")
		expectRefused(t, u+": inspect", err, says, secret)
		ran := false
		err = c.WithLock(ctx, "job", leasehold.LockOptions{}, func(context.Context, *leasehold.Held) error {
			ran = true
			return nil
		})
		expectRefused(t, u+": WithLock", err, says, secret)
		if ran {
			t.Fatalf("%s: WithLock ran fn", u)
		}
	}

	// Set after NewClient, as its fields may be.
	c := leasehold.NewClient(s.URL, "k")
	c.URL = "http://user:" + secret + "@" + host
	_, err := c.Semaphore("pool", 2).Acquire(ctx, leasehold.AcquireOptions{})
	expectRefused(t, "a semaphore", err, "user name or password", secret)

	if n := s.connections.Load(); n != 0 {
		t.Fatalf("the stub got %d connection(s), want none", n)
	}
}

func TestAURLThatIsNotHTTPWithAHostIsRefused(t *testing.T) {
	for _, u := range []string{"127.0.0.1:8080", "ftp://leasehold.example", "http:///locks", "http://bad host"} {
		c := leasehold.NewClient(u, "k")
		_, err := c.Inspect(context.Background(), "job")
		expectRefused(t, u, err, "http:// or https:// with a host")
	}
	c := leasehold.NewClient("", "")
	c.URL = ""
	_, err := c.Inspect(context.Background(), "job")
	expectRefused(t, "an empty URL", err, "http:// or https:// with a host")
}

func TestAnAtSignAfterTheHostIsNoCredential(t *testing.T) {
	s := startStub(t)
	c := leasehold.NewClient(s.URL+"/base@x?y=a:b@c", "k")
	if err := c.Release(context.Background(), "job", "00112233445566778899aabbccddeeff"); err != nil {
		t.Fatalf("release through a URL with @ in its path: %v", err)
	}
}

func TestAnAPIKeyAHeaderCannotCarryIsRefusedAndNeverQuoted(t *testing.T) {
	s := startStub(t)
	ctx := bounded(t, 10*time.Second)
	for _, key := range []string{secret + "\r\nX-Injected: 1", secret + "\n", secret + "\x00", secret + "\x7f", secret + "€", secret + "\xff"} {
		t0 := time.Now()
		_, err := leasehold.NewClient(s.URL, key).Acquire(ctx, "job", leasehold.AcquireOptions{TTL: 5})
		expectRefused(t, "acquire", err, "the API key has a character a header cannot carry", secret)
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("acquire took %s: it was retried", d)
		}
	}
	if n := s.connections.Load(); n != 0 {
		t.Fatalf("the stub got %d connection(s), want none", n)
	}
	// Latin-1 and tabs are what a header can carry.
	if err := leasehold.NewClient(s.URL, "key\twith café").Release(ctx, "job", "00112233445566778899aabbccddeeff"); err != nil {
		t.Fatalf("a key of Latin-1 and a tab: %v", err)
	}
}

func TestAnIdempotencyKeyAHeaderCannotCarryFailsAtOnceSendingNothing(t *testing.T) {
	s := startStub(t)
	ctx := bounded(t, 10*time.Second)
	c := leasehold.NewClient(s.URL, "k")
	for _, key := range []string{secret + "\r\nX-Injected: 1", secret + "€", secret + "\x01"} {
		opts := leasehold.AcquireOptions{TTL: 5, IdempotencyKey: key}
		t0 := time.Now()
		_, err := c.Acquire(ctx, "job", opts)
		expectRefused(t, "acquire", err, "Idempotency-Key has a character a header cannot carry", secret)
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("acquire took %s: it was retried", d)
		}
		_, _, err = c.Queue(ctx, "job", leasehold.QueueOptions{AcquireOptions: opts})
		expectRefused(t, "queue", err, "Idempotency-Key", secret)
		ran := false
		err = c.WithLock(ctx, "job", leasehold.LockOptions{AcquireOptions: opts, Queue: true}, func(context.Context, *leasehold.Held) error {
			ran = true
			return nil
		})
		expectRefused(t, "WithLock", err, "Idempotency-Key", secret)
		if ran {
			t.Fatal("WithLock ran fn")
		}
	}
	if n := s.connections.Load(); n != 0 {
		t.Fatalf("the stub got %d connection(s), want none", n)
	}
}
