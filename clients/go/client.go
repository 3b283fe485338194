package leasehold

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultURL is where NewClient looks for the service when neither its argument nor
// LEASEHOLD_URL says otherwise.
const DefaultURL = "http://127.0.0.1:8080"

// DefaultTimeout is each request's deadline, on top of the time the request asks the
// service to wait.
const DefaultTimeout = 15 * time.Second

// defaultRetryFor is how long an acquire retries transient failures by default.
const defaultRetryFor = 10 * time.Second

// Client talks to one leasehold service. Its fields may be set after NewClient and
// before the first call; it is safe for concurrent use.
type Client struct {
	// URL is the service's base URL, without a trailing slash.
	URL string
	// APIKey is sent as "Authorization: Bearer <APIKey>" when not empty.
	APIKey string
	// HTTPClient makes the requests (when nil, http.DefaultClient's transport, not
	// following redirects). Leave its Timeout at 0: the client sets a deadline on each
	// request itself. One of your own that follows redirects would re-send a request's
	// body, lease or ticket included, to wherever a redirect points.
	HTTPClient *http.Client
	// Timeout is each request's deadline on top of its wait (DefaultTimeout when 0).
	Timeout time.Duration
}

// NewClient returns a client for url (LEASEHOLD_URL when empty, else DefaultURL)
// sending apiKey (LEASEHOLD_API_KEY when empty; none when both are empty).
func NewClient(url, apiKey string) *Client {
	if url == "" {
		url = os.Getenv("LEASEHOLD_URL")
	}
	if url == "" {
		url = DefaultURL
	}
	if apiKey == "" {
		apiKey = os.Getenv("LEASEHOLD_API_KEY")
	}
	return &Client{URL: strings.TrimRight(url, "/"), APIKey: apiKey, Timeout: DefaultTimeout}
}

// Grant is what acquire and renew answer. Token is the fencing token: pass it with
// every write to what the lock protects. Lease is the holder's secret handle for renew
// and release; String leaves it out, so printing a Grant does not leak it.
type Grant struct {
	Name  string `json:"name"`
	Token int64  `json:"token"`
	Lease string `json:"lease"`
	// TTL is the TTL etcd granted, in seconds.
	TTL int `json:"ttl"`
	// ExpiresAt is the service's estimate; WithLock counts from its own send times.
	ExpiresAt time.Time `json:"expiresAt"`
	Owner     string    `json:"owner,omitempty"`
	// Value is the value the holder publishes ("" when none).
	Value string `json:"value,omitempty"`
	// Limit is the semaphore's limit (0 for a lock).
	Limit int `json:"limit,omitempty"`
}

func (g Grant) String() string {
	s := fmt.Sprintf("{name:%s token:%d ttl:%d expiresAt:%s", g.Name, g.Token, g.TTL, g.ExpiresAt.Format(time.RFC3339Nano))
	if g.Owner != "" {
		s += " owner:" + g.Owner
	}
	if g.Limit != 0 {
		s += " limit:" + strconv.Itoa(g.Limit)
	}
	return s + "}"
}

// Ticket is a place in line kept across requests: Position waiters ahead (next in
// line = 0), kept TTL seconds without being redeemed. Ticket is a secret like a lease;
// String leaves it out.
type Ticket struct {
	Ticket   string `json:"ticket"`
	Position int    `json:"position"`
	TTL      int    `json:"ttl"`
}

func (t Ticket) String() string { return fmt.Sprintf("{position:%d ttl:%d}", t.Position, t.TTL) }

// LockInfo is what anyone may see about a held lock (never the lease). TTL is the
// remaining seconds.
type LockInfo struct {
	Name      string    `json:"name"`
	Token     int64     `json:"token"`
	TTL       int       `json:"ttl"`
	ExpiresAt time.Time `json:"expiresAt"`
	Owner     string    `json:"owner,omitempty"`
	Value     string    `json:"value,omitempty"`
	// Waiters is how many are in line for the lock.
	Waiters int `json:"waiters,omitempty"`
	// Index is the etcd revision the answer was read at (inspect only).
	Index int64 `json:"index,omitempty"`
}

