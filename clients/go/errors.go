package leasehold

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The problem codes the service sends, and the client's own codes for failures that
// have no HTTP answer behind them.
const (
	CodeInvalidRequest         = "invalid-request"
	CodeIdempotencyKeyMismatch = "idempotency-key-mismatch"
	CodeUnauthorized           = "unauthorized"
	CodeForbidden              = "forbidden"
	CodeLockNotFound           = "lock-not-found"
	CodeStateNotFound          = "state-not-found"
	CodeLockHeld               = "lock-held"
	CodeLockLost               = "lock-lost"
	CodeLimitMismatch          = "limit-mismatch"
	CodeFenceStale             = "fence-stale"
	CodePayloadTooLarge        = "payload-too-large"
	CodeUnsupportedMediaType   = "unsupported-media-type"
	CodeTooManyWaiters         = "too-many-waiters"
	CodeBackendUnavailable     = "backend-unavailable"
	CodeNotFound               = "not-found"
	CodeMethodNotAllowed       = "method-not-allowed"

	// CodeNetworkError: the service did not answer (connection refused, reset, cut).
	CodeNetworkError = "network-error"
	// CodeTimeout: no answer within the client's Timeout (plus the request's wait).
	CodeTimeout = "timeout"
	// CodeInvalidResponse: an answer that is not what the API promises.
	CodeInvalidResponse = "invalid-response"
	// CodeLockExpired: WithLock saw no successful renew before its own deadline.
	CodeLockExpired = "lock-expired"
	// CodeRedirected: the URL answered with a redirect, which the client does not follow
	// (it would send the request's lease or ticket on): point it at the service itself.
	CodeRedirected = "redirected"
	// CodeInvalidConfig: what the call would send is something no request may carry: a
	// Client URL with a user name or password in it (pass an APIKey instead), or one that
	// is not http:// or https:// with a host; an APIKey or a call's IdempotencyKey with a
	// character a header cannot carry (a line break, a control character, or one above
	// U+00FF). Nothing was sent, it is not retried, and the message never quotes the value.
	CodeInvalidConfig = "invalid-config"
)

// Sentinels for errors.Is: errors.Is(err, leasehold.ErrLockHeld) is true when err is
// (or wraps) an *Error whose Code is "lock-held". They match by code only.
var (
	ErrInvalidRequest         error = codeError(CodeInvalidRequest)
	ErrIdempotencyKeyMismatch error = codeError(CodeIdempotencyKeyMismatch)
	ErrUnauthorized           error = codeError(CodeUnauthorized)
	ErrForbidden              error = codeError(CodeForbidden)
	ErrLockNotFound           error = codeError(CodeLockNotFound)
	ErrStateNotFound          error = codeError(CodeStateNotFound)
	ErrFenceStale             error = codeError(CodeFenceStale)
	ErrLockHeld               error = codeError(CodeLockHeld)
	ErrLockLost               error = codeError(CodeLockLost)
	ErrLimitMismatch          error = codeError(CodeLimitMismatch)
	ErrTooManyWaiters         error = codeError(CodeTooManyWaiters)
	ErrBackendUnavailable     error = codeError(CodeBackendUnavailable)
	ErrNetwork                error = codeError(CodeNetworkError)
	ErrTimeout                error = codeError(CodeTimeout)
	ErrInvalidResponse        error = codeError(CodeInvalidResponse)
	ErrLockExpired            error = codeError(CodeLockExpired)
	ErrRedirected             error = codeError(CodeRedirected)
	ErrInvalidConfig          error = codeError(CodeInvalidConfig)
)

// codeError is a sentinel: it stands for every *Error with that code.
type codeError string

func (c codeError) Error() string { return "leasehold: " + string(c) }

