package actor

import (
	"context"
	"math"
	"sync"
	"time"
)

// flightCtx is the context fn runs with: one small allocation per flight
// (cheaper than context.WithCancel(context.WithoutCancel(ctx)), which
// allocates three times), and its Done channel is made only if fn asks for
// it. It is allocated apart from its Flight, never pooled, because fn may
// keep it after it returns (a goroutine fn started, say): it must then stay
// cancelled, and carry its own caller's values, even after the Flight has
// been reused for another key.
//
// It carries the first caller's values but not its cancellation, and is
// cancelled by the shard (every caller left, Close) or by the WithTimeout
// timer. It implements the AfterFunc method that package context looks for
// on a parent ("afterFuncer"), so contexts that fn derives from it are
// cancelled with it without a goroutine each, as with a stdlib parent.
type flightCtx struct {
	values   context.Context // the first caller's ctx: only its values are used (see Value)
	deadline time.Duration   // since epoch (monotonic); 0: none
	// began is when the flight's current attempt of fn started, since
	// epoch; only with Env.OnFinish. The flight's, not the context's: kept
	// here, by and for the shard, because a context's 64-byte size class
	// had room for it and a flight's did not (see Flight).
	began time.Duration

	mu     sync.Mutex // protects the fields below
	state  uint8      // ctxLive, ctxCanceled or ctxExpired
	done   chan struct{}
	afters *afterFunc // registered by AfterFunc, newest first
}

const (
	ctxLive uint8 = iota
	ctxCanceled
	ctxExpired
)

type afterFunc struct {
	f    func()
	next *afterFunc
}

var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

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

func (c *flightCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.state != ctxLive {
			c.done = closedDone
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *flightCtx) Err() error {
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	switch state {
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
// cancelCtx, learnt once from the one call that looks it up on a context
// of ours: context.Cause asks a cancelled context's Value for it.
var cancelCtxKey = func() (key any) {
	context.Cause(keyProbe{func(k any) { key = k }})
	return key
}()

// keyProbe is a context whose Value records the key it is asked for.
type keyProbe struct{ seen func(any) }

func (keyProbe) Deadline() (time.Time, bool) { return time.Time{}, false }
func (keyProbe) Done() <-chan struct{}       { return nil }
func (keyProbe) Err() error                  { return context.Canceled }
func (p keyProbe) Value(key any) any         { p.seen(key); return nil }

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

// AfterFunc registers f to run when c is cancelled (at once if it already
// is). package context calls it, with a non-blocking f, to propagate
// cancellation to children.
func (c *flightCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.state != ctxLive {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f, next: c.afters}
	c.afters = a
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for p := &c.afters; *p != nil; p = &(*p).next {
			if *p == a {
				*p = a.next
				return true
			}
		}
		return false
	}
}

// cancel cancels c (state ctxCanceled or ctxExpired); only the first call
// has an effect.
func (c *flightCtx) cancel(state uint8) {
	c.mu.Lock()
	if c.state != ctxLive {
		c.mu.Unlock()
		return
	}
	c.state = state
	if c.done == nil {
		c.done = closedDone
	} else {
		close(c.done)
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for a := afters; a != nil; a = a.next {
		a.f()
	}
}