// LockList is one page of held locks; Cursor is set when more remain.
type LockList struct {
	Items  []LockInfo `json:"items"`
	Cursor string     `json:"cursor,omitempty"`
}

// SemaphoreHolder is one permit's holder as anyone may see it (never the lease).
type SemaphoreHolder struct {
	Token     int64     `json:"token"`
	TTL       int       `json:"ttl"`
	ExpiresAt time.Time `json:"expiresAt"`
	Owner     string    `json:"owner,omitempty"`
	Value     string    `json:"value,omitempty"`
}

// SemaphoreInfo is a semaphore's holders (oldest first) and how many wait.
type SemaphoreInfo struct {
	Name    string            `json:"name"`
	Limit   int               `json:"limit"`
	Holders []SemaphoreHolder `json:"holders"`
	Waiters int               `json:"waiters"`
	Index   int64             `json:"index,omitempty"`
}

// SemaphoreList is one page of semaphores that have holders; Cursor is set when more remain.
type SemaphoreList struct {
	Items  []SemaphoreInfo `json:"items"`
	Cursor string          `json:"cursor,omitempty"`
}

// AcquireOptions are what every acquire takes. The zero value asks for the service's
// defaults, no waiting, and retries for 10 s.
type AcquireOptions struct {
	// TTL is the lease TTL in seconds (0: the service's default, 30).
	TTL int
	// Wait is how long the service may wait for a held lock (0: answer at once).
	// Sent in seconds, to the millisecond.
	Wait time.Duration
	// Owner is free text shown to others.
	Owner string
	// Value is published with the grant (at most 4,096 UTF-8 bytes; "" = none).
	Value string
	// LockDelay (locks only; whole seconds, 0–60; 0 = none): when this grant ends
	// without a release (its lease expires, or an admin forces it), nobody is granted
	// the lock for this long: acquires are refused with lock-held and Error.Reason
	// "lock-delay" (no Holder), a waiting acquire waits it out. A release frees the lock
	// at once. For resources that can't check a fencing token.
	LockDelay int
	// IdempotencyKey is sent as Idempotency-Key on every attempt (a random UUID per call when empty).
	IdempotencyKey string
	// RetryFor is how long to keep retrying, with jittered backoff, when there is no
	// answer or the service answers 429/502/503/504, counted after Wait. Every retry
	// carries the same Idempotency-Key, so a retry after a lost response gets the same
	// grant. 0 means 10 s; a negative value makes one attempt.
	RetryFor time.Duration
}

// State is a lock's (or semaphore's) guarded state: a value that outlives the grants,
// written only by a current holder.
type State struct {
	Value string `json:"value"`
	// Token is the fencing token of the grant that wrote it.
	Token int64 `json:"token"`
	// Revision is the etcd revision it was written at.
	Revision int64 `json:"revision"`
	// UpdatedAt is when it was written (the service's clock).
	UpdatedAt time.Time `json:"updatedAt"`
}

// QueueOptions are an acquire that keeps a place in line instead of refusing.
type QueueOptions struct {
	AcquireOptions
	// TicketTTL is how many seconds the place is kept while the caller is away (0: the service's default, 30).
	TicketTTL int
}

// ListOptions select a page of a listing.
type ListOptions struct {
	Prefix string
	// Limit is 1–1000 (0: the service's default, 100).
	Limit  int
	Cursor string
}

// Acquire takes the lock name (waiting up to opts.Wait), retrying transient failures
// with one Idempotency-Key. A refusal is an *Error: lock-held (with Holder and
// RetryAfter) when someone else holds it.
func (c *Client) Acquire(ctx context.Context, name string, opts AcquireOptions) (*Grant, error) {
	t, err := c.take(ctx, lockLine(name), opts, nil)
	if err != nil {
		return nil, err
	}
	return t.onlyGrant()
}

