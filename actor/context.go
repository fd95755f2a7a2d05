package actor

import (
	"context"
	"math"
	"time"

	"github.com/actorflight/flight/internal/fnctx"
)

// flightCtx is the context fn runs with: one small allocation per flight
// (cheaper than context.WithCancel(context.WithoutCancel(ctx)), which
// allocates three times), and its Done channel is made only if fn asks for
// it. It is allocated apart from its Flight, and not reused, because fn
// may keep it after it returns (a goroutine fn started, say): it must then
// stay cancelled, and carry its own caller's values, even after the Flight
// has been reused for another key. The exception is Env.PrivateCtx, where
// fn never sees it (compat/singleflight): a retired owner's context is then
// reset and reused (Owner.Recycle), which took compat's Do from one
// allocation to none and from 534 to 394 ns (BenchmarkCompat, x/sync 191
// and 177 ns in the same runs; medians of 5).
//
// It carries the first caller's values but not its cancellation, and is
// cancelled by the shard (every caller left, Close) or by the WithTimeout
// timer. It implements the AfterFunc method that package context looks for
// on a parent ("afterFuncer"), through its embedded fnctx.Cancel, so
// contexts that fn derives from it are cancelled with it without a
// goroutine each, as with a stdlib parent.
type flightCtx struct {
	values   context.Context // the first caller's ctx: only its values are used (see Value)
	deadline time.Duration   // since epoch (monotonic); 0: none
	// began is when the flight's current attempt of fn started, since
	// epoch; only with Env.OnFinish. The flight's, not the context's: kept
	// here, by and for the shard, because a context's 64-byte size class
	// had room for it and a flight's did not (see Flight).
	began time.Duration

	fnctx.Cancel // Done, AfterFunc; its reason is ctxCanceled or ctxExpired once ended
}

const (
	ctxCanceled uint8 = fnctx.Live + 1 + iota
	ctxExpired
)

func (c *flightCtx) Deadline() (time.Time, bool) {
	if c.deadline == 0 {
		return time.Time{}, false
	}
	return epoch.Add(c.deadline), true
}

// setDeadline sets the deadline d after now. The sum saturates: a d too
// large to add (WithTimeout(math.MaxInt64), a common "no limit") gives the
// farthest deadline a Duration since epoch can hold, about 292 years ahead,
// never one that overflowed into the past.
func (c *flightCtx) setDeadline(d time.Duration) {
	now := time.Since(epoch)
	c.deadline = now + d
	if c.deadline < now {
		c.deadline = math.MaxInt64
	}
}

// passed reports whether c has a deadline and it has passed, whether or not
// the timer that cancels c has fired yet.
func (c *flightCtx) passed() bool {
	return c.deadline != 0 && time.Since(epoch) >= c.deadline
}

func (c *flightCtx) Err() error {
	switch c.Reason() {
	case ctxCanceled:
		return context.Canceled
	case ctxExpired:
		return context.DeadlineExceeded
	}
	return nil
}

// selfKey is the key under which a flight's context gives itself: Value
// returns the innermost flightCtx among a context's ancestors, so that a
// key actor can tell a call made from inside fn (see Owner.Join).
type selfKey struct{}

// Value returns the first caller's value for key. It is what
// context.WithoutCancel(first caller's ctx).Value would return, without the
// allocation of that wrapper: the one key package context itself looks up
// to find a parent's cancellation (its unexported cancelCtxKey, used by
// context.Cause and by WithCancel's propagation) is answered with nil, as
// WithoutCancel answers it, so the caller's cancellation never shows
// through.
func (c *flightCtx) Value(key any) any {
	switch key {
	case selfKey{}:
		return c
	case cancelCtxKey:
		return nil
	}
	return c.values.Value(key)
}

// cancelCtxKey is package context's unexported key for a context's
// cancelCtx (see fnctx.CancelCtxKey).
var cancelCtxKey = fnctx.CancelCtxKey

// callsFrom reports whether ctx is, or derives from, target: a flight's
// context. It walks the chain of flight contexts ctx descends from (fn
// calling Do for another key, whose fn calls Do, ...), not the whole
// context chain.
func callsFrom(ctx context.Context, target *flightCtx) bool {
	for {
		fc, _ := ctx.Value(selfKey{}).(*flightCtx)
		if fc == nil {
			return false
		}
		if fc == target {
			return true
		}
		ctx = fc.values
	}
}

func (c *flightCtx) String() string { return "flight.Context" }

// cancel ends c with state ctxCanceled or ctxExpired; only the first call
// has an effect.
func (c *flightCtx) cancel(state uint8) { c.End(state) }
