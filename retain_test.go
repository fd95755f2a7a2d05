package flight_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// counted returns a fn that counts its calls and returns v.
func counted(n *atomic.Int32, v string) flight.Func[string] {
	return func(context.Context) (string, error) {
		n.Add(1)
		return v, nil
	}
}

// bubble runs f in a testing/synctest bubble; the shared actor system is
// made outside it first (it outlives every bubble).
func bubble(t *testing.T, f func(t *testing.T)) {
	flight.New[int, int]().Close()
	synctest.Test(t, f)
}

// A result is kept for its TTL: calls within it get it at once, shared,
// without running fn; it expires without any caller asking, and the next
// call runs fn again.
func TestTTLRetainsAndExpires(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(time.Minute))
		defer c.Close()
		var n atomic.Int32
		v, shared, err := c.Do(context.Background(), "k", counted(&n, "a"))
		require.NoError(t, err)
		assert.Equal(t, "a", v)
		assert.False(t, shared)
		for range 3 {
			v, shared, err = c.Do(context.Background(), "k", counted(&n, "b"))
			require.NoError(t, err)
			assert.Equal(t, "a", v)
			assert.True(t, shared, "a retained result is shared")
		}
		r := <-c.DoChan(context.Background(), "k", counted(&n, "b"))
		assert.Equal(t, flight.Result[string]{Val: "a", Shared: true}, r)
		assert.Equal(t, int32(1), n.Load())
		st := c.Stats()
		assert.Equal(t, 1, st.Entries)
		assert.Equal(t, uint64(4), st.Hits)
		assert.Equal(t, uint64(1), st.Flights)

		time.Sleep(59 * time.Second)
		v, _, _ = c.Do(context.Background(), "k", counted(&n, "b"))
		assert.Equal(t, "a", v, "still within the TTL")
		time.Sleep(time.Second + time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, 0, c.Stats().Entries, "expired without a caller asking")
		v, _, _ = c.Do(context.Background(), "k", counted(&n, "b"))
		assert.Equal(t, "b", v)
		assert.Equal(t, int32(2), n.Load())
	})
}

// Errors are retained only with WithErrorTTL, and never a ctx error, the
// timeout, a panic or a Goexit.
func TestErrorTTL(t *testing.T) {
	bubble(t, func(t *testing.T) {
		boom := errors.New("boom")
		fail := func(n *atomic.Int32) flight.Func[int] {
			return func(context.Context) (int, error) { n.Add(1); return 0, boom }
		}
		plain := flight.New[string, int](flight.WithTTL(time.Minute))
		defer plain.Close()
		var n atomic.Int32
		for range 2 {
			_, _, err := plain.Do(context.Background(), "k", fail(&n))
			assert.ErrorIs(t, err, boom)
		}
		assert.Equal(t, int32(2), n.Load(), "without WithErrorTTL errors are not retained")

		neg := flight.New[string, int](flight.WithErrorTTL(time.Second), flight.WithTimeout(time.Hour))
		defer neg.Close()
		n.Store(0)
		for range 3 {
			_, shared, err := neg.Do(context.Background(), "k", fail(&n))
			assert.ErrorIs(t, err, boom)
			_ = shared
		}
		assert.Equal(t, int32(1), n.Load(), "WithErrorTTL retains fn's error")
		assert.Equal(t, 1, neg.Stats().Entries)
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, 0, neg.Stats().Entries)

		// Never retained: a ctx error fn returns, a panic, a Goexit, the timeout.
		nonRetained := map[string]flight.Func[int]{
			"ctx":    func(context.Context) (int, error) { n.Add(1); return 0, context.Canceled },
			"panic":  func(context.Context) (int, error) { n.Add(1); panic("x") },
			"goexit": func(context.Context) (int, error) { n.Add(1); runtime.Goexit(); return 0, nil },
			"closed": func(context.Context) (int, error) { n.Add(1); return 0, fmt.Errorf("wrapped: %w", flight.ErrClosed) },
			"timeout": func(ctx context.Context) (int, error) {
				n.Add(1)
				<-ctx.Done()
				return 0, boom
			},
		}
		for name, fn := range nonRetained {
			n.Store(0)
			for range 2 {
				ctx, cancel := context.WithCancel(context.Background()) // fn on a worker: Goexit must not end this goroutine
				_, _, err := neg.Do(ctx, name, fn)
				cancel()
				assert.Error(t, err, name)
			}
			assert.Equal(t, int32(2), n.Load(), "%s must not be retained", name)
		}
		assert.Equal(t, 0, neg.Stats().Entries)
	})
}

