package leasehold

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The service never redirects. A redirect in front of it (a proxy, a wrong URL) must not
// carry a request's body, lease or ticket included, on to another host: Go's default
// client would re-send it on a 307 or 308.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var mu sync.Mutex
	var reached []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		reached = append(reached, string(body))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer target.Close()
	var sent int
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		sent++
		mu.Unlock()
		http.Redirect(w, r, target.URL+"/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()

	c := NewClient(redirecting.URL, "")
	lease := "00112233445566778899aabbccddeeff"
	err := c.Release(context.Background(), "job", lease)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeRedirected || e.Status != http.StatusTemporaryRedirect {
		t.Fatalf("release through a redirect: got %v, want a %q error with status 307", err, CodeRedirected)
	}
	if !errors.Is(err, ErrRedirected) || !strings.Contains(err.Error(), "point the client at the service itself") {
		t.Fatalf("the error should match ErrRedirected and say what to do: %v", err)
	}
	_, err = c.Acquire(context.Background(), "job", AcquireOptions{TTL: 5})
	if !errors.Is(err, ErrRedirected) {
		t.Fatalf("acquire through a redirect: got %v, want ErrRedirected", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reached) != 0 {
		t.Fatalf("the redirect's target got %d request(s), e.g. %q; want none", len(reached), reached[0])
	}
	if sent != 2 {
		t.Fatalf("the redirecting server got %d requests, want 2 (one each, not retried)", sent)
	}
}
