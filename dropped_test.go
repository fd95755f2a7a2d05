package flight_test

// Tests for the ways a user trying the coordinator found it breaking its own
// rules: a coordinator closed under a call in progress, keys that cannot be
// hashed or are not equal to themselves, an overflowing WithTimeout, a
// timed-out waiter getting fn's own error, a Do that could not leave while
// its call was queued, and fn calling Do on its own key.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// gc runs the garbage collector enough times for cleanups to be queued and
// run (a cleanup runs on its own goroutine after the cycle that found its
// object unreachable).
func gc() {
	for range 5 {
		runtime.GC()
		runtime.Gosched()
	}
}

// A DoChan call on a coordinator nobody references any more is still
// answered with fn's result: the call in progress keeps the coordinator
// alive, so the garbage collector does not close it.
func TestDroppedCoordinatorAnswersDoChanInProgress(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	var fnErr error
	ch := func() <-chan flight.Result[int] {
		return flight.New[string, int]().DoChan(context.Background(), "k", func(ctx context.Context) (int, error) {
			close(started)
			select {
			case <-release:
				return 42, nil
			case <-ctx.Done():
				fnErr = ctx.Err()
				return 0, ctx.Err()
			}
		})
	}()
	<-started
	gc()
	close(release)
	r := wait.Recv(t, ch)
	require.NoError(t, r.Err, "fn's ctx: %v", fnErr)
	assert.Equal(t, 42, r.Val)
}

// The same with 100 goroutines blocked in Do on a local coordinator whose
// variable is dead once the last of them has called Do.
func TestDroppedCoordinatorAnswersDoInProgress(t *testing.T) {
	release := make(chan struct{})
	errs := make([]error, 100)
	var wg sync.WaitGroup
	func() {
		c := flight.New[string, int]()
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, errs[i] = c.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
					select {
					case <-release:
						return 1, nil
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				})
			}()
		}
		wait.Until(t, "100 waiters", waitersOf(c, len(errs)))
	}()
	gc()
	close(release)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "caller %d", i)
	}
}

// A coordinator dropped idle with WithLogger is closed by the garbage
// collector, and its route for protoactor's log lines goes with it.
func TestDroppedCoordinatorRemovesLogRoute(t *testing.T) {
	before := flight.LogRoutes()
	func() {
		c := flight.New[int, int](flight.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		_, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 1, nil })
		require.NoError(t, err)
		require.Equal(t, before+1, flight.LogRoutes())
	}()
	wait.Until(t, "the dropped coordinator's log route removed", func() bool {
		gc()
		return flight.LogRoutes() == before
	})
}

type nanHolder struct {
	Name string
	F    float64
}

// Keys that cannot be hashed, or that are not equal to themselves, get
// ErrInvalidKey on every path, never reach a shard and leave nothing behind;
// Forget of such a key does nothing. The coordinator goes on serving.
func TestInvalidKeys(t *testing.T) {
	for _, shards := range []int{1, 4} {
		c := flight.New[any, int](flight.WithShards(shards))
		fn := func(context.Context) (int, error) { return 1, nil }
		bad := []any{
			[]int{1}, map[string]int{}, func() {},
			math.NaN(), float32(math.NaN()), complex(math.NaN(), 0),
			nanHolder{"x", math.NaN()}, [2]float64{1, math.NaN()},
			struct{ A any }{[]int{1}}, [1]any{map[int]int{}},
		}
		for _, k := range bad {
			for range 11 {
				c.Forget(k) // must not fault the shard
			}
			_, _, err := c.Do(context.Background(), k, fn)
			require.ErrorIs(t, err, flight.ErrInvalidKey, "Do(%#v), %d shards", k, shards)
			r := wait.Recv(t, c.DoChan(context.Background(), k, fn))
			require.ErrorIs(t, r.Err, flight.ErrInvalidKey, "DoChan(%#v)", k)
		}
		st := c.Stats()
		assert.Zero(t, st.Keys+st.InFlight+st.Waiters, "%+v", st)
		assert.Zero(t, st.Flights, "no invalid key ran fn")
		// Valid keys of the same types still work.
		for _, k := range []any{1.5, "s", nanHolder{"x", 1}, [2]float64{1, 2}, struct{ A any }{1}} {
			v, _, err := c.Do(context.Background(), k, fn)
			require.NoError(t, err, "%#v", k)
			require.Equal(t, 1, v)
		}
		require.NoError(t, c.Close())
	}
}

// A float key that is NaN can never be shared: 200,000 calls leave no key
// actor behind.
func TestNaNKeysLeaveNothing(t *testing.T) {
	c := flight.New[float64, int]()
	defer c.Close()
	for range 200_000 {
		_, _, err := c.Do(context.Background(), math.NaN(), func(context.Context) (int, error) { return 1, nil })
		require.ErrorIs(t, err, flight.ErrInvalidKey)
	}
	st := c.Stats()
	assert.Zero(t, st.Keys, "%+v", st)
	assert.Zero(t, st.Flights, "%+v", st)
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
			// keep the shard's mailbox long (before the fix a Do waited
			// behind them), bounded so that memory is too.
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
	assert.Less(t, worst, 400*time.Millisecond, "a Do with a 2ms ctx took this long to return")
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

// A coordinator dropped idle with WithMeterProvider is collected too (the
// metrics callback does not hold it), and its metrics are unregistered.
func TestDroppedCoordinatorUnregistersMetrics(t *testing.T) {
	m := newMeters(t)
	attr := attribute.String("flight.name", "dropped")
	func() {
		c := flight.New[int, int](flight.WithMeterProvider(m.provider), flight.WithMetricAttributes(attr))
		_, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 1, nil })
		require.NoError(t, err)
		v, ok := m.collect(t).sum(t, "flight.flights", attr)
		require.True(t, ok)
		require.Equal(t, int64(1), v)
	}()
	wait.Until(t, "the dropped coordinator's metrics unregistered", func() bool {
		gc()
		_, ok := m.collect(t).sum(t, "flight.flights", attr)
		return !ok
	})
}
