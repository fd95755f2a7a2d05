package flight_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// hang bounds a wait for what must happen (see package internal/wait).
const hang = wait.Hang

func waitersOf[K comparable, V any](c *flight.Coordinator[K, V], n int) func() bool {
	return func() bool { return c.Stats().Waiters == n }
}

func idle[K comparable, V any](c *flight.Coordinator[K, V]) func() bool {
	return func() bool {
		s := c.Stats()
		return s.Keys == 0 && s.InFlight == 0 && s.Waiters == 0
	}
}

func newC[V any](t testing.TB, opts ...flight.Option) *flight.Coordinator[string, V] {
	t.Helper()
	c := flight.New[string, V](opts...)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

type doResult[V any] struct {
	v      V
	shared bool
	err    error
}

// goDo runs Do on a new goroutine and returns where its answer will arrive.
func goDo[V any](c *flight.Coordinator[string, V], ctx context.Context, key string, fn flight.Func[V]) <-chan doResult[V] {
	out := make(chan doResult[V], 1)
	go func() {
		v, shared, err := c.Do(ctx, key, fn)
		out <- doResult[V]{v, shared, err}
	}()
	return out
}

func TestDoReturnsValueAndError(t *testing.T) {
	c := newC[string](t)
	v, shared, err := c.Do(context.Background(), "k", func(context.Context) (string, error) { return "v", nil })
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	assert.False(t, shared, "a flight with one caller is not shared")

	boom := errors.New("boom")
	v, _, err = c.Do(context.Background(), "k", func(context.Context) (string, error) { return "partial", boom })
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, "partial", v, "the value is returned with the error, as fn gave it")
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, uint64(2), c.Stats().Flights)
}

// Rule 1: one execution per key at a time; every caller shares it.
func TestOneExecutionPerKey(t *testing.T) {
	c := newC[int](t)
	const n = 50
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(context.Context) (int, error) {
		calls.Add(1)
		<-release
		return 7, nil
	}
	outs := make([]<-chan doResult[int], n)
	for i := range outs {
		outs[i] = goDo(c, context.Background(), "hot", fn)
	}
	wait.Until(t, "all callers waiting", waitersOf(c, n))
	st := c.Stats()
	assert.Equal(t, 1, st.InFlight)
	assert.Equal(t, 1, st.Keys)
	assert.Equal(t, uint64(n-1), st.Joins)
	close(release)
	for _, out := range outs {
		r := wait.Recv(t, out)
		require.NoError(t, r.err)
		assert.Equal(t, 7, r.v)
		assert.True(t, r.shared, "Shared is true for every caller of a shared flight, the first included")
	}
	assert.Equal(t, int32(1), calls.Load())
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, uint64(1), c.Stats().Flights)

	// After the flight ends, the next call starts a new one.
	v, shared, err := c.Do(context.Background(), "hot", func(context.Context) (int, error) { return 8, nil })
	require.NoError(t, err)
	assert.Equal(t, 8, v)
	assert.False(t, shared)
	assert.Equal(t, uint64(2), c.Stats().Flights)
}

func TestDistinctKeysRunConcurrently(t *testing.T) {
	c := newC[string](t)
	release := make(chan struct{})
	a := goDo(c, context.Background(), "a", func(context.Context) (string, error) { <-release; return "A", nil })
	b := goDo(c, context.Background(), "b", func(context.Context) (string, error) { <-release; return "B", nil })
	wait.Until(t, "both keys in flight", func() bool { return c.Stats().InFlight == 2 })
	close(release)
	assert.Equal(t, "A", wait.Recv(t, a).v)
	assert.Equal(t, "B", wait.Recv(t, b).v)
}