// Forget drops the key's retained result: the next call runs fn.
func TestForgetDropsRetained(t *testing.T) {
	c := newC[string](t, flight.WithTTL(time.Hour))
	var n atomic.Int32
	_, _, _ = c.Do(context.Background(), "k", counted(&n, "a"))
	c.Forget("k")
	assert.Equal(t, 0, c.Stats().Entries)
	v, _, _ := c.Do(context.Background(), "k", counted(&n, "b"))
	assert.Equal(t, "b", v)
	assert.Equal(t, int32(2), n.Load())
}

// A flight that ends after a Forget never overwrites the newer result
// (golang/go#31420): the forgotten flight's callers get its result, but it
// is not retained.
func TestForgottenFlightIsNotRetained(t *testing.T) {
	c := newC[string](t, flight.WithTTL(time.Hour))
	release, started := make(chan struct{}), make(chan struct{})
	old := c.DoChan(context.Background(), "k", func(context.Context) (string, error) {
		close(started)
		<-release
		return "old", nil
	})
	<-started
	c.Forget("k")
	// The next flight waits for the forgotten fn (executions never overlap).
	next := c.DoChan(context.Background(), "k", func(context.Context) (string, error) { return "new", nil })
	close(release)
	assert.Equal(t, "old", wait.Recv(t, old).Val, "the forgotten flight's own callers get its result")
	assert.Equal(t, "new", wait.Recv(t, next).Val)
	v, shared, err := c.Do(context.Background(), "k", func(context.Context) (string, error) { return "third", nil })
	require.NoError(t, err)
	assert.Equal(t, "new", v, "the newer result is retained, not the forgotten one")
	assert.True(t, shared)
}

// An abandoned flight (every caller left) or a timed-out one is not
// retained.
func TestDetachedFlightsAreNotRetained(t *testing.T) {
	c := newC[string](t, flight.WithTTL(time.Hour), flight.WithTimeout(50*time.Millisecond))
	release := make(chan struct{})
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.DoChan(ctx, "abandon", func(context.Context) (string, error) {
		close(started)
		<-release
		return "late", nil
	})
	<-started
	cancel()
	assert.ErrorIs(t, wait.Recv(t, ch).Err, context.Canceled)
	close(release)
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, 0, c.Stats().Entries, "an abandoned flight's result is not retained")

	_, _, err := c.Do(context.Background(), "slow", func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "after deadline", nil
	})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, 0, c.Stats().Entries, "a timed-out flight's result is not retained")
}

