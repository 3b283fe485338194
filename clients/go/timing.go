package leasehold

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// backoff is the delay before retry number attempt (0-based): Retry-After when the
// service gave one, else exponential from 100 ms up to limit; either way with jitter,
// so callers that failed together do not come back together.
func backoff(attempt int, limit, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter + jitter(250*time.Millisecond)
	}
	ceiling := limit
	if attempt < 30 {
		if d := 100 * time.Millisecond << attempt; d < ceiling {
			ceiling = d
		}
	}
	return ceiling/2 + jitter(ceiling/2)
}

// jitter is a random duration in [0, d), from crypto/rand: math/rand's global source
// is seeded the same in every process before Go 1.20, which would defeat the point.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return d / 2
	}
	return time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(d))
}

// sleep waits d, or until ctx ends (then its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// resetTimer re-arms t to fire after d, draining a fire that was not received.
func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// randomUUID is a version 4 UUID for Idempotency-Key.
func randomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("leasehold: no random Idempotency-Key: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func asError(err error, target **Error) bool { return errors.As(err, target) }
