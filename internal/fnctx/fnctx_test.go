package fnctx

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

// ctx is the smallest context built on a Cancel, as the engines build theirs.
type ctx struct{ Cancel }

func (*ctx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *ctx) Err() error {
	if c.Reason() != Live {
		return context.Canceled
	}
	return nil
}
func (*ctx) Value(any) any { return nil }

func TestCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := &ctx{}
	done := c.Done()
	assert.Equal(t, done, c.Done(), "one Done channel")
	child, cancelChild := context.WithCancel(c) // propagated through AfterFunc
	defer cancelChild()
	ran := 0
	stop := c.AfterFunc(func() { ran++ })
	assert.True(t, stop(), "stop before End removes the function")
	c.AfterFunc(func() { ran++ })
	c.End(2)
	c.End(3) // only the first End counts
	assert.Equal(t, uint8(2), c.Reason())
	assert.Equal(t, 1, ran, "a registered function runs once, a stopped one never")
	<-done
	<-child.Done()
	assert.ErrorIs(t, child.Err(), context.Canceled)
	late := make(chan struct{})
	assert.False(t, c.AfterFunc(func() { close(late) })(), "after End, f runs at once and stop reports false")
	<-late
	fresh := &ctx{}
	fresh.End(1)
	<-fresh.Done() // made after End: already closed
}

// CancelCtxKey is the key context.Cause looks up: a context that answers it
// with a cancelled parent's cancelCtx shows that parent's cause.
func TestCancelCtxKey(t *testing.T) {
	if CancelCtxKey == nil {
		t.Fatal("package context's key was not learnt")
	}
	cause := errors.New("cause")
	parent, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	leaky := valueCtx{Context: context.WithoutCancel(parent), v: parent.Value(CancelCtxKey)}
	assert.Equal(t, cause, context.Cause(leaky), "the learnt key is not the one context.Cause asks for")
}

// valueCtx is cancelled and answers CancelCtxKey with v.
type valueCtx struct {
	context.Context
	v any
}

func (valueCtx) Err() error { return context.Canceled }
func (c valueCtx) Value(key any) any {
	if key == CancelCtxKey {
		return c.v
	}
	return c.Context.Value(key)
}

// End's unwatched compare-and-swap races Done and AfterFunc, which mark
// the context watched: whichever wins, a Done channel asked for around an
// End is closed, and a function registered around it runs exactly once.
func TestWatchRacingEnd(t *testing.T) {
	defer goleak.VerifyNone(t)
	for i := range 20000 {
		c := &ctx{}
		var ran atomic.Int32
		ranOnce := make(chan struct{})
		start := make(chan struct{})
		var wg sync.WaitGroup
		var done <-chan struct{}
		wg.Go(func() { <-start; done = c.Done() })
		wg.Go(func() {
			<-start
			c.AfterFunc(func() {
				if ran.Add(1) == 1 {
					close(ranOnce)
				}
			})
		})
		wg.Go(func() { <-start; c.End(uint8(1 + i%2)) })
		close(start)
		wg.Wait()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Done never closed after End", i)
		}
		select {
		case <-ranOnce:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the AfterFunc never ran", i)
		}
		if got := c.Reason(); got != uint8(1+i%2) {
			t.Fatalf("round %d: Reason = %d", i, got)
		}
		c.End(3) // a second End changes nothing and runs nothing again
		if n := ran.Load(); n != 1 || c.Reason() != uint8(1+i%2) {
			t.Fatalf("round %d: ran %d times, Reason %d", i, n, c.Reason())
		}
	}
}

// BenchmarkEnd is a flight's context ended by its owner after fn returned,
// having never been watched (the common case: fn neither selects on Done
// nor derives a context), and its Err read once.
func BenchmarkEnd(b *testing.B) {
	c := &ctx{}
	for b.Loop() {
		*c = ctx{}
		if c.Err() != nil {
			b.Fatal("a fresh context has ended")
		}
		c.End(1)
	}
}