// Rule 2: each caller leaves on its own ctx; the flight goes on.
func TestCallerLeavesOnItsContext(t *testing.T) {
	c := newC[string](t)
	release := make(chan struct{})
	fnCtx := make(chan context.Context, 1)
	fn := func(ctx context.Context) (string, error) {
		fnCtx <- ctx
		<-release
		return "done", nil
	}
	stay := goDo(c, context.Background(), "k", fn)
	wait.Until(t, "first caller waiting", waitersOf(c, 1))
	ctx, cancel := context.WithCancel(context.Background())
	leave := goDo(c, ctx, "k", fn)
	wait.Until(t, "second caller waiting", waitersOf(c, 2))

	cancel()
	r := wait.Recv(t, leave)
	assert.ErrorIs(t, r.err, context.Canceled)
	assert.Zero(t, r.v)
	wait.Until(t, "the leaver is gone", waitersOf(c, 1))

	ctxOfFn := wait.Recv(t, fnCtx)
	assert.NoError(t, ctxOfFn.Err(), "one caller leaving does not cancel the flight")
	close(release)
	r = wait.Recv(t, stay)
	require.NoError(t, r.err)
	assert.Equal(t, "done", r.v)
	assert.True(t, r.shared)
	assert.Equal(t, uint64(0), c.Stats().Abandoned)
}

func TestContextAlreadyDone(t *testing.T) {
	c := newC[int](t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	_, _, err := c.Do(ctx, "k", func(context.Context) (int, error) { ran = true; return 1, nil })
	assert.ErrorIs(t, err, context.Canceled)
	r := wait.Recv(t, c.DoChan(ctx, "k", func(context.Context) (int, error) { ran = true; return 1, nil }))
	assert.ErrorIs(t, r.Err, context.Canceled)
	assert.False(t, ran)
	assert.Equal(t, uint64(0), c.Stats().Flights)
}

// A Do whose ctx ends while its call is still queued at the shard returns
// at once: with a steady DoChan flood on its one shard, a Do with a 2 ms
// ctx must not wait for the shard to get to its call.
func TestDoLeavesWhileItsCallIsQueued(t *testing.T) {
	c := newC[int](t, flight.WithShards(1))
	stop := make(chan struct{})
	var flood sync.WaitGroup
	for range 2 {
		flood.Add(1)
		go func() {
			defer flood.Done()
			// At most `outstanding` unanswered calls per flooder: enough to
			// keep the shard's mailbox long (a Do must not wait behind
			// them), bounded so that memory is too.
			const outstanding = 200_000
			ring := make([]<-chan flight.Result[int], outstanding)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if old := ring[i%outstanding]; old != nil {
					<-old
				}
				ring[i%outstanding] = c.DoChan(context.Background(), "flood", func(context.Context) (int, error) { return i, nil })
			}
		}()
	}
	defer func() { close(stop); flood.Wait() }()
	worst := time.Duration(0)
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
		start := time.Now()
		_, _, _ = c.Do(ctx, "other", func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
		worst = max(worst, time.Since(start))
		cancel()
	}
	t.Logf("slowest of 50 Do calls with a 2 ms ctx: %v", worst)
	// A Do kept draining the flood for others would take seconds or hang;
	// 1 s leaves room for a loaded 2-core machine (411 ms seen under load).
	assert.Less(t, worst, time.Second, "a Do with a 2ms ctx took this long to return")
}

type ctxKey struct{}

// Rule 3: fn's ctx keeps the first caller's values and is cancelled when
// every caller has left; the abandoned flight is detached.
func TestAbandonedFlightIsCancelledAndDetached(t *testing.T) {
	c := newC[string](t)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "tenant-7"))
	fnStarted := make(chan context.Context, 1)
	oldReturn := make(chan struct{})
	first := goDo(c, ctx, "k", func(ctx context.Context) (string, error) {
		fnStarted <- ctx
		<-ctx.Done()
		<-oldReturn
		return "old", ctx.Err()
	})
	fctx := wait.Recv(t, fnStarted)
	assert.Equal(t, "tenant-7", fctx.Value(ctxKey{}), "fn's context carries the caller's values")

	cancel()
	assert.ErrorIs(t, wait.Recv(t, first).err, context.Canceled)
	<-fctx.Done() // the flight's context is cancelled once every caller left
	assert.ErrorIs(t, fctx.Err(), context.Canceled)
	wait.Until(t, "abandoned", func() bool { return c.Stats().Abandoned == 1 })

	// The next caller starts afresh: it never joins the dying flight, and
	// its fn runs only after the old one has returned.
	newRan := make(chan struct{})
	next := goDo(c, context.Background(), "k", func(context.Context) (string, error) {
		close(newRan)
		return "new", nil
	})
	wait.Until(t, "new caller waiting", waitersOf(c, 1))
	select {
	case <-newRan:
		t.Fatal("the new flight's fn ran while the abandoned one was still running")
	default:
	}
	assert.Equal(t, 1, c.Stats().InFlight)
	close(oldReturn)
	r := wait.Recv(t, next)
	require.NoError(t, r.err)
	assert.Equal(t, "new", r.v)
	assert.False(t, r.shared)
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, uint64(2), c.Stats().Flights)
}

