package worker

import (
	"errors"
	"time"
)

// Unavailable marks err as "the sink, or the dependency this handler needs, is down" rather
// than a problem with the event: connection refused, a timeout, a 503. Such failures count
// toward the circuit breaker (see BreakerConfig): after enough of them in a row the worker
// holds events instead of spending their attempts, and probes until the dependency is back.
// Without the breaker, or below its threshold, the event is retried per the retry policy like
// any error. The built-in sink forwarder returns it for connection errors, timeouts, 429, 502,
// 503 and 504. A nil err stays nil.
func Unavailable(err error) error { return UnavailableFor(err, 0) }

// UnavailableFor is Unavailable with the pause the dependency asked for (its Retry-After): the
// breaker does not probe again before it ends (capped at the max probe interval).
func UnavailableFor(err error, retryAfter time.Duration) error {
	if err == nil {
		return nil
	}
	return &unavailableError{err: err, class: "unavailable", retryAfter: max(retryAfter, 0)}
}

// IsUnavailable reports whether err (or an error it wraps) was marked Unavailable.
func IsUnavailable(err error) bool {
	_, ok := errors.AsType[*unavailableError](err)
	return ok
}

type unavailableError struct {
	err        error
	class      string // "connection refused", "timeout", "http 503", …: logged and reported
	retryAfter time.Duration
}

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }
