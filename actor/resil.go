package actor

import "errors"

// Stale-if-error and the per-key breaker (WithStaleIfError, WithBreaker).
//
// The key actor does not hold either: the stale value lives in its shard's
// store of retained results and the breaker state in its shard's breakers,
// both of which outlive the key actor (an idle key has none). What the key
// actor does is tell its shard the outcome of each flight that is still
// attached to its key as that flight is answered, through Env.Outcome, and
// answer the waiters of a failed flight with the stale value the shard
// hands back. A flight that was abandoned, forgotten or timed out before
// its fn returned is not attached any more: its end changes nothing (the
// guard of golang/go#31420 again), except that a timed-out flight was
// judged when its deadline answered it.

// failed reports whether err, the answer a flight is about to give, is a
// failure for WithStaleIfError and WithBreaker: any error except the
// coordinator's own refusals (ErrClosed, ErrOverloaded, ErrRecursiveCall).
// A panic, Goexit and the WithTimeout expiry are failures. A caller's own
// ctx ending never reaches here: that caller leaves the flight.
func (k *Owner[K, V]) failed(err error) bool {
	if err == nil {
		return false
	}
	e := &k.env.Errors
	return !errors.Is(err, e.Closed) && !errors.Is(err, e.Overloaded) && !errors.Is(err, e.Recursive)
}

// verdict tells the shard the outcome of f, about to be answered with err,
// if f is still attached to its key (Env.Outcome), and returns the stale
// value to answer with instead when f failed and the key holds one.
func (k *Owner[K, V]) verdict(f *Flight[K, V], err error) (stale V, ok bool) {
	if k.env.Outcome == nil || k.open != f {
		return stale, false
	}
	return k.env.Outcome(k.Key, k.failed(err))
}

// publishStale answers every waiter of f with a stale value: a nil error
// for the caller, marked by Errors.Stale on its way through the engine.
func (k *Owner[K, V]) publishStale(f *Flight[K, V], val V) {
	k.env.Stats.Stale.Add(uint64(f.waiters))
	k.publish(f, val, k.env.Errors.Stale)
}