// Stats never count a caller that has been answered, nor miss a running fn:
// read at once after each call returns (no other caller), Waiters and
// InFlight are 0, whether fn ran on the caller's goroutine (Background), on
// a worker (a cancellable ctx) or for a DoChan caller; and fn itself finds
// its execution in InFlight.
func TestStatsNeverCountAnAnsweredCaller(t *testing.T) {
	c := newC[int](t)
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 300 {
		key := fmt.Sprint("k", i)
		fn := func(context.Context) (int, error) {
			if st := c.Stats(); st.InFlight != 1 || st.Waiters != 1 {
				return 0, fmt.Errorf("fn saw InFlight %d, Waiters %d", st.InFlight, st.Waiters)
			}
			return i, nil
		}
		var v int
		var err error
		switch i % 3 {
		case 0:
			v, _, err = c.Do(context.Background(), key, fn)
		case 1:
			v, _, err = c.Do(cctx, key, fn)
		case 2:
			r := <-c.DoChan(cctx, key, fn)
			v, err = r.Val, r.Err
		}
		require.NoError(t, err, "call %d", i)
		require.Equal(t, i, v)
		st := c.Stats()
		require.Zero(t, st.Waiters, "call %d: an answered caller still counted", i)
		require.Zero(t, st.InFlight, "call %d: a returned fn still counted", i)
	}
}

// Rule 3b: WithTimeout cancels the execution's ctx and answers the waiters at
// the deadline even if fn ignores it.
func TestTimeout(t *testing.T) {
	c := newC[int](t, flight.WithTimeout(30*time.Millisecond))
	release := make(chan struct{})
	fnCtx := make(chan context.Context, 1)
	a := goDo(c, context.Background(), "k", func(ctx context.Context) (int, error) {
		fnCtx <- ctx
		<-release // ignores ctx on purpose
		return 1, nil
	})
	wait.Until(t, "first caller waiting", waitersOf(c, 1))
	b := c.DoChan(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
	ctx := wait.Recv(t, fnCtx)
	_, hasDeadline := ctx.Deadline()
	assert.True(t, hasDeadline)
	ra, rb := wait.Recv(t, a), wait.Recv(t, b)
	assert.ErrorIs(t, ra.err, context.DeadlineExceeded)
	assert.ErrorIs(t, rb.Err, context.DeadlineExceeded)
	assert.Contains(t, ra.err.Error(), "flight: ")
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	st := c.Stats()
	assert.Equal(t, uint64(1), st.Timeouts)
	assert.Equal(t, 0, st.Waiters)
	assert.Equal(t, 1, st.InFlight, "fn still runs; the key's next execution waits for it")

	close(release)
	wait.Until(t, "idle", idle(c))
	v, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 3, nil })
	require.NoError(t, err)
	assert.Equal(t, 3, v, "the key is usable after a timeout")
	assert.Equal(t, uint64(1), c.Stats().Timeouts)
}

// A fn that honours its ctx returns on the deadline; that is a timeout too.
func TestTimeoutHonouredByFn(t *testing.T) {
	c := newC[int](t, flight.WithTimeout(20*time.Millisecond))
	_, _, err := c.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, uint64(1), c.Stats().Timeouts)
}