// Queue takes the lock when it is free and nobody is in line, or else a place in
// line: exactly one of the grant and the ticket is non-nil. Come back with Redeem.
func (c *Client) Queue(ctx context.Context, name string, opts QueueOptions) (*Grant, *Ticket, error) {
	t, err := c.take(ctx, lockLine(name), opts.AcquireOptions, &opts.TicketTTL)
	return t.grant, t.ticket, err
}

// Redeem comes back with a ticket, waiting up to wait for its turn: the grant when the
// ticket reached the head of the line (the same grant again when it already had), else
// the ticket with its new position. lock-lost when the ticket is no longer in line.
func (c *Client) Redeem(ctx context.Context, name, ticket string, wait time.Duration) (*Grant, *Ticket, error) {
	t, err := c.redeem(ctx, lockLine(name), ticket, wait, 0)
	return t.grant, t.ticket, err
}

// Leave gives up a place in line.
func (c *Client) Leave(ctx context.Context, name, ticket string) error {
	return c.leave(ctx, lockLine(name), ticket)
}

// Renew resets the lease to its granted TTL: the same token, a new ExpiresAt.
// lock-lost when the lock is no longer the caller's.
func (c *Client) Renew(ctx context.Context, name, lease string) (*Grant, error) {
	return c.renew(ctx, lockLine(name), lease, nil)
}

// RenewValue renews and replaces the published value.
func (c *Client) RenewValue(ctx context.Context, name, lease, value string) (*Grant, error) {
	return c.renew(ctx, lockLine(name), lease, &value)
}

// Release releases the lock; lock-lost when it is no longer the caller's.
func (c *Client) Release(ctx context.Context, name, lease string) error {
	return c.release(ctx, lockLine(name), lease)
}

// ForceRelease releases the lock whoever holds it (an admin API key only);
// lock-not-found when nobody holds it.
func (c *Client) ForceRelease(ctx context.Context, name string) error {
	l := lockLine(name)
	_, err := c.call(ctx, http.MethodDelete, l.path()+"?force=true", nil, nil, 0)
	return err
}

// Inspect tells who holds the lock (and the value it published), or nil when nobody does.
func (c *Client) Inspect(ctx context.Context, name string) (*LockInfo, error) {
	info, _, err := c.InspectAt(ctx, name, 0, 0)
	return info, err
}

// InspectAt is Inspect that also returns the index (etcd revision) the state was read
// at. With index > 0 it is a blocking read: it answers once the lock changed after
// index, or after wait unchanged, so a loop passing the last index back sees every
// change without polling.
func (c *Client) InspectAt(ctx context.Context, name string, index int64, wait time.Duration) (*LockInfo, int64, error) {
	var info LockInfo
	found, idx, err := c.inspect(ctx, lockLine(name), index, wait, &info)
	if err != nil || !found {
		return nil, idx, err
	}
	return &info, idx, nil
}

// Fence asks whether token is the fencing token of the lock's current holder, read
// linearizably: true, or false (the service's 409 fence-stale: that grant ended, or the
// token never was this lock's). A stale token is an answer, not an error: the error is
// for not being able to ask (no answer, 400, 401, 403). For a resource that can't
// compare tokens itself: ask just before each write, and write only on true.
func (c *Client) Fence(ctx context.Context, name string, token int64) (bool, error) {
	return c.fence(ctx, lockLine(name), token)
}

// WriteState writes the lock's guarded state (at most 65,536 UTF-8 bytes; more is
// payload-too-large) in the same etcd transaction that checks the grant of lease is
// the current one: lock-lost, and nothing written, when it is not. The state outlives
// the grant: the next holder reads it, and a stale holder can never overwrite it.
func (c *Client) WriteState(ctx context.Context, name, lease, value string) (*State, error) {
	return c.writeState(ctx, lockLine(name), lease, value)
}

// ReadState returns the lock's guarded state (with the token of the grant that wrote
// it), or nil when no holder has written one.
func (c *Client) ReadState(ctx context.Context, name string) (*State, error) {
	return c.readState(ctx, lockLine(name))
}

