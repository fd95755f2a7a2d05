package flight

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// WithRetry makes one flight run fn up to attempts times (the first
// included) while fn returns a retryable error, waiting backoff(n) before
// attempt n+1 (n = 1 after the first failure); every waiter gets the final
// outcome. However many callers share the key, there is one retry loop: the
// callers of a failing key never each retry it (a retry storm is what a
// coordinator exists to stop).
//
// A wait between attempts is a timer message to the key's actor, not a
// sleeping goroutine: 10,000 keys in backoff hold no goroutine. Callers can
// join the flight and leave it during a wait as at any time; when the last
// one leaves, no further attempt starts and the flight's ctx is cancelled.
// WithTimeout bounds the whole flight, waits included: a deadline that
// passes during a wait ends the flight with the timeout error, not fn's
// last error. Close ends a wait at once.
//
// By default every error is retryable except context errors, the
// WithTimeout expiry, a *PanicError and ErrGoexit; WithRetryIf changes that.
// A panic or Goexit is never retried. A nil backoff retries at once; a
// negative duration counts as 0. ExponentialBackoff is the usual choice. A
// panic in backoff is contained as a panic in fn is (see WithRetryIf).
//
// Forget during a wait detaches the flight as at any time: its callers keep
// it and get its outcome; the key's next flight starts at once, without
// waiting for the backoff (no fn runs during it). Executions of the key still
// never overlap: the forgotten flight's next attempt starts when its backoff
// is over and no other fn of the key runs (if one does, right after it
// returns, before the key's next flight that was created meanwhile, if any).
//
// Stats.InFlight does not count a flight during a wait (no fn of it runs);
// Stats.Keys and Stats.Waiters do.
//
// Counters: Stats.Flights counts every attempt (an execution of fn),
// Stats.Retries the attempts after a flight's first; the flight.duration
// histogram of WithMeterProvider records each attempt, and flight.callers
// each flight once, at its end. New panics if attempts < 1.
func WithRetry(attempts int, backoff func(n int) time.Duration) Option {
	return &option{id: optRetry, n: attempts, p: backoff}
}

// WithRetryIf sets which errors returned by fn WithRetry retries, replacing
// the default (WithRetry's: every error except context errors, the
// WithTimeout expiry, a *PanicError and ErrGoexit, matched with errors.Is and
// errors.As). It is called on the goroutine that handles the key's messages
// and must be quick and must not block. Whatever it says, a panic, a Goexit,
// the WithTimeout expiry and the end of the flight's own ctx are never
// retried. A panic in retryable (or in WithRetry's backoff) is contained as
// a panic in fn is: counted in Stats.Panics, logged, and every waiter of the
// flight gets a *PanicError. Without WithRetry it has no effect. New panics
// if retryable is nil.
func WithRetryIf(retryable func(error) bool) Option {
	return &option{id: optRetryIf, p: retryable, isNil: retryable == nil}
}

// defaultRetryable is WithRetry's default predicate: every error except
// context errors (the WithTimeout expiry matches context.DeadlineExceeded),
// a *PanicError (errors.As) and ErrGoexit.
func defaultRetryable(err error) bool {
	var pe *PanicError
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, ErrGoexit) && !errors.As(err, &pe)
}

// ExponentialBackoff returns a backoff for WithRetry with exponential growth
// and full jitter: before attempt n+1 it waits a uniformly random duration
// in [0, min(max, base·2^(n-1))] (n < 1 counts as 1; the product saturates
// at max, never overflows). It panics unless
// 0 < base ≤ max; every such pair, up to math.MaxInt64, and every n are
// valid. The returned function is safe for concurrent use and allocates
// nothing.
func ExponentialBackoff(base, max time.Duration) func(n int) time.Duration {
	if base <= 0 || max < base {
		panic(fmt.Sprintf("flight: ExponentialBackoff(%v, %v): need 0 < base ≤ max", base, max))
	}
	return func(n int) time.Duration {
		ceil := base // n < 1 is taken as 1
		if k := n - 1; k >= 1 {
			// base·2^k, saturated at max without overflowing: base·2^k >
			// max exactly when base > max>>k.
			if k >= 63 || base > max>>k {
				ceil = max
			} else {
				ceil = base << k
			}
		}
		// Uint64N, not N(ceil+1): for ceil = math.MaxInt64, ceil+1 overflows
		// and rand.N panics.
		return time.Duration(rand.Uint64N(uint64(ceil) + 1))
	}
}