// WithTimeout(math.MaxInt64), a common "no limit", gives fn a deadline in
// the far future, never one in the past, and a timeout derived from it
// fires.
func TestHugeTimeoutDoesNotOverflow(t *testing.T) {
	c := newC[time.Time](t, flight.WithTimeout(math.MaxInt64))
	dl, _, err := c.Do(context.Background(), "k", func(ctx context.Context) (time.Time, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return time.Time{}, errors.New("no deadline")
		}
		sub, cancel := context.WithTimeout(ctx, time.Millisecond)
		defer cancel()
		select {
		case <-sub.Done():
		case <-time.After(hang):
			return dl, errors.New("a timeout derived from fn's ctx never fired")
		}
		return dl, nil
	})
	require.NoError(t, err)
	assert.True(t, dl.After(time.Now().Add(100*365*24*time.Hour)), "deadline %v is not in the far future", dl)
}

// Once a flight's deadline has passed, every waiter's error matches
// context.DeadlineExceeded, even when fn returned its own error first.
func TestTimedOutWaiterNeverGetsFnError(t *testing.T) {
	c := newC[int](t, flight.WithTimeout(2*time.Millisecond))
	own := errors.New("fn's own error")
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_, _, err := c.Do(context.Background(), string(rune('a'+g))+string(rune(i)), func(ctx context.Context) (int, error) {
					<-ctx.Done()
					return 0, own
				})
				if !errors.Is(err, context.DeadlineExceeded) {
					mu.Lock()
					bad++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, bad, "waiters whose error did not match context.DeadlineExceeded")
}

// Rule 4: Forget detaches the live flight; waiters keep the old result; the
// old flight ending never detaches the new one (golang/go#31420).
func TestForget(t *testing.T) {
	c := newC[int](t)
	release1, release2 := make(chan struct{}), make(chan struct{})
	first := goDo(c, context.Background(), "k", func(context.Context) (int, error) { <-release1; return 1, nil })
	wait.Until(t, "first flight running", func() bool { return c.Stats().InFlight == 1 })
	joiner := goDo(c, context.Background(), "k", func(context.Context) (int, error) { return -1, nil })
	wait.Until(t, "joiner waiting", waitersOf(c, 2))

	c.Forget("k")
	wait.Until(t, "forgotten", func() bool { return c.Stats().Forgotten == 1 })
	second := goDo(c, context.Background(), "k", func(context.Context) (int, error) { <-release2; return 2, nil })
	wait.Until(t, "second caller waiting", waitersOf(c, 3))
	assert.Equal(t, 1, c.Stats().InFlight, "the new flight waits for the forgotten one's fn")

	close(release1)
	assert.Equal(t, 1, wait.Recv(t, first).v)
	assert.Equal(t, 1, wait.Recv(t, joiner).v, "callers already waiting get the old result")
	wait.Until(t, "second flight running", func() bool { return c.Stats().Flights == 2 && c.Stats().InFlight == 1 })

	// The old flight's end did not detach the new one: a third caller joins it.
	third := goDo(c, context.Background(), "k", func(context.Context) (int, error) { return -3, nil })
	wait.Until(t, "third joined", waitersOf(c, 2))
	close(release2)
	r2, r3 := wait.Recv(t, second), wait.Recv(t, third)
	assert.Equal(t, 2, r2.v)
	assert.Equal(t, 2, r3.v)
	assert.True(t, r3.shared)
	wait.Until(t, "idle", idle(c))
	st := c.Stats()
	assert.Equal(t, uint64(2), st.Flights)
	assert.Equal(t, uint64(1), st.Forgotten)

	// Forget of an idle key, or after Close, does nothing and does not block.
	c.Forget("nothing")
	require.NoError(t, c.Close())
	c.Forget("k")
	assert.Equal(t, uint64(1), c.Stats().Forgotten)
}