// List returns one page of held locks in name order.
func (c *Client) List(ctx context.Context, opts ListOptions) (*LockList, error) {
	var list LockList
	return &list, c.list(ctx, "lock", opts, &list)
}

// ListSemaphores returns one page of semaphores that have holders, in name order.
func (c *Client) ListSemaphores(ctx context.Context, opts ListOptions) (*SemaphoreList, error) {
	var list SemaphoreList
	return &list, c.list(ctx, "semaphore", opts, &list)
}

// line is a lock (a line of one holder) or a semaphore (of limit holders).
type line struct {
	kind  string // "lock" or "semaphore"
	name  string
	limit int // semaphores: sent with every acquire and redeem
}

func lockLine(name string) line { return line{kind: "lock", name: name} }

func (l line) path() string {
	// Names use A–Z a–z 0–9 . _ - : ~ @, all legal in a path segment; anything else is
	// escaped so that the service (not a misrouted URL) rejects it with a 400.
	var b strings.Builder
	for i := 0; i < len(l.name); i++ {
		ch := l.name[i]
		if ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || strings.IndexByte("._-:~@", ch) >= 0 {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return "/" + l.kind + "s/" + b.String()
}

func (l line) String() string { return l.kind + " " + l.name }

// taken is what an acquire or a redeem came back with: a grant (and the send time of
// the attempt that created it) or a place in line.
type taken struct {
	grant  *Grant
	since  time.Time
	ticket *Ticket
}

func (t taken) onlyGrant() (*Grant, error) {
	if t.grant == nil {
		return nil, clientError(CodeInvalidResponse, "", "", "the service answered a place in line to an acquire without queue")
	}
	return t.grant, nil
}

// take is an acquire; with ticketTTL (queue) it may answer a place in line.
func (c *Client) take(ctx context.Context, l line, o AcquireOptions, ticketTTL *int) (taken, error) {
	fields := map[string]any{}
	if o.TTL != 0 {
		fields["ttl"] = o.TTL
	}
	if o.Owner != "" {
		fields["owner"] = o.Owner
	}
	if o.Value != "" {
		fields["value"] = o.Value
	}
	if o.LockDelay != 0 {
		fields["lockDelay"] = o.LockDelay
	}
	if l.limit != 0 {
		fields["limit"] = l.limit
	}
	if ticketTTL != nil {
		fields["queue"] = true
		if *ticketTTL != 0 {
			fields["ticketTtl"] = *ticketTTL
		}
	}
	key := o.IdempotencyKey
	if key == "" {
		var err error
		if key, err = randomUUID(); err != nil {
			return taken{}, err
		}
	}
	return c.post(ctx, l, fields, o.Wait, o.RetryFor, key)
}

func (c *Client) redeem(ctx context.Context, l line, ticket string, wait, retryFor time.Duration) (taken, error) {
	fields := map[string]any{"ticket": ticket}
	if l.limit != 0 {
		fields["limit"] = l.limit
	}
	// No Idempotency-Key: redeeming again after a lost answer gets the same grant (200).
	return c.post(ctx, l, fields, wait, retryFor, "")
}

// post sends an acquire or a redeem, retrying transient failures with the same
// Idempotency-Key; each retry carries the wait that is left.
func (c *Client) post(ctx context.Context, l line, fields map[string]any, wait, retryFor time.Duration, key string) (taken, error) {
	start := time.Now()
	waitEnd := start.Add(wait)
	if retryFor == 0 {
		retryFor = defaultRetryFor
	} else if retryFor < 0 {
		retryFor = 0
	}
	giveUpAt := waitEnd.Add(retryFor)
	var header map[string]string
	if key != "" {
		header = map[string]string{"Idempotency-Key": key}
	}
	var firstSent time.Time
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		if firstSent.IsZero() {
			firstSent = sent
		}
		left := waitEnd.Sub(sent)
		if left < 0 {
			left = 0
		}
		if wait > 0 {
			fields["wait"] = float64(left.Milliseconds()) / 1000
		}
		res, err := c.call(ctx, http.MethodPost, l.path(), fields, header, left)
		if err == nil {
			switch res.status {
			case http.StatusAccepted:
				t, err := asTicket(res.body)
				if err == nil {
					return taken{ticket: t}, nil
				}
				err.Method, err.Path = http.MethodPost, l.path()
				return taken{}, err
			case http.StatusCreated, http.StatusOK:
				g, gerr := asGrant(res.body, l)
				if gerr == nil {
					// 201: created by this attempt. 200: a replay of an earlier attempt's grant.
					since := sent
					if res.status == http.StatusOK {
						since = firstSent
					}
					return taken{grant: g, since: since}, nil
				}
				gerr.Method, gerr.Path = http.MethodPost, l.path()
				err = gerr
			default:
				return taken{}, clientError(CodeInvalidResponse, http.MethodPost, l.path(), "unexpected status %d", res.status)
			}
		}
		var e *Error
		if !asError(err, &e) || !(e.Transient() || e.Code == CodeInvalidResponse) {
			return taken{}, err
		}
		delay := backoff(attempt, 2*time.Second, e.RetryAfter)
		if time.Now().Add(delay).After(giveUpAt) {
			return taken{}, err
		}
		if err := sleep(ctx, delay); err != nil {
			return taken{}, fmt.Errorf("leasehold: POST %s: %w", l.path(), err)
		}
	}
}

func (c *Client) leave(ctx context.Context, l line, ticket string) error {
	// In the body, like a lease: a secret in a URL ends up in access logs.
	_, err := c.call(ctx, http.MethodPost, l.path()+"/release", map[string]any{"ticket": ticket}, nil, 0)
	return err
}

func (c *Client) renew(ctx context.Context, l line, lease string, value *string) (*Grant, error) {
	fields := map[string]any{"lease": lease}
	if value != nil {
		fields["value"] = *value
	}
	path := l.path() + "/renew"
	res, err := c.call(ctx, http.MethodPut, path, fields, nil, 0)
	if err != nil {
		return nil, err
	}
	g, gerr := asGrant(res.body, l)
	if gerr != nil {
		gerr.Method, gerr.Path = http.MethodPut, path
		return nil, gerr
	}
	return g, nil
}

func (c *Client) release(ctx context.Context, l line, lease string) error {
	// POST …/release, as every leasehold client sends it: HTTP gives a DELETE's body no
	// meaning, so a proxy may drop it (and Node's fetch closes the connection after one).
	_, err := c.call(ctx, http.MethodPost, l.path()+"/release", map[string]any{"lease": lease}, nil, 0)
	return err
}

// inspect reads a lock's or a semaphore's state into out; found is false when nobody holds it.
func (c *Client) inspect(ctx context.Context, l line, index int64, wait time.Duration, out any) (found bool, idx int64, err error) {
	path := l.path()
	var extra time.Duration
	if index > 0 {
		q := url.Values{"index": {strconv.FormatInt(index, 10)}}
		if wait > 0 {
			q.Set("wait", strconv.FormatFloat(float64(wait.Milliseconds())/1000, 'f', -1, 64))
			extra = wait
		}
		path += "?" + q.Encode()
	}
	res, err := c.call(ctx, http.MethodGet, path, nil, nil, extra)
	var e *Error
	switch {
	case err == nil:
		if jerr := json.Unmarshal(res.body, out); jerr != nil {
			return false, 0, clientError(CodeInvalidResponse, http.MethodGet, path, "the answer is not JSON: %v", jerr)
		}
		found = true
	case asError(err, &e) && e.Status == http.StatusNotFound && e.Code == CodeLockNotFound:
		res = &answer{status: e.Status, body: e.Problem, header: e.header}
	default:
		return false, 0, err
	}
	idx, perr := strconv.ParseInt(res.header.Get("Leasehold-Index"), 10, 64)
	if perr != nil {
		var withIndex struct {
			Index int64 `json:"index"`
		}
		_ = json.Unmarshal(res.body, &withIndex)
		idx = withIndex.Index
	}
	if index > 0 && idx == 0 {
		return false, 0, clientError(CodeInvalidResponse, http.MethodGet, path, "the answer carries no index")
	}
	return found, idx, nil
}

func (c *Client) fence(ctx context.Context, l line, token int64) (bool, error) {
	path := l.path() + "/fence?token=" + strconv.FormatInt(token, 10)
	res, err := c.call(ctx, http.MethodGet, path, nil, nil, 0)
	if errors.Is(err, ErrFenceStale) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Only an answer that says so counts as current: a fence must never pass by accident.
	var f struct {
		Token   int64 `json:"token"`
		Current bool  `json:"current"`
	}
	if json.Unmarshal(res.body, &f) != nil || !f.Current || f.Token != token {
		return false, clientError(CodeInvalidResponse, http.MethodGet, path, "the 200 answer does not say the token is current")
	}
	return true, nil
}

func (c *Client) writeState(ctx context.Context, l line, lease, value string) (*State, error) {
	// The lease in the body, never in the URL.
	path := l.path() + "/state"
	res, err := c.call(ctx, http.MethodPut, path, map[string]any{"lease": lease, "value": value}, nil, 0)
	if err != nil {
		return nil, err
	}
	return asState(res.body, l, http.MethodPut, path)
}

// readState is nil, nil when no state was written (404 state-not-found).
func (c *Client) readState(ctx context.Context, l line) (*State, error) {
	path := l.path() + "/state"
	res, err := c.call(ctx, http.MethodGet, path, nil, nil, 0)
	if errors.Is(err, ErrStateNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return asState(res.body, l, http.MethodGet, path)
}

func (c *Client) list(ctx context.Context, kind string, o ListOptions, out any) error {
	q := url.Values{}
	if o.Prefix != "" {
		q.Set("prefix", o.Prefix)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	path := "/" + kind + "s"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	res, err := c.call(ctx, http.MethodGet, path, nil, nil, 0)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res.body, out); err != nil {
		return clientError(CodeInvalidResponse, http.MethodGet, path, "the answer is not JSON: %v", err)
	}
	return nil
}

// answer is a 2xx answer (or, for inspect, a 404) with its body read.
type answer struct {
	status int
	body   []byte
	header http.Header
}

// maxAnswer bounds what the client reads of one answer.
const maxAnswer = 4 << 20

// call sends one request with the client's deadline (plus extra, the time the request
// asks the service to wait). A non-2xx answer is an *Error; so is no answer, unless
// ctx ended first, in which case the error wraps ctx.Err().
func (c *Client) call(ctx context.Context, method, path string, body any, header map[string]string, extra time.Duration) (*answer, error) {
	// Checked at each call, not by NewClient: the fields may be set after it.
	if detail := c.unsendable(header); detail != "" {
		return nil, clientError(CodeInvalidConfig, method, path, "%s", detail)
	}
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("leasehold: %s %s: %w", method, path, err)
		}
		reader = bytes.NewReader(data)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout += extra
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, strings.TrimRight(c.URL, "/")+path, reader)
	if err != nil {
		return nil, fmt.Errorf("leasehold: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = noRedirects
	}
	res, err := hc.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(res.Body, maxAnswer))
		res.Body.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("leasehold: %s %s: %w", method, path, ctx.Err())
		}
		if rctx.Err() != nil {
			e := clientError(CodeTimeout, method, path, "no answer from %s within %s", c.URL, timeout)
			e.Err = err
			return nil, e
		}
		e := clientError(CodeNetworkError, method, path, "%s did not answer: %v", c.URL, unwrapURLError(err))
		e.Err = err
		return nil, e
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, problemError(method, path, res, data)
	}
	if res.StatusCode != http.StatusNoContent && len(bytes.TrimSpace(data)) == 0 {
		e := clientError(CodeInvalidResponse, method, path, "%d without a JSON body", res.StatusCode)
		e.Status = res.StatusCode
		return nil, e
	}
	return &answer{status: res.StatusCode, body: data, header: res.Header}, nil
}