// Holder is who holds a lock, as a 409 lock-held answer reports it.
type Holder struct {
	Owner     string    `json:"owner,omitempty"`
	Token     int64     `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// FieldError is one value a 400 invalid-request answer found wrong.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is why a call failed: the service's RFC 9457 problem (Status and Code from
// it), or a failure of the client's own (Status 0; Code network-error, timeout,
// invalid-response, lock-expired or invalid-config).
type Error struct {
	// Status is the HTTP status; 0 when no HTTP answer was received.
	Status int
	// Code is the problem's stable machine code (see the Code constants).
	Code string
	// Title and Detail are the problem's; Detail says what was wrong.
	Title  string
	Detail string
	// RetryAfter is the answer's Retry-After (0 when it had none).
	RetryAfter time.Duration
	// Holder is the current holder on a lock-held answer for a lock (nil for a
	// semaphore, or when the name is held back by a lock-delay).
	Holder *Holder
	// Position is, on a lock-held answer after a wait in line, the waiters that were
	// still ahead; nil when the answer did not say.
	Position *int
	// Reason is "lock-delay" on a lock-held answer while nobody holds the lock but its
	// last grant, which ended without a release, keeps it back for its LockDelay
	// (RetryAfter says how long); "" otherwise.
	Reason string
	// Limit is the holders' limit on a limit-mismatch answer.
	Limit int
	// Errors lists the values an invalid-request answer found wrong.
	Errors []FieldError
	// Problem is the problem body as received (for extension members), or nil.
	Problem json.RawMessage
	// Method and Path name the request (never a secret: leases and tickets travel in bodies).
	Method, Path string
	// Err is the underlying failure for network-error and timeout.
	Err error

	header http.Header
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("leasehold: ")
	if e.Method != "" {
		b.WriteString(e.Method + " " + e.Path + ": ")
	}
	if e.Status != 0 {
		b.WriteString(strconv.Itoa(e.Status) + " ")
	}
	b.WriteString(e.Code)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Unwrap returns the underlying network failure, if any.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrLockHeld) (and the other sentinels) match by code.
func (e *Error) Is(target error) bool {
	c, ok := target.(codeError)
	return ok && string(c) == e.Code
}

// Transient reports whether the failure is worth retrying: no answer, a timeout, or
// the service asking to come back later (429, 502, 503, 504).
func (e *Error) Transient() bool {
	switch e.Code {
	case CodeNetworkError, CodeTimeout:
		return true
	}
	switch e.Status {
	case 429, 502, 503, 504:
		return true
	}
	return false
}

// CodeOf returns the code of the *Error in err's chain, or "" when there is none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsLockHeld: someone else holds the lock (or every permit), after any wait.
func IsLockHeld(err error) bool { return errors.Is(err, ErrLockHeld) }

// IsLockLost: the lease (or ticket) is no longer the caller's: expired, revoked,
// force-released, or the lock is someone else's now.
func IsLockLost(err error) bool { return errors.Is(err, ErrLockLost) }

// IsLost: WithLock's lock was lost, told by the service (lock-lost) or by the
// client's own deadline (lock-expired).
func IsLost(err error) bool { return IsLockLost(err) || errors.Is(err, ErrLockExpired) }

// IsTransient: a failure worth retrying (see Error.Transient).
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Transient()
}

// problemBody is what a problem+json answer may carry.
type problemBody struct {
	Title    string       `json:"title"`
	Detail   string       `json:"detail"`
	Code     string       `json:"code"`
	Holder   *Holder      `json:"holder"`
	Position *int         `json:"position"`
	Reason   string       `json:"reason"`
	Limit    int          `json:"limit"`
	Errors   []FieldError `json:"errors"`
}

// problemError is the error for a non-2xx answer: its problem when the body is one,
// else its status.
func problemError(method, path string, res *http.Response, body []byte) *Error {
	e := &Error{Status: res.StatusCode, Method: method, Path: path, header: res.Header}
	if res.StatusCode >= 300 && res.StatusCode <= 399 {
		e.Code = CodeRedirected
		e.Detail = fmt.Sprintf("the URL answered with a redirect (%d), which the client does not follow (it would send the request's lease or ticket on); point the client at the service itself", res.StatusCode)
		return e
	}
	var p problemBody
	if json.Unmarshal(body, &p) == nil && p.Code != "" {
		e.Code, e.Title, e.Detail = p.Code, p.Title, p.Detail
		e.Holder, e.Position, e.Reason, e.Limit, e.Errors = p.Holder, p.Position, p.Reason, p.Limit, p.Errors
		e.Problem = append(json.RawMessage(nil), body...)
	} else {
		e.Code = "http-" + strconv.Itoa(res.StatusCode)
		if res.StatusCode == 503 {
			e.Code = CodeBackendUnavailable
		}
		e.Detail = http.StatusText(res.StatusCode)
	}
	e.RetryAfter = retryAfter(res.Header.Get("Retry-After"))
	return e
}

// retryAfter reads Retry-After as seconds or an HTTP date; 0 when absent or unreadable.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// clientError is a failure of the client's own, with no HTTP answer behind it.
func clientError(code, method, path, format string, args ...any) *Error {
	return &Error{Code: code, Method: method, Path: path, Detail: fmt.Sprintf(format, args...)}
}