// Rule 5: a panic reaches every waiter as a *PanicError; the key is usable
// again at once.
func TestPanicReachesEveryWaiter(t *testing.T) {
	c := newC[int](t)
	release := make(chan struct{})
	cause := errors.New("cause")
	fn := func(context.Context) (int, error) {
		<-release
		panic(fmt.Errorf("wrapped: %w", cause))
	}
	outs := []<-chan doResult[int]{goDo(c, context.Background(), "k", fn), goDo(c, context.Background(), "k", fn)}
	ch := c.DoChan(context.Background(), "k", fn)
	wait.Until(t, "three waiters", waitersOf(c, 3))
	close(release)
	var errs []error
	for _, o := range outs {
		errs = append(errs, wait.Recv(t, o).err)
	}
	errs = append(errs, wait.Recv(t, ch).Err)
	for _, err := range errs {
		var pe *flight.PanicError
		require.ErrorAs(t, err, &pe)
		assert.ErrorIs(t, err, cause, "Unwrap exposes an error panic value")
		assert.Contains(t, string(pe.Stack), "coordinator_test.go", "the stack is the panicking goroutine's")
		assert.Contains(t, err.Error(), "flight: ")
	}
	v, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 5, nil })
	require.NoError(t, err)
	assert.Equal(t, 5, v)
	assert.Equal(t, uint64(1), c.Stats().Panics)

	// A non-error panic value unwraps to nil.
	_, _, err = c.Do(context.Background(), "k", func(context.Context) (int, error) { panic("plain") })
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "plain", pe.Value)
	assert.Nil(t, pe.Unwrap())
}

func TestGoexitReachesEveryWaiter(t *testing.T) {
	c := newC[int](t)
	release := make(chan struct{})
	fn := func(context.Context) (int, error) {
		<-release
		runtime.Goexit()
		return 0, nil
	}
	// A cancellable ctx: fn runs on a worker (TestGoexitOnCallersGoroutine
	// covers fn on the caller's goroutine).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := goDo(c, ctx, "k", fn)
	b := c.DoChan(context.Background(), "k", fn)
	wait.Until(t, "two waiters", waitersOf(c, 2))
	close(release)
	assert.ErrorIs(t, wait.Recv(t, a).err, flight.ErrGoexit)
	assert.ErrorIs(t, wait.Recv(t, b).Err, flight.ErrGoexit)
	v, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 1, nil })
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	assert.Equal(t, uint64(1), c.Stats().Panics)
}

// Rule 6: bad input gets a clear error.
func TestNilFunc(t *testing.T) {
	c := newC[int](t)
	_, _, err := c.Do(context.Background(), "k", nil)
	assert.ErrorIs(t, err, flight.ErrNilFunc)
	assert.ErrorIs(t, wait.Recv(t, c.DoChan(context.Background(), "k", nil)).Err, flight.ErrNilFunc)
	assert.Equal(t, uint64(0), c.Stats().Flights)
}

func TestNilContextIsBackground(t *testing.T) {
	c := newC[int](t)
	//lint:ignore SA1012 testing the documented nil-ctx behaviour
	v, _, err := c.Do(nil, "k", func(ctx context.Context) (int, error) { //nolint:staticcheck
		require.NotNil(t, ctx)
		return 1, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, v)
}

// fn calling Do or DoChan on its own key with its own ctx gets
// ErrRecursiveCall at once instead of waiting for itself.
func TestRecursiveCallOnOwnKey(t *testing.T) {
	c := newC[int](t)
	v, _, err := c.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
		_, _, err := c.Do(ctx, "k", func(context.Context) (int, error) { return 2, nil })
		if !errors.Is(err, flight.ErrRecursiveCall) {
			return 0, err
		}
		sub, cancel := context.WithCancel(ctx) // a ctx derived from fn's
		defer cancel()
		r := <-c.DoChan(sub, "k", func(context.Context) (int, error) { return 3, nil })
		if !errors.Is(r.Err, flight.ErrRecursiveCall) {
			return 0, r.Err
		}
		// Another key is fine.
		v, _, err := c.Do(ctx, "other", func(context.Context) (int, error) { return 4, nil })
		return v, err
	})
	require.NoError(t, err)
	assert.Equal(t, 4, v)
	wait.Until(t, "idle", idle(c))
}

// The same when the flight was forgotten while fn runs: the next flight of
// the key would wait for fn, which waits for it.
func TestRecursiveCallAfterForget(t *testing.T) {
	c := newC[int](t)
	v, _, err := c.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
		c.Forget("k")
		_, _, err := c.Do(ctx, "k", func(context.Context) (int, error) { return 2, nil })
		if !errors.Is(err, flight.ErrRecursiveCall) {
			return 0, err
		}
		return 1, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, v)
}

