package flight

import (
	"context"
	"errors"
	"time"
)

// DefaultMaxEntries is the bound on retained results when WithTTL or
// WithErrorTTL is set and WithMaxEntries is not.
const DefaultMaxEntries = 100_000

// WithTTL keeps each successful result for d after its flight ends: a call
// for the key within d gets it at once, with shared true, without running fn
// and without waiting for the key's actor (a read lock and a map look-up on
// the caller's goroutine; no allocation). That makes a dedup window for
// repeated requests and a memo of hot results.
//
// A result is retained only if its flight was still attached to its key
// when fn returned: not one that was abandoned, timed out or forgotten
// (whose own callers still get it). Forget drops the key's retained result.
// Expired results are dropped by a timer, without any caller asking; an idle
// coordinator still holds no goroutine. WithMaxEntries bounds how many are
// kept. 0, the default, retains nothing. New panics if d < 0; a d too large
// to add to the current time is clamped (about 292 years).
//
// It applies to New and NewBatcher (which validates it the same way). On a
// Batcher it keeps each key's value for d after its batch answered it: a
// load of a key with a retained result (Load, LoadChan, each key of
// LoadMany) is answered at once on the caller's goroutine, with no message
// and without joining a batch; a key whose every caller left is not
// retained. Close drops every retained result.
func WithTTL(d time.Duration) Option {
	return &option{id: optTTL, d: d}
}

// WithErrorTTL keeps error results for d, as WithTTL keeps successful ones
// (negative caching). Only fn's own errors are retained: never a context
// error, the WithTimeout expiry, a *PanicError, ErrGoexit, ErrClosed,
// ErrOverloaded or ErrRecursiveCall, matched as WithRetry's default
// predicate matches them (errors.Is, and errors.As for *PanicError), so
// neither is an error that wraps or joins one of them, such as a
// *PanicError fn got from another flight. A retained error is never
// refreshed ahead: it expires. 0, the default, retains no error. New panics
// if d < 0.
//
// It applies to New and NewBatcher. On a Batcher the errors retained are a
// key's own: its entry of a KeyErrors, or ErrNotFound (negative caching of a
// key the source lacks), filtered as above; a batch-wide error (any other
// error of fn, a panic, Goexit, the timeout) says nothing about one key and
// is never retained.
func WithErrorTTL(d time.Duration) Option {
	return &option{id: optErrorTTL, d: d}
}

// WithRefreshAhead makes a call that finds a successful result older than d
// (and younger than its TTL) get it at once and start one background refresh
// of the key: at most one per key at a time, whatever the number of callers.
// The refresh is an execution like any other (it counts in Flights and
// InFlight, and Stats.Refreshes counts it); it runs the triggering caller's
// fn with a ctx that carries that caller's values but none of its
// cancellation, bounded by WithTimeout and cancelled by Close. A successful
// refresh replaces the result and restarts its TTL; a failed one keeps the
// old result until its TTL ends. Each retained result is refreshed at most
// once: after a failed refresh, later hits start none (a failing upstream
// sees one refresh per retained result, not one per hit), and the first
// call after the TTL runs fn as any miss does.
//
// A refresh is nobody's call, so nobody waits for it: a caller that misses
// while it runs (the result expired, was evicted or forgotten) never joins
// it. Its own flight replaces the refresh, which is cancelled (counted in
// Stats.Abandoned) and not retained; as executions of a key never overlap,
// the caller's fn runs once the refresh's fn has returned, at once if it
// honours its ctx. Forget cancels a running refresh too. New panics unless
// 0 < d < the WithTTL duration.
//
// It applies to New and NewBatcher (same validation). On a Batcher a
// refresh is a load of its key like any other, collected into batches with
// the other loads (many keys refreshed together make few calls of fn, at
// most WithMaxBatch keys each), at most one per key at a time; it counts in
// BatchStats.Loads as a load of its key and in BatchStats.Refreshes. A
// failed refresh retains nothing: the old value is served until its TTL.
func WithRefreshAhead(d time.Duration) Option {
	return &option{id: optRefreshAhead, d: d}
}

// WithMaxEntries bounds the results retained at once across the
// coordinator (default DefaultMaxEntries): Stats.Entries, and the memory
// the results hold, never go beyond n results. Beyond it, a new result
// evicts one chosen by the CLOCK policy over all of the coordinator's
// results, whichever shard holds it (an approximation of least recently
// used: a hit marks its result, and eviction skips marked results once), so
// a new result is always retained, whatever the number of shards. A removed
// result (expired, evicted, replaced, forgotten) is released at once. Cost:
// one mutex shared by the shards, taken to retain, expire or remove a
// result, never by a hit. New panics if n < 1. It applies to New and
// NewBatcher (BatchStats.Entries is bounded the same way).
func WithMaxEntries(n int) Option {
	return &option{id: optMaxEntries, n: n}
}

// retainableErr reports whether WithErrorTTL may retain err: fn's own error,
// not one of those its doc excludes.
func retainableErr(err error) bool {
	var pe *PanicError
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.As(err, &pe) && !errors.Is(err, ErrGoexit) && !errors.Is(err, ErrClosed) &&
		!errors.Is(err, ErrOverloaded) && !errors.Is(err, ErrRecursiveCall)
}
