package actor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shardStub plays a shard for one owner: the test goroutine is the actor,
// and Post hands the messages workers post back to it.
type shardStub struct {
	env   Env[string, int]
	stats Stats
	posts chan any
}

func newShardStub(t *testing.T) *shardStub {
	s := &shardStub{posts: make(chan any, 16)}
	pool := NewPool(Linger)
	t.Cleanup(pool.Close)
	s.env = Env[string, int]{
		Pool:     pool,
		Stats:    &s.stats,
		Errors:   Errors{Closed: errors.New("closed"), Panic: func(v any, _ []byte) error { return errors.New("panic") }},
		Post:     func(m any) { s.posts <- m },
		Finished: func() {},
	}
	return s
}

// done waits for the Done a worker posts and handles it.
func (s *shardStub) done(t *testing.T, k *Owner[string, int]) {
	t.Helper()
	select {
	case m := <-s.posts:
		d, ok := m.(Done[string, int])
		require.True(t, ok, "posted %T, want Done", m)
		k.Finish(d.F)
	case <-time.After(10 * time.Second):
		t.Fatal("fn's Done never posted")
	}
}

func fnReturning(v int) func(context.Context) (int, error) {
	return func(context.Context) (int, error) { return v, nil }
}

// A Leave posted for a caller of a flight that was answered, and handled
// only after the owner was recycled and reused for another key, must not
// touch the new key's flight (it would count its only caller out and
// abandon it).
func TestStaleLeaveAfterReuseIsIgnored(t *testing.T) {
	s := newShardStub(t)
	ctx, cancel := context.WithCancel(context.Background()) // a cancellable ctx: fn goes to a worker
	defer cancel()
	k := NewOwner("a", &s.env)
	w1 := &Waiter[string, int]{Ctx: ctx, Fn: fnReturning(1), Wake: make(chan struct{}, 2)}
	k.Join(w1)
	require.NoError(t, w1.Err)
	s.done(t, k)
	require.Equal(t, 1, w1.Val, "the first caller's result is on its waiter")
	require.True(t, k.Idle())
	require.True(t, k.Recyclable(), "one caller, no timer: the owner can be reused")

	k.Recycle()
	k.Reuse("b")
	w2 := &Waiter[string, int]{Ctx: ctx, Fn: fnReturning(2), Wake: make(chan struct{}, 2)}
	k.Join(w2)
	require.Same(t, w1.Flight, w2.Flight, "the reused owner's first flight is the one w1 was in")
	k.Leave(w1) // stale: w1's caller left as its flight was answered
	s.env.Publish()
	assert.Equal(t, int64(1), s.stats.Waiters(), "the stale leave counted b's caller out")
	assert.Zero(t, s.stats.Abandoned.Load(), "the stale leave abandoned b's flight")
	s.done(t, k)
	assert.Equal(t, 2, w2.Val)
	assert.NoError(t, w2.Res)
}

// A shared flight answers each Do caller on its own waiter, so it can be
// reused too: the second caller got one signal, with the result, and never
// reads the flight again.
func TestSharedFlightAnswersEachWaiter(t *testing.T) {
	s := newShardStub(t)
	release := make(chan struct{})
	k := NewOwner("a", &s.env)
	fn := func(context.Context) (int, error) { <-release; return 1, nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w1 := &Waiter[string, int]{Ctx: ctx, Fn: fn, Wake: make(chan struct{}, 2)}
	w2 := &Waiter[string, int]{Ctx: ctx, Fn: fn, Wake: make(chan struct{}, 2)}
	k.Join(w1)
	k.Join(w2)
	assert.False(t, w1.Queued(), "the first caller gets a join signal")
	assert.True(t, w2.Queued(), "a joiner waits for its result")
	close(release)
	s.done(t, k)
	require.True(t, k.Idle())
	assert.True(t, k.Recyclable())
	assert.True(t, w2.Signalled(1))
	assert.True(t, w2.Answered)
	assert.Equal(t, 1, w2.Val)
	assert.True(t, w2.Shared)
	assert.True(t, w1.Signalled(1), "its result signal (the join signal is the shard's, not sent here)")
	assert.Equal(t, 1, w1.Val)
	assert.True(t, w1.Shared)
}

// fn may keep its context after it returns; it must stay cancelled and keep
// its own caller's values when the owner is reused for another key.
func TestFlightContextOutlivesReuse(t *testing.T) {
	s := newShardStub(t)
	type keyT struct{}
	var kept [2]context.Context
	k := NewOwner("a", &s.env)
	for i := range 2 {
		if i > 0 {
			require.True(t, k.Recyclable())
			k.Recycle()
			k.Reuse("b")
		}
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), keyT{}, i))
		w := &Waiter[string, int]{Ctx: ctx, Wake: make(chan struct{}, 2),
			Fn: func(ctx context.Context) (int, error) { kept[i] = ctx; return i, nil }}
		k.Join(w)
		s.done(t, k)
		cancel()
	}
	require.NotSame(t, kept[0], kept[1])
	for i, ctx := range kept {
		assert.ErrorIs(t, ctx.Err(), context.Canceled, "flight %d's ctx after fn returned", i)
		assert.Equal(t, i, ctx.Value(keyT{}), "flight %d's ctx values", i)
	}
}

