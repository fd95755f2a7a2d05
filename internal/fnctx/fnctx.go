// Package fnctx is the cancellation half of the contexts the engines give
// fn: the Coordinator's flight context (package actor) and the Batcher's
// batch context (package batch). Each embeds a Cancel and adds its own
// values, deadline and Err.
//
// A Cancel makes its Done channel only if someone asks for it, and
// implements the AfterFunc method that package context looks for on a
// parent, so that contexts fn derives from it are cancelled with it
// without a goroutine each, as with a parent from the standard library.
package fnctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// CancelCtxKey is package context's unexported key for a context's
// cancelCtx, learnt once from the one call that looks it up on a context
// of ours: context.Cause asks a cancelled context's Value for it. A
// context that carries a caller's values but not its cancellation answers
// it with nil, as context.WithoutCancel does; else context.Cause, and
// WithCancel's propagation, would find the caller's cancelCtx through it.
var CancelCtxKey = func() (key any) {
	context.Cause(keyProbe{func(k any) { key = k }})
	return key
}()

// keyProbe is a context whose Value records the key it is asked for.
type keyProbe struct{ seen func(any) }

func (keyProbe) Deadline() (time.Time, bool) { return time.Time{}, false }
func (keyProbe) Done() <-chan struct{}       { return nil }
func (keyProbe) Err() error                  { return context.Canceled }
func (p keyProbe) Value(key any) any         { p.seen(key); return nil }

// Live is the reason of a Cancel that has not ended.
const Live uint8 = 0

// Cancel is a context's cancellation: whether and why it ended, its Done
// channel and the functions registered with AfterFunc. The zero value is
// live. Its methods are safe for concurrent use; End's first call wins.
//
// Most contexts are never watched: fn neither selects on Done nor derives
// a context from it. Ending one of those is one compare-and-swap on state,
// and Reason (hence Err) one atomic load; the mutex is taken only by Done,
// AfterFunc, and the End of a context one of them watched.
type Cancel struct {
	mu     sync.Mutex    // protects done and afters, and orders a watched context's End
	state  atomic.Uint32 // the reason (Live until it ends) in the low byte, and watched
	done   chan struct{}
	afters *afterFunc // registered by AfterFunc, newest first
}

// watched is set in Cancel.state, under its mutex, by the first Done or
// AfterFunc of a live context: its End must then close Done and run the
// functions, under the mutex.
const watched = 1 << 8

type afterFunc struct {
	f    func()
	next *afterFunc
}

var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done returns the channel closed when c ends, making it on first use.
func (c *Cancel) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.watch() {
			c.done = make(chan struct{})
		} else {
			c.done = closedDone
		}
	}
	return c.done
}

// watch marks c watched unless it has ended, and reports whether c is live;
// c.mu is held. Its compare-and-swap and End's unwatched one exclude each
// other: either End sees watched and takes the mutex, or watch sees c
// ended.
func (c *Cancel) watch() bool {
	for {
		s := c.state.Load()
		if uint8(s) != Live {
			return false
		}
		if s&watched != 0 || c.state.CompareAndSwap(s, s|watched) {
			return true
		}
	}
}

// Reason returns why c ended, or Live.
func (c *Cancel) Reason() uint8 { return uint8(c.state.Load()) }

// AfterFunc registers f to run when c ends (at once, on a goroutine, if it
// already has). package context calls it, with a non-blocking f, to
// propagate cancellation to children.
func (c *Cancel) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if !c.watch() {
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

// End ends c for reason (not Live): it closes Done and runs the functions
// registered with AfterFunc, on the caller's goroutine. Only the first call
// has an effect.
func (c *Cancel) End(reason uint8) {
	if c.state.CompareAndSwap(uint32(Live), uint32(reason)) {
		return // never watched: no channel to close, no function to run
	}
	c.mu.Lock()
	s := c.state.Load()
	if uint8(s) != Live {
		c.mu.Unlock()
		return
	}
	c.state.Store(s | uint32(reason)) // s is watched: no CAS of End's can succeed
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