// unsendable says what of the request no request may carry ("" when all is well),
// never quoting it: the URL's password and the API key are secrets. A URL with a user
// name or password would be sent as Basic auth, and printed in every network error's
// message; a line break in a header value would end it (net/http refuses it, as a
// failure an acquire would retry for RetryFor).
func (c *Client) unsendable(header map[string]string) string {
	if hasCredentials(c.URL) {
		return "the service URL has a user name or password in it: pass an API key (APIKey) instead"
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "the service URL must be http:// or https:// with a host"
	}
	if !headerValueOK(c.APIKey) {
		return "the API key " + cannotCarry
	}
	for name, value := range header {
		if !headerValueOK(value) {
			return name + " " + cannotCarry
		}
	}
	return ""
}

const cannotCarry = "has a character a header cannot carry (a line break, a control character, or one above U+00FF)"

// hasCredentials reports whether raw has a user name or password in it: in its authority
// as url.Parse reads it, or as a browser's parser would read one where url.Parse sees
// an opaque part or a path ("http:u:p@host", "http:/u:p@host").
func hasCredentials(raw string) bool {
	if u, err := url.Parse(raw); err == nil && u.User != nil && u.User.String() != "" {
		return true
	}
	_, rest, ok := strings.Cut(raw, ":")
	authority := strings.TrimLeft(rest, "/\\")
	if i := strings.IndexAny(authority, "/\\?#"); i >= 0 {
		authority = authority[:i]
	}
	return ok && strings.LastIndexByte(authority, '@') > 0
}