func TestMaxWaiters(t *testing.T) {
	c := newC[int](t, flight.WithMaxWaiters(3))
	release := make(chan struct{})
	fn := func(context.Context) (int, error) { <-release; return 9, nil }
	var outs []<-chan doResult[int]
	for range 3 {
		outs = append(outs, goDo(c, context.Background(), "k", fn))
	}
	wait.Until(t, "three admitted", waitersOf(c, 3))
	_, _, err := c.Do(context.Background(), "k", fn)
	assert.ErrorIs(t, err, flight.ErrOverloaded)
	assert.ErrorIs(t, wait.Recv(t, c.DoChan(context.Background(), "k", fn)).Err, flight.ErrOverloaded)
	// Another key is not affected.
	v, _, err := c.Do(context.Background(), "other", func(context.Context) (int, error) { return 1, nil })
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	close(release)
	for _, o := range outs {
		r := wait.Recv(t, o)
		require.NoError(t, r.err, "callers already admitted lose nothing")
		assert.Equal(t, 9, r.v)
	}
	assert.Equal(t, uint64(2), c.Stats().Overloaded)
}

func TestMaxInFlight(t *testing.T) {
	c := newC[int](t, flight.WithMaxInFlight(2), flight.WithShards(4))
	release := make(chan struct{})
	fn := func(context.Context) (int, error) { <-release; return 1, nil }
	a := goDo(c, context.Background(), "a", fn)
	b := goDo(c, context.Background(), "b", fn)
	wait.Until(t, "two flights", func() bool { return c.Stats().InFlight == 2 })
	_, _, err := c.Do(context.Background(), "c", fn)
	assert.ErrorIs(t, err, flight.ErrOverloaded)
	joiner := goDo(c, context.Background(), "a", fn)
	wait.Until(t, "joiner admitted", waitersOf(c, 3))
	close(release)
	for _, o := range []<-chan doResult[int]{a, b, joiner} {
		require.NoError(t, wait.Recv(t, o).err)
	}
	wait.Until(t, "idle", idle(c))
	_, _, err = c.Do(context.Background(), "c", func(context.Context) (int, error) { return 1, nil })
	assert.NoError(t, err, "units come back when flights end")
	assert.Equal(t, uint64(1), c.Stats().Overloaded)
}

// Rule 7: Close refuses, answers, cancels, waits.
func TestClose(t *testing.T) {
	c := flight.New[string, int]()
	fnCtx := make(chan context.Context, 1)
	fnReturned := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		fnCtx <- ctx
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // simulated cleanup: Close must wait for it
		close(fnReturned)
		return 1, nil
	}
	a := goDo(c, context.Background(), "k", fn)
	ch := c.DoChan(context.Background(), "k", fn)
	wait.Until(t, "two waiters", waitersOf(c, 2))
	ctx := wait.Recv(t, fnCtx)

	require.NoError(t, c.Close())
	select {
	case <-fnReturned:
	default:
		t.Fatal("Close returned before fn did")
	}
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.ErrorIs(t, wait.Recv(t, a).err, flight.ErrClosed)
	assert.ErrorIs(t, wait.Recv(t, ch).Err, flight.ErrClosed)

	_, _, err := c.Do(context.Background(), "k", fn)
	assert.ErrorIs(t, err, flight.ErrClosed)
	assert.ErrorIs(t, wait.Recv(t, c.DoChan(context.Background(), "k", fn)).Err, flight.ErrClosed)
	require.NoError(t, c.Close(), "Close is idempotent")
	st := c.Stats()
	assert.Equal(t, 0, st.Keys)
	assert.Equal(t, 0, st.InFlight)
	assert.Equal(t, 0, st.Waiters)
}

func TestCloseConcurrentCallsAllReturn(t *testing.T) {
	c := flight.New[string, int]()
	release := make(chan struct{})
	c.DoChan(context.Background(), "k", func(ctx context.Context) (int, error) { <-ctx.Done(); <-release; return 0, nil })
	wait.Until(t, "running", func() bool { return c.Stats().InFlight == 1 })
	done := make(chan struct{})
	for range 3 {
		go func() { c.Close(); done <- struct{}{} }()
	}
	close(release)
	for range 3 {
		wait.Recv(t, done)
	}
}