// Refresh-ahead: a hit on a result older than d gets it at once and starts
// one background refresh, whatever the number of callers; the refresh runs
// on a ctx with the caller's values and none of its cancellation; its result
// replaces the old one and restarts the TTL. A failed refresh keeps the old
// result until its TTL, and is not tried again for it.
func TestRefreshAhead(t *testing.T) {
	type ctxKey struct{}
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithRefreshAhead(5*time.Second))
		defer c.Close()
		var n atomic.Int32
		_, _, _ = c.Do(context.Background(), "k", counted(&n, "v1"))
		time.Sleep(6 * time.Second)

		release := make(chan struct{})
		refreshCtx := make(chan context.Context, 1)
		refresh := func(ctx context.Context) (string, error) {
			n.Add(1)
			refreshCtx <- ctx
			<-release
			return "v2", nil
		}
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "caller"))
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, shared, err := c.Do(ctx, "k", refresh)
				assert.NoError(t, err)
				assert.Equal(t, "v1", v, "a hit gets the old result at once")
				assert.True(t, shared)
			}()
		}
		wg.Wait()
		cancel() // the triggering caller's cancellation never reaches the refresh
		rctx := <-refreshCtx
		assert.Equal(t, "caller", rctx.Value(ctxKey{}))
		synctest.Wait()
		assert.NoError(t, rctx.Err())
		st := c.Stats()
		assert.Equal(t, uint64(1), st.Refreshes, "one refresh, whatever the number of callers")
		assert.Equal(t, 1, st.InFlight, "a refresh is an execution like any other")
		close(release)
		synctest.Wait()
		fails := func(context.Context) (string, error) { n.Add(1); return "", errors.New("down") }
		v, _, _ := c.Do(context.Background(), "k", fails) // a hit: the result is 0 s old
		assert.Equal(t, "v2", v, "the refresh replaced the result")
		synctest.Wait()
		assert.Equal(t, int32(2), n.Load(), "a young result is not refreshed")

		// 9 s later: past the old result's TTL, within the new one's, and
		// old enough to be refreshed. The first hit's refresh fails; a
		// result is refreshed at most once, so the later hits start none.
		time.Sleep(9 * time.Second)
		for range 3 {
			v, _, err := c.Do(context.Background(), "k", fails)
			require.NoError(t, err)
			assert.Equal(t, "v2", v, "the refresh restarted the TTL, and a failed refresh keeps the result")
			synctest.Wait()
			assert.Equal(t, int32(3), n.Load(), "one refresh of a result, failed or not")
		}
		time.Sleep(time.Second) // past v2's TTL
		synctest.Wait()
		v, _, _ = c.Do(context.Background(), "k", counted(&n, "v3"))
		assert.Equal(t, "v3", v, "the TTL is a hard cap")
	})
}

// WithMaxEntries bounds what is retained; eviction is CLOCK, so a result
// that keeps being hit survives a stream of results that are not.
func TestMaxEntriesEvictsByClock(t *testing.T) {
	c := newC[int](t, flight.WithTTL(time.Hour), flight.WithMaxEntries(8), flight.WithShards(1))
	ctx := context.Background()
	var n atomic.Int32
	fn := func(ctx context.Context) (int, error) { n.Add(1); return 1, nil }
	hot := "hot"
	_, _, _ = c.Do(ctx, hot, fn)
	for i := range 100 {
		_, _, _ = c.Do(ctx, hot, fn) // a hit marks it
		_, _, _ = c.Do(ctx, fmt.Sprint("cold", i), fn)
		require.LessOrEqual(t, c.Stats().Entries, 8)
	}
	before := n.Load()
	_, shared, _ := c.Do(ctx, hot, fn)
	assert.True(t, shared)
	assert.Equal(t, before, n.Load(), "the hot result survived 100 evictions")
	assert.Equal(t, 8, c.Stats().Entries)
}

// A hit allocates nothing.
func TestHitAllocatesNothing(t *testing.T) {
	c := newC[int](t, flight.WithTTL(time.Hour))
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	_, _, _ = c.Do(ctx, "k", fn)
	allocs := testing.AllocsPerRun(1000, func() {
		if v, _, _ := c.Do(ctx, "k", fn); v != 1 {
			panic("miss")
		}
	})
	assert.Zero(t, allocs)
}

// Retained results hold no goroutine; Close drops them, and calls after
// Close get ErrClosed, not a retained result.
func TestRetainedIdleAndClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := flight.New[int, int](flight.WithTTL(time.Hour), flight.WithRefreshAhead(time.Minute))
	for i := range 1000 {
		_, _, _ = c.Do(context.Background(), i, func(context.Context) (int, error) { return i, nil })
	}
	assert.Equal(t, 1000, c.Stats().Entries)
	goleak.VerifyNone(t) // idle with 1,000 results retained: no goroutine
	require.NoError(t, c.Close())
	assert.Equal(t, 0, c.Stats().Entries)
	_, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 1, nil })
	assert.ErrorIs(t, err, flight.ErrClosed)
}

