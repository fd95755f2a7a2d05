package flight

import (
	"errors"
	"time"
)

// ErrOpen is returned at once, without running fn, to a call for a key
// whose breaker is open (WithBreaker). Match it with errors.Is.
var ErrOpen = errors.New("flight: circuit open")

// errStale marks, inside the engine, an answer that is a stale value; the
// caller gets a nil error (and Result.Stale) in its place.
var errStale = errors.New("flight: stale value (internal marker)")

// WithStaleIfError keeps each successful result d longer than its TTL, as
// a stale value: it is never served as a hit (a call past the TTL runs a
// flight as usual), but when that flight fails every one of its waiters
// gets the stale value with a nil error (Result.Stale is true for DoChan;
// shared as usual), and Stats.Stale counts them. A failed flight answered
// with a stale value is never retained (WithErrorTTL); a successful flight
// replaces the stale value with its own result; Forget drops it; it is
// dropped d after its TTL by the store's timer, without any caller asking.
// With WithBreaker, a call for a key whose breaker is open gets the key's
// stale value, if it holds one, instead of ErrOpen (with shared true, as a
// hit; it counts in Stats.Stale, not Stats.Rejected).
//
// "Fails" means the flight's answer is any error but the coordinator's own
// refusals (ErrClosed, ErrOverloaded, ErrRecursiveCall): fn's error, a
// *PanicError, ErrGoexit, the WithTimeout expiry. A caller whose own ctx
// ends still gets ctx.Err(), and a call refused before it joins a flight
// (ErrInvalidKey, ErrNilFunc, ErrOverloaded, ErrClosed) is not answered
// with a stale value. A flight answered by its WithTimeout deadline gets
// the stale value then; a forgotten flight's callers get its own outcome
// (Forget dropped the stale value).
//
// A stale value is a retained result until it is dropped: it counts in
// Stats.Entries and against WithMaxEntries, whose CLOCK policy may evict
// it as any other result (an evicted stale value answers nothing). It
// costs nothing on the hit path and nothing on a flight that succeeds; a
// failed flight looks its key up in its shard's store (under the store's
// read lock, as a hit does).
//
// It applies to New and NewBatcher, which panic unless d > 0 and WithTTL is
// set. On a Batcher a key fails when fn names it in a KeyErrors or fails
// its whole batch (an error, a panic, Goexit, the timeout); ErrNotFound is
// an answer, never replaced by a stale value. Load returns the stale value
// with a nil error, LoadChan sets Result.Stale, LoadMany puts it among the
// values; BatchStats.Stale counts them.
func WithStaleIfError(d time.Duration) Option {
	return &option{id: optStaleIfError, d: d}
}

// WithBreaker gives every key a circuit breaker: after failures consecutive
// failed flights of a key (a flight fails as WithStaleIfError says: a
// panic and the WithTimeout expiry count; an abandoned or forgotten flight
// does not; a WithRetry loop is one flight, its final outcome counts) the
// key's breaker is open for cooldown: a call for the key gets ErrOpen at
// once, on the caller's goroutine, without running fn and without a
// message to the key's actor (or, with WithStaleIfError, the key's stale
// value while one is held: the one the key held when its breaker opened,
// while the store still holds it, until its stale window ends unless
// WithMaxEntries evicts it first). A result retained with WithTTL or
// WithErrorTTL is still a hit, and no WithRefreshAhead refresh starts
// while the breaker is open.
//
// After the cooldown the breaker is half-open: the next call starts one
// trial flight, which every caller arriving meanwhile joins, as always; its
// success closes the breaker, its failure opens it for another cooldown.
// Any successful flight resets the key's count; Forget closes its breaker;
// Close drops every breaker. Breakers of different keys are independent.
//
// A key's breaker state lives in its shard, not in a goroutine, and is
// dropped by a timer message without any caller asking: cooldown after the
// key's last failure while the breaker is closed (the count starts again),
// and, once half-open, cooldown later if no call has tried it (so at most
// 2·cooldown after the last failure), so that a half-open key still lets
// exactly one trial through when it is asked for again soon. An idle
// coordinator holds no goroutine and, once those timers have run, no
// breaker state. Stats.Open is the number of keys whose breaker is open now
// (not half-open), Stats.Rejected the calls refused with ErrOpen.
//
// Cost: while none of a shard's keys failed lately, a call and a flight's
// end each load one atomic counter more (≈ 2% of a distinct-key flight); a
// call refused with ErrOpen takes one read lock and one map look-up, as a
// hit does, and costs the same (bench/, BenchmarkBreakerCost); one that
// the key's retained result answers (its stale value, or a fresh result as
// a hit) looks in the store too, a second read lock and look-up; while
// a shard holds breaker state for some keys, a call for any other of its
// keys pays that look-up and a clock reading too (≈ 45 ns). It
// applies to New only: NewBatcher panics when given it. New panics unless
// failures >= 1 and cooldown > 0.
func WithBreaker(failures int, cooldown time.Duration) Option {
	return &option{id: optBreaker, n: failures, d: cooldown}
}