// Rule 8: DoChan's channel has a buffer of one, gets exactly one Result, and
// is never closed.
func TestDoChanContract(t *testing.T) {
	c := newC[int](t)
	release := make(chan struct{})
	ch := c.DoChan(context.Background(), "k", func(context.Context) (int, error) { <-release; return 4, nil })
	assert.Equal(t, 1, cap(ch))
	ch2 := c.DoChan(context.Background(), "k", func(context.Context) (int, error) { return -1, nil })
	wait.Until(t, "two waiters", waitersOf(c, 2))
	close(release)
	for _, ch := range []<-chan flight.Result[int]{ch, ch2} {
		r := wait.Recv(t, ch)
		require.NoError(t, r.Err)
		assert.Equal(t, 4, r.Val)
		assert.True(t, r.Shared)
	}
	wait.Until(t, "idle", idle(c))
	require.NoError(t, c.Close())
	for _, ch := range []<-chan flight.Result[int]{ch, ch2} {
		select {
		case r, ok := <-ch:
			t.Fatalf("a second receive got %v (open=%v): exactly one Result, never closed", r, ok)
		default:
		}
	}
}

func TestDoChanCallerLeaves(t *testing.T) {
	c := newC[int](t)
	release := make(chan struct{})
	fn := func(context.Context) (int, error) { <-release; return 3, nil }
	stay := c.DoChan(context.Background(), "k", fn)
	ctx, cancel := context.WithCancel(context.Background())
	leave := c.DoChan(ctx, "k", fn)
	ctx2, cancel2 := context.WithCancel(context.Background())
	leave2 := c.DoChan(ctx2, "k", fn)
	wait.Until(t, "three waiters", waitersOf(c, 3))
	cancel()
	r := wait.Recv(t, leave)
	assert.ErrorIs(t, r.Err, context.Canceled)
	assert.False(t, r.Shared)
	wait.Until(t, "two waiters", waitersOf(c, 2))
	close(release)
	assert.Equal(t, 3, wait.Recv(t, stay).Val)
	assert.Equal(t, 3, wait.Recv(t, leave2).Val)
	cancel2() // after the answer: nothing more arrives
	wait.Until(t, "idle", idle(c))
	select {
	case r := <-leave2:
		t.Fatalf("second result %v", r)
	case r := <-leave:
		t.Fatalf("second result %v", r)
	default:
	}
}

func TestStatsGaugesReturnToZero(t *testing.T) {
	c := newC[int](t, flight.WithTimeout(time.Second))
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			key := fmt.Sprint(i % 7)
			if i%5 == 0 {
				cancel()
			}
			c.Do(ctx, key, func(context.Context) (int, error) { return i, nil })
		}()
	}
	wg.Wait()
	wait.Until(t, "idle", idle(c))
}

func TestInvalidOptionsPanicAtNew(t *testing.T) {
	for name, opt := range map[string]flight.Option{
		"timeout":     flight.WithTimeout(-1),
		"maxWaiters":  flight.WithMaxWaiters(-1),
		"maxInFlight": flight.WithMaxInFlight(-1),
		"shards0":     flight.WithShards(0),
		"shardsBig":   flight.WithShards(1<<16 + 1),
		"system":      flight.WithActorSystem(nil),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				require.NotNil(t, r)
				assert.True(t, strings.HasPrefix(fmt.Sprint(r), "flight: "), "%v", r)
			}()
			flight.New[string, int](opt)
		})
	}
}

func TestWithActorSystem(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	c := flight.New[int, int](flight.WithActorSystem(sys), flight.WithShards(1))
	v, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 2, nil })
	require.NoError(t, err)
	assert.Equal(t, 2, v)
	require.NoError(t, c.Close())
	assert.False(t, sys.IsStopped(), "Close leaves an injected system running")
	// The system still works for its owner.
	c2 := flight.New[int, int](flight.WithActorSystem(sys))
	_, _, err = c2.Do(context.Background(), 1, func(context.Context) (int, error) { return 2, nil })
	require.NoError(t, err)
	require.NoError(t, c2.Close())
}