func TestRetainOptionsValidated(t *testing.T) {
	for name, opts := range map[string][]flight.Option{
		"negative TTL":           {flight.WithTTL(-1)},
		"negative ErrorTTL":      {flight.WithErrorTTL(-1)},
		"zero MaxEntries":        {flight.WithMaxEntries(0)},
		"refresh without TTL":    {flight.WithRefreshAhead(time.Second)},
		"refresh not below TTL":  {flight.WithTTL(time.Second), flight.WithRefreshAhead(time.Second)},
		"refresh zero":           {flight.WithTTL(time.Second), flight.WithRefreshAhead(0)},
		"refresh before its TTL": {flight.WithRefreshAhead(time.Second), flight.WithTTL(time.Millisecond)},
	} {
		assert.PanicsWithValue(t, panicText(opts), func() { flight.New[int, int](opts...) }, name)
	}
	// Order does not matter.
	flight.New[int, int](flight.WithRefreshAhead(time.Second), flight.WithTTL(time.Minute)).Close()
}

// panicText returns what New panics with for opts (it must panic).
func panicText(opts []flight.Option) (msg any) {
	defer func() { msg = recover() }()
	flight.New[int, int](opts...)
	return nil
}

// A Batcher retains results too: NewBatcher takes the
// options, and a repeated load within the TTL runs nothing.
func TestBatcherTakesRetainOptions(t *testing.T) {
	calls := 0
	fn := func(_ context.Context, keys []int) (map[int]int, error) {
		calls++ // one key per batch, one at a time: WithMaxBatch(1), sequential loads
		return map[int]int{keys[0]: keys[0]}, nil
	}
	for _, o := range []flight.Option{flight.WithTTL(time.Second), flight.WithErrorTTL(time.Second),
		flight.WithRefreshAhead(time.Minute), flight.WithMaxEntries(5)} {
		b := flight.NewBatcher(fn, flight.WithTTL(time.Hour), o, flight.WithMaxBatch(1)) // o comes after: WithTTL(time.Second) overrides
		calls = 0
		for range 2 {
			v, err := b.Load(context.Background(), 7)
			require.NoError(t, err)
			assert.Equal(t, 7, v)
		}
		assert.Equal(t, 1, calls)
		require.NoError(t, b.Close())
	}
}

// Forget waits for its shard when results are retained; called from fn
// (on the caller's goroutine or a worker) it must not wait for itself.
func TestForgetFromFnWithTTL(t *testing.T) {
	c := newC[string](t, flight.WithTTL(time.Hour))
	for _, ctx := range []context.Context{context.Background(), t.Context()} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _, _ = c.Do(ctx, "k", func(context.Context) (string, error) {
				c.Forget("k")
				return "v", nil
			})
		}()
		wait.Recv(t, done)
		c.Forget("k")
	}
}

// WithMaxEntries is a bound: neither Forget (whose removed entries must
// leave the eviction ring, or eviction would "reuse" them without freeing a
// counted entry) nor refreshes that replace entries push Entries past it.
func TestMaxEntriesIsABound(t *testing.T) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	t.Run("forget", func(t *testing.T) {
		c := newCInt(t, flight.WithTTL(time.Hour), flight.WithMaxEntries(10))
		for i := range 100 {
			_, _, err := c.Do(ctx, i, fn)
			require.NoError(t, err)
			c.Forget(i)
		}
		require.Zero(t, c.Stats().Entries)
		for i := range 100 {
			_, _, err := c.Do(ctx, 1000+i, fn)
			require.NoError(t, err)
			require.LessOrEqual(t, c.Stats().Entries, 10, "after key %d", i)
		}
		assert.Equal(t, 10, c.Stats().Entries)
	})
	t.Run("refresh", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			c := flight.New[int, int](flight.WithTTL(10*time.Second), flight.WithRefreshAhead(time.Second),
				flight.WithMaxEntries(5), flight.WithShards(1))
			defer c.Close()
			for round := range 20 {
				for i := range 5 {
					_, _, err := c.Do(ctx, round*5+i, fn)
					require.NoError(t, err)
				}
				time.Sleep(2 * time.Second)
				for i := range 5 { // hits that refresh, each replacing its entry
					_, _, _ = c.Do(ctx, round*5+i, fn)
				}
				synctest.Wait()
				require.LessOrEqual(t, c.Stats().Entries, 5, "round %d", round)
			}
		})
	})
}

