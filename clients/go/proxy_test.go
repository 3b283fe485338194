package leasehold_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

// action is what the proxy does with one request.
type action int

const (
	// forward passes the request on and the answer back.
	forward action = iota
	// dropResponse passes the request on, reads the service's whole answer, then cuts
	// the caller's connection: a response lost on the way back.
	dropResponse
	// blackhole never answers (until the caller hangs up or the proxy stops).
	blackhole
)

// seen is one request the proxy handled, with the service's answer when it had one.
type seen struct {
	Method, Path, IdempotencyKey string
	Action                       action
	Status                       int
	Answer                       []byte
}

// proxy is a small TCP proxy in front of the service that reads HTTP/1.1 requests off
// each connection and can lose answers or never answer, for the client's failure paths.
type proxy struct {
	URL      string
	upstream string
	ln       net.Listener
	closed   chan struct{}

	mu    sync.Mutex
	plan  func(method, path string) action
	seen  []seen
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("LEASEHOLD_URL %q: %v", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{
		URL: "http://" + ln.Addr().String(), upstream: u.Host, ln: ln, closed: make(chan struct{}),
		plan: func(string, string) action { return forward }, conns: map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.stop)
	return p
}

// setPlan decides each later request's fate.
func (p *proxy) setPlan(plan func(method, path string) action) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = plan
}

// dropFirstAcquire loses the answer to the next acquire of the lock name, and forwards
// everything else.
func (p *proxy) dropFirstAcquire(name string) {
	dropped := false
	p.setPlan(func(method, path string) action {
		if method == "POST" && path == "/locks/"+name && !dropped {
			dropped = true
			return dropResponse
		}
		return forward
	})
}

// requests returns what the proxy handled so far, in arrival order.
func (p *proxy) requests() []seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seen(nil), p.seen...)
}

func (p *proxy) stop() {
	close(p.closed)
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns[conn] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(conn)
			conn.Close()
			p.mu.Lock()
			delete(p.conns, conn)
			p.mu.Unlock()
		}()
	}
}

// serve handles the requests of one caller connection, each on a fresh upstream connection.
func (p *proxy) serve(conn net.Conn) {
	br := bufio.NewReader(conn)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		p.mu.Lock()
		act := p.plan(req.Method, req.URL.Path)
		p.seen = append(p.seen, seen{Method: req.Method, Path: req.URL.Path, IdempotencyKey: req.Header.Get("Idempotency-Key"), Action: act})
		i := len(p.seen) - 1
		p.mu.Unlock()
		if act == blackhole {
			// Until the caller hangs up (its read fails) or the proxy stops (closes conn).
			_, _ = io.Copy(io.Discard, br)
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Close = true
		var answer []byte
		res, err := func() (*http.Response, error) {
			defer up.Close()
			if err := req.Write(up); err != nil {
				return nil, err
			}
			res, err := http.ReadResponse(bufio.NewReader(up), req)
			if err != nil {
				return nil, err
			}
			answer, err = io.ReadAll(res.Body)
			res.Body.Close()
			return res, err
		}()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.seen[i].Status, p.seen[i].Answer = res.StatusCode, answer
		p.mu.Unlock()
		if act == dropResponse {
			return
		}
		res.Body = io.NopCloser(bytes.NewReader(answer))
		res.ContentLength = int64(len(answer))
		res.TransferEncoding = nil
		res.Header.Set("Content-Length", strconv.Itoa(len(answer)))
		res.Header.Del("Transfer-Encoding")
		if err := res.Write(conn); err != nil || res.Close {
			return
		}
	}
}