func TestWithLoggerLogsPanicOnce(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	h := slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil)
	c := newC[int](t, flight.WithLogger(slog.New(h)))
	release := make(chan struct{})
	fn := func(context.Context) (int, error) { <-release; panic("kaboom") }
	a := goDo(c, context.Background(), "the-key", fn)
	b := goDo(c, context.Background(), "the-key", fn)
	wait.Until(t, "two waiters", waitersOf(c, 2))
	close(release)
	wait.Recv(t, a)
	wait.Recv(t, b)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	assert.Equal(t, 1, strings.Count(out, "level=ERROR"), out)
	assert.Contains(t, out, "the-key")
	assert.Contains(t, out, "kaboom")
	assert.Contains(t, out, "coordinator_test.go", "the stack is logged")
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type structKey struct {
	Tenant string
	ID     int
}

func TestStructAndInterfaceKeys(t *testing.T) {
	c := flight.New[structKey, string]()
	defer c.Close()
	v, _, err := c.Do(context.Background(), structKey{"a", 1}, func(context.Context) (string, error) { return "a1", nil })
	require.NoError(t, err)
	assert.Equal(t, "a1", v)

	ci := flight.New[any, int]()
	defer ci.Close()
	v2, _, err := ci.Do(context.Background(), 42, func(context.Context) (int, error) { return 42, nil })
	require.NoError(t, err)
	assert.Equal(t, 42, v2)
}

// goid returns the current goroutine's id, read from its stack header.
func goid() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	return f[1] // "goroutine N [running]:"
}

// Rule 5's exception: a Do whose ctx can never be done, with no WithTimeout,
// runs fn on its own goroutine (it could not leave early anyway); any other
// caller's fn runs on a goroutine of the coordinator.
func TestFnRunsOnCallerWhenNothingIsLost(t *testing.T) {
	fnG := func(c *flight.Coordinator[string, string], ctx context.Context) (caller, fn string) {
		v, _, err := c.Do(ctx, "k", func(context.Context) (string, error) { return goid(), nil })
		require.NoError(t, err)
		return goid(), v
	}
	plain := newC[string](t)
	caller, fn := fnG(plain, context.Background())
	assert.Equal(t, caller, fn, "Do with a ctx that cannot be done runs fn on its own goroutine")
	caller, fn = fnG(plain, nil)
	assert.Equal(t, caller, fn, "a nil ctx is Background")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	caller, fn = fnG(plain, ctx)
	assert.NotEqual(t, caller, fn, "a caller that can leave does not run fn")

	timed := newC[string](t, flight.WithTimeout(time.Hour))
	caller, fn = fnG(timed, context.Background())
	assert.NotEqual(t, caller, fn, "with WithTimeout the caller must be answerable at the deadline")

	ch := plain.DoChan(context.Background(), "k", func(context.Context) (string, error) { return goid(), nil })
	assert.NotEqual(t, goid(), wait.Recv(t, ch).Val, "DoChan never runs fn on the caller")
}

// runtime.Goexit in fn run on the first caller's goroutine ends that
// goroutine, as calling fn directly would; every other waiter gets ErrGoexit
// and the key is usable again at once.
func TestGoexitOnCallersGoroutine(t *testing.T) {
	c := newC[int](t)
	entered, release := make(chan struct{}), make(chan struct{})
	callerEnded := make(chan bool, 1)
	go func() {
		returned := false
		defer func() { callerEnded <- returned }()
		_, _, _ = c.Do(context.Background(), "k", func(context.Context) (int, error) {
			close(entered)
			<-release
			runtime.Goexit()
			return 0, nil
		})
		returned = true
	}()
	<-entered
	joiner := c.DoChan(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
	wait.Until(t, "two waiters", waitersOf(c, 2))
	close(release)
	assert.False(t, wait.Recv(t, callerEnded), "the caller's goroutine ended inside Do")
	r := wait.Recv(t, joiner)
	assert.ErrorIs(t, r.Err, flight.ErrGoexit)
	assert.True(t, r.Shared)
	v, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 3, nil })
	require.NoError(t, err)
	assert.Equal(t, 3, v)
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, uint64(1), c.Stats().Panics)
}