// WithMaxEntries bounds the memory the retained results hold, not only
// their count: evicted, forgotten and replaced results are not kept
// referenced (they were, by the shard's expiry queue, until their own TTL).
func TestMaxEntriesBoundsMemory(t *testing.T) {
	const keys, size = 20_000, 4 << 10
	ctx, cancel := context.WithCancel(context.Background()) // fn on a worker, as a server's calls
	defer cancel()
	bc := flight.New[int, []byte](flight.WithTTL(time.Hour), flight.WithMaxEntries(100))
	defer bc.Close()
	run := func(from, to int) {
		for i := from; i < to; i++ {
			_, _, err := bc.Do(ctx, i, func(context.Context) ([]byte, error) { return make([]byte, size), nil })
			require.NoError(t, err)
			if i%3 == 0 {
				bc.Forget(i)
			}
			if i%7 == 0 {
				bc.Forget(i - 50)
			}
			require.LessOrEqual(t, bc.Stats().Entries, 100)
		}
	}
	run(0, keys/10) // the store, the maps and the pools at their working size
	before := heap()
	run(keys/10, keys)
	grown := int64(heap()) - int64(before)
	t.Logf("heap growth over %d more keys of %d B with WithMaxEntries(100): %d KiB", keys-keys/10, size, grown>>10)
	assert.Less(t, grown, int64(1<<20), "the heap grows with the keys seen, not with the retained results")
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// WithMaxEntries is global, and a shard whose keys had nothing retained
// still retains a new result (by evicting another shard's): with more shards
// than entries, every key's result is retained for its next call.
func TestMaxEntriesWithMoreShardsThanEntries(t *testing.T) {
	c := newCInt(t, flight.WithTTL(time.Hour), flight.WithMaxEntries(2), flight.WithShards(64))
	ctx := context.Background()
	var n atomic.Int32
	fn := func(context.Context) (int, error) { n.Add(1); return 1, nil }
	missed := 0
	for i := range 200 {
		_, _, _ = c.Do(ctx, i, fn)
		before := n.Load()
		if _, shared, _ := c.Do(ctx, i, fn); !shared || n.Load() != before {
			missed++
		}
		require.LessOrEqual(t, c.Stats().Entries, 2)
	}
	assert.Zero(t, missed, "calls right after their key's flight that ran fn again")
	assert.Equal(t, 2, c.Stats().Entries)
}

// Forget during a background refresh: the refresh has no caller, so it is
// cancelled (nothing else would ever cancel it but WithTimeout or Close),
// and the key's next flight runs its fn.
func TestForgetCancelsARefresh(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithRefreshAhead(time.Second))
		defer c.Close()
		ctx := context.Background()
		_, _, _ = c.Do(ctx, "k", func(context.Context) (string, error) { return "v1", nil })
		time.Sleep(2 * time.Second)
		refreshCtx := make(chan context.Context, 1)
		hang := func(ctx context.Context) (string, error) {
			refreshCtx <- ctx
			<-ctx.Done()
			return "", ctx.Err()
		}
		v, _, _ := c.Do(ctx, "k", hang) // a hit: starts the refresh
		assert.Equal(t, "v1", v)
		rctx := <-refreshCtx
		c.Forget("k")
		synctest.Wait()
		assert.Error(t, rctx.Err(), "the forgotten refresh, which nobody waits for, is cancelled")
		assert.Equal(t, 0, c.Stats().InFlight)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		v, _, err := c.Do(wctx, "k", func(context.Context) (string, error) { return "v2", nil })
		require.NoError(t, err, "the key is wedged behind the forgotten refresh")
		assert.Equal(t, "v2", v)
	})
}