// The flight's ctx carries the first caller's values but never its
// cancellation, context.Cause included.
func TestFlightContextHidesCallerCancellation(t *testing.T) {
	s := newShardStub(t)
	type keyT struct{}
	cause := errors.New("the caller went away")
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), keyT{}, "v"))
	in, release := make(chan context.Context), make(chan struct{})
	k := NewOwner("a", &s.env)
	w := &Waiter[string, int]{Ctx: ctx, Wake: make(chan struct{}, 2),
		Fn: func(ctx context.Context) (int, error) { in <- ctx; <-release; return 1, nil }}
	k.Join(w)
	fctx := <-in
	cancel(cause)
	assert.NoError(t, fctx.Err())
	assert.NoError(t, context.Cause(fctx), "the caller's cause shows through fn's ctx")
	assert.Equal(t, "v", fctx.Value(keyT{}))
	child, stop := context.WithCancel(fctx)
	defer stop()
	assert.NoError(t, child.Err(), "a child of fn's ctx was cancelled with the caller")
	close(release)
	s.done(t, k)
	assert.ErrorIs(t, child.Err(), context.Canceled, "a child of fn's ctx is cancelled with it")
	assert.Equal(t, context.Canceled, context.Cause(fctx), "fn's ctx ended with its caller's cause")
	require.NotNil(t, cancelCtxKey, "package context's key was not learnt")
}

// With Env.PrivateCtx, a retired owner's context is reused by the next
// flight, reset (even if it was ended): live, the new caller's values, no deadline, and a Done
// channel of its own (the old one was closed when its flight ended).
// Without it, every flight gets a context of its own.
func TestPrivateCtxReuse(t *testing.T) {
	for _, private := range []bool{false, true} {
		s := newShardStub(t)
		s.env.PrivateCtx = private
		type key struct{}
		// Cancellable: fn goes to a worker.
		ctxA, cancelA := context.WithCancel(context.WithValue(context.Background(), key{}, "a"))
		defer cancelA()
		ctxB, cancelB := context.WithCancel(context.WithValue(context.Background(), key{}, "b"))
		defer cancelB()
		k := NewOwner("a", &s.env)
		wa := &Waiter[string, int]{Ctx: ctxA, Fn: fnReturning(1), Wake: make(chan struct{}, 2)}
		k.Join(wa)
		require.NoError(t, wa.Err)
		first := wa.Flight.ctx
		doneA := first.Done()
		s.done(t, k)
		if private {
			// Retire does not end a private context (nobody could see it);
			// abandoning or closing a flight does: end it as they would.
			first.cancel(ctxCanceled)
		}
		require.Error(t, first.Err(), "the flight's context ended")
		require.True(t, k.Recyclable())
		k.Recycle()

		k2 := NewOwner("b", &s.env) // another owner of the shard: the context may travel
		wb := &Waiter[string, int]{Ctx: ctxB, Fn: fnReturning(2), Wake: make(chan struct{}, 2)}
		k2.Join(wb)
		c := wb.Flight.ctx
		assert.Equal(t, private, c == first, "PrivateCtx %v: the context reused", private)
		assert.NoError(t, c.Err(), "the new flight's context is live")
		assert.Equal(t, "b", c.Value(key{}), "the new caller's values")
		_, hasDeadline := c.Deadline()
		assert.False(t, hasDeadline)
		select {
		case <-c.Done():
			t.Error("the new flight's Done is closed")
		default:
		}
		assert.NotEqual(t, doneA, c.Done(), "a Done channel of its own")
		s.done(t, k2)
	}
}
