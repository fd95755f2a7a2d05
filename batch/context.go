package batch

import (
	"context"
	"sync"
	"time"
)

// batchCtx is the context fn runs with. It is embedded in its batch, so a
// batch costs no context allocation: it carries the first caller's values
// (Value asks that caller's ctx) but none of its cancellation, deadline or
// error, and its Done channel is made only if fn asks for it. The
// collector cancels it (every caller left, fn returned, Close); the
// WithTimeout timer expires it. It gives its batch for batchKey (see
// recursive.go).
//
// It implements the AfterFunc method that package context looks for on a
// parent, so that contexts fn derives from it are cancelled with it without
// a goroutine each, as with a stdlib parent. It is the same design as
// package actor's flight context; the two are kept apart for now because
// that one is embedded in the Coordinator's flights.
type batchCtx struct {
	values   context.Context // the first caller's ctx: its values only
	self     ctxBatch        // the batch, for batchKey
	deadline time.Time       // WithTimeout; zero: none

	mu     sync.Mutex // protects the fields below
	err    error      // nil while live; context.Canceled or DeadlineExceeded
	done   chan struct{}
	afters *afterFunc // registered by AfterFunc, newest first
}

type afterFunc struct {
	f    func()
	next *afterFunc
}

var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (c *batchCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *batchCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedDone
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *batchCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *batchCtx) Value(key any) any {
	if key == (batchKey{}) {
		return c.self
	}
	return c.values.Value(key)
}

func (c *batchCtx) String() string { return "flight.batchContext" }

// AfterFunc registers f to run when c is cancelled (at once, on a goroutine,
// if it already is). package context calls it, with a non-blocking f, to
// propagate cancellation to children.
func (c *batchCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.err != nil {
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

// cancel ends c with err; only the first call has an effect.
func (c *batchCtx) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
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