// A failing refresh-ahead is not started again on every hit: each retained
// result is refreshed at most once; after a failed refresh it is served
// until its TTL, and the next call then runs fn.
func TestFailedRefreshIsNotRepeated(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithRefreshAhead(time.Second))
		defer c.Close()
		ctx := context.Background()
		_, _, _ = c.Do(ctx, "k", func(context.Context) (string, error) { return "v1", nil })
		time.Sleep(2 * time.Second)
		var refreshes atomic.Int32
		boom := func(context.Context) (string, error) { refreshes.Add(1); panic("down") }
		for range 5 {
			v, _, err := c.Do(ctx, "k", boom)
			require.NoError(t, err)
			assert.Equal(t, "v1", v)
			synctest.Wait()
		}
		assert.Equal(t, int32(1), refreshes.Load(), "refreshes of one result")
		st := c.Stats()
		assert.Equal(t, uint64(1), st.Refreshes)
		assert.Equal(t, uint64(1), st.Panics)
	})
}

// A caller that misses (the TTL has passed) while a background refresh of
// its key runs does not join the refresh, which nobody asked for: the
// refresh is cancelled and the caller's own fn runs.
func TestMissSupersedesARefresh(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithRefreshAhead(time.Second))
		defer c.Close()
		ctx := context.Background()
		_, _, _ = c.Do(ctx, "k", func(context.Context) (string, error) { return "v1", nil })
		time.Sleep(9 * time.Second)
		refreshCtx := make(chan context.Context, 1)
		v, _, _ := c.Do(ctx, "k", func(ctx context.Context) (string, error) {
			refreshCtx <- ctx
			<-ctx.Done()
			return "refresh", ctx.Err()
		})
		assert.Equal(t, "v1", v)
		rctx := <-refreshCtx
		time.Sleep(time.Second) // past the TTL; the refresh still runs
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		v, shared, err := c.Do(wctx, "k", func(context.Context) (string, error) { return "mine", nil })
		require.NoError(t, err, "the caller waited for a refresh it never asked for")
		assert.Equal(t, "mine", v)
		assert.False(t, shared)
		assert.Error(t, rctx.Err(), "the superseded refresh is cancelled")
		v, _, _ = c.Do(ctx, "k", func(context.Context) (string, error) { return "third", nil })
		assert.Equal(t, "mine", v, "the caller's result is retained, not the refresh's")
	})
}

// WithErrorTTL never retains what its doc excludes, matched as WithRetry's
// default matches it (errors.As for *PanicError): an fn that returns a
// *PanicError it got from another flight, wrapped or not, is not retained.
func TestErrorTTLExclusionsMatchedLikeRetry(t *testing.T) {
	inner := newCInt(t)
	_, _, innerErr := inner.Do(t.Context(), 1, func(context.Context) (int, error) { panic("inner") })
	var pe *flight.PanicError
	require.ErrorAs(t, innerErr, &pe)
	c := newCInt(t, flight.WithErrorTTL(time.Hour))
	for i, err := range []error{innerErr, fmt.Errorf("wrapped: %w", innerErr), errors.Join(errTransient, innerErr),
		flight.ErrGoexit, flight.ErrOverloaded, flight.ErrRecursiveCall, context.DeadlineExceeded} {
		var n atomic.Int32
		for range 2 {
			_, _, got := c.Do(context.Background(), i, func(context.Context) (int, error) { n.Add(1); return 0, err })
			assert.ErrorIs(t, got, err)
		}
		assert.Equal(t, int32(2), n.Load(), "error %d (%v) was retained", i, err)
	}
	assert.Zero(t, c.Stats().Entries)
}

// A miss that retains its result allocates nothing for it once the store
// has reached WithMaxEntries: results live in a reused slab of slots, with
// no pointer when the key and value have none (so the garbage collector
// does not scan a live store on every cycle).
func TestRetainedMissAllocatesNoEntry(t *testing.T) {
	// 5,000 warm-up calls: the store full and evicting.
	without := freshKeyAllocs(newCInt(t, flight.WithShards(1)), 5000)
	with := freshKeyAllocs(newCInt(t, flight.WithShards(1), flight.WithTTL(time.Hour), flight.WithMaxEntries(1000)), 5000)
	t.Logf("allocations per miss: %.2f without WithTTL, %.2f with", without, with)
	assert.LessOrEqual(t, with, without+0.05)
}