// headerValueOK reports whether a header can carry v: visible ASCII, spaces and tabs,
// and Latin-1, as the other leasehold clients define it (a byte that is not UTF-8 reads
// as U+FFFD, and is refused too).
func headerValueOK(v string) bool {
	for _, r := range v {
		if r != '\t' && (r < 0x20 || r == 0x7f || r > 0xff) {
			return false
		}
	}
	return true
}

// noRedirects is the default HTTP client: the service never redirects, and following a
// 307 or 308 re-sends the body (a lease, a ticket) to wherever it points. A redirect
// comes back as the answer instead, a CodeRedirected error.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// unwrapURLError drops *url.Error's "Post URL:" prefix, which repeats what the message says.
func unwrapURLError(err error) error {
	if u, ok := err.(*url.Error); ok {
		return u.Err
	}
	return err
}

func asGrant(body []byte, l line) (*Grant, *Error) {
	var g Grant
	if json.Unmarshal(body, &g) != nil || g.Token <= 0 || g.Lease == "" || g.TTL <= 0 || (l.kind == "semaphore" && g.Limit <= 0) {
		return nil, &Error{Code: CodeInvalidResponse, Detail: "the service's answer is not a grant of a " + l.kind}
	}
	return &g, nil
}

func asState(body []byte, l line, method, path string) (*State, error) {
	var s struct {
		State
		Value *string `json:"value"`
	}
	if json.Unmarshal(body, &s) != nil || s.Value == nil || s.Token <= 0 || s.Revision <= 0 || s.UpdatedAt.IsZero() {
		return nil, clientError(CodeInvalidResponse, method, path, "the service's answer is not the state of a %s", l.kind)
	}
	s.State.Value = *s.Value
	return &s.State, nil
}

func asTicket(body []byte) (*Ticket, *Error) {
	var t struct {
		Ticket   string `json:"ticket"`
		Position *int   `json:"position"`
		TTL      int    `json:"ttl"`
	}
	if json.Unmarshal(body, &t) != nil || t.Ticket == "" || t.Position == nil || t.TTL <= 0 {
		return nil, &Error{Code: CodeInvalidResponse, Detail: "the service's 202 answer is not a place in line"}
	}
	return &Ticket{Ticket: t.Ticket, Position: *t.Position, TTL: t.TTL}, nil
}
