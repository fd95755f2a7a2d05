package flight_test

// Round 3 of the trust issues, the Coordinator's side: retained results and
// retries keeping the rules their docs state (WithMaxEntries as a bound on
// entries and on memory, Forget during a refresh or a backoff, refresh-ahead
// after a failure, a miss during a refresh, InFlight during a backoff, panics
// of the backoff and of the WithRetryIf predicate, edge values of the
// options).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// WithMaxEntries is a bound: neither Forget (whose removed entries used to
// stay in the eviction ring, where eviction "reused" them without freeing a
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

// Forget during a retry's backoff: the next flight does not wait for the
// forgotten flight's backoff (no fn runs during it); the forgotten flight
// keeps its callers and its remaining attempts, which run after it, one
// execution of the key at a time.
func TestForgetDuringBackoff(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithRetry(3, func(int) time.Duration { return time.Hour }))
		defer c.Close()
		var attempts atomic.Int32
		old := c.DoChan(context.Background(), "k", func(context.Context) (string, error) {
			if attempts.Add(1) < 3 {
				return "", errTransient
			}
			return "old", nil
		})
		synctest.Wait()
		require.Equal(t, int32(1), attempts.Load())
		c.Forget("k")
		start := time.Now()
		v, _, err := c.Do(context.Background(), "k", func(context.Context) (string, error) { return "new", nil })
		require.NoError(t, err)
		assert.Equal(t, "new", v)
		assert.Zero(t, time.Since(start), "the new flight waited for the forgotten flight's backoff")
		r := <-old
		assert.Equal(t, "old", r.Val, "the forgotten flight's callers get its outcome after its retries")
		assert.Equal(t, 2*time.Hour, time.Since(start))
		assert.Equal(t, int32(3), attempts.Load())
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

// Stats.InFlight counts flights whose fn is running now: not one waiting
// between two attempts.
func TestInFlightDuringBackoff(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, int](flight.WithRetry(2, func(int) time.Duration { return time.Minute }))
		defer c.Close()
		var calls atomic.Int32
		ch := c.DoChan(context.Background(), "k", flaky(&calls, 1, 7))
		synctest.Wait()
		st := c.Stats()
		assert.Equal(t, 0, st.InFlight, "no fn runs during the backoff")
		assert.Equal(t, 1, st.Waiters)
		assert.Equal(t, 1, st.Keys)
		assert.Equal(t, 7, (<-ch).Val)
		synctest.Wait() // the waiter is answered before the flight is retired
		assert.Equal(t, flight.Stats{Flights: 2, Retries: 1}, c.Stats())
	})
}

// A panic of the backoff function or of the WithRetryIf predicate is a
// panic like fn's: counted in Stats.Panics, logged, and every waiter gets a
// *PanicError with its value.
func TestRetryHookPanics(t *testing.T) {
	for name, opts := range map[string][]flight.Option{
		"backoff":   {flight.WithRetry(3, func(int) time.Duration { panic("backoff down") })},
		"retryable": {flight.WithRetry(3, nil), flight.WithRetryIf(func(error) bool { panic("retryable down") })},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCInt(t, opts...)
			ch1 := c.DoChan(context.Background(), 1, func(context.Context) (int, error) { return 0, errTransient })
			r := wait.Recv(t, ch1)
			var pe *flight.PanicError
			require.ErrorAs(t, r.Err, &pe)
			assert.Equal(t, name+" down", pe.Value)
			assert.Equal(t, uint64(1), c.Stats().Panics)
			wait.Until(t, "idle", idle(c))
			v, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 5, nil })
			require.NoError(t, err, "the key is usable again")
			assert.Equal(t, 5, v)
		})
	}
}

// ExponentialBackoff over its whole documented domain: every 0 < base ≤ max
// and every n, including max = math.MaxInt64, which made it panic (rand.N of
// max+1, an overflow) inside the flight that asked.
func TestExponentialBackoffEdges(t *testing.T) {
	for _, bm := range [][2]time.Duration{{1, 1}, {1, math.MaxInt64}, {math.MaxInt64, math.MaxInt64}, {time.Second, time.Hour}, {3, 1 << 62}} {
		b := flight.ExponentialBackoff(bm[0], bm[1])
		for _, n := range []int{math.MinInt, -1, 0, 1, 2, 30, 62, 63, 64, 1000, math.MaxInt} {
			d := b(n)
			assert.GreaterOrEqual(t, d, time.Duration(0), "base %v max %v n %d", bm[0], bm[1], n)
			assert.LessOrEqual(t, d, bm[1], "base %v max %v n %d", bm[0], bm[1], n)
		}
	}
	// Used by a flight: the backoff's panic would have reached the waiters.
	c := newCInt(t, flight.WithRetry(2, flight.ExponentialBackoff(time.Nanosecond, math.MaxInt64)))
	var calls atomic.Int32
	_, _, err := c.Do(t.Context(), 1, func(context.Context) (int, error) {
		if calls.Add(1) == 1 {
			return 0, errTransient
		}
		return 1, nil
	})
	_ = err // the wait may be anything up to the maximum: only that it did not panic matters
	assert.Zero(t, c.Stats().Panics)
}

// FuzzExponentialBackoff: for any valid base and max and any n, the wait is
// in [0, min(max, base·2^(n-1))] (base for n < 1), and it never panics.
func FuzzExponentialBackoff(f *testing.F) {
	f.Add(int64(1), int64(1), 0)
	f.Add(int64(1), int64(math.MaxInt64), 64)
	f.Add(int64(time.Millisecond), int64(time.Second), 5)
	f.Fuzz(func(t *testing.T, base, max int64, n int) {
		if base <= 0 || max < base {
			assert.Panics(t, func() { flight.ExponentialBackoff(time.Duration(base), time.Duration(max)) })
			return
		}
		d := flight.ExponentialBackoff(time.Duration(base), time.Duration(max))(n)
		ceil := time.Duration(max)
		switch {
		case n < 1:
			ceil = time.Duration(base)
		case n <= 63:
			if c := new(big).lsh(base, n-1); c < max {
				ceil = time.Duration(c)
			}
		}
		if d < 0 || d > ceil {
			t.Fatalf("ExponentialBackoff(%d, %d)(%d) = %d, want [0, %d]", base, max, n, d, ceil)
		}
	})
}

// big computes base·2^k saturated at math.MaxInt64, the reference the fuzz
// test checks against.
type big struct{}

func (big) lsh(base int64, k int) int64 {
	for range k {
		if base > math.MaxInt64/2 {
			return math.MaxInt64
		}
		base *= 2
	}
	return base
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

// The extreme valid values of every option of retained results and retries
// run flights without a panic and with their documented meaning.
func TestRetainRetryOptionExtremes(t *testing.T) {
	ctx := t.Context() // fn on a worker, so that a panic would reach the waiters, not this goroutine
	c := newCInt(t, flight.WithTTL(math.MaxInt64), flight.WithErrorTTL(math.MaxInt64),
		flight.WithRefreshAhead(math.MaxInt64-1), flight.WithMaxEntries(math.MaxInt),
		flight.WithRetry(math.MaxInt, func(n int) time.Duration {
			if n%2 == 0 {
				return math.MinInt64
			}
			return 0
		}))
	var calls atomic.Int32
	v, _, err := c.Do(ctx, 1, flaky(&calls, 3, 9))
	require.NoError(t, err)
	assert.Equal(t, 9, v)
	assert.Equal(t, int32(4), calls.Load(), "negative and zero waits retry at once")
	v, shared, err := c.Do(ctx, 1, flaky(&calls, 0, 10))
	require.NoError(t, err)
	assert.Equal(t, 9, v, "retained for ~292 years")
	assert.True(t, shared)
	assert.Zero(t, c.Stats().Panics)
	assert.Equal(t, 1, c.Stats().Entries)

	tiny := newCInt(t, flight.WithTTL(time.Nanosecond), flight.WithErrorTTL(time.Nanosecond),
		flight.WithMaxEntries(1), flight.WithRetry(2, flight.ExponentialBackoff(1, 1)))
	var tinyCalls atomic.Int32
	_, _, err = tiny.Do(ctx, 1, flaky(&tinyCalls, 1, 1))
	require.NoError(t, err)
	assert.Equal(t, int32(2), tinyCalls.Load())
	wait.Until(t, "a 1 ns result expired", func() bool { return tiny.Stats().Entries == 0 })
}

// A miss that retains its result allocates nothing for it once the store
// has reached WithMaxEntries: results live in a reused slab of slots, with
// no pointer when the key and value have none (issue 20's retained misses:
// the collector no longer scans a live store on every cycle).
func TestRetainedMissAllocatesNoEntry(t *testing.T) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	miss := func(c *flight.Coordinator[int, int]) float64 {
		next := 0
		for range 5000 { // warm: the store full and evicting, maps and pools at their size
			next++
			_, _, _ = c.Do(ctx, next, fn)
		}
		return testing.AllocsPerRun(2000, func() {
			next++
			if _, shared, _ := c.Do(ctx, next, fn); shared {
				panic("a fresh key was shared")
			}
		})
	}
	without := miss(newCInt(t, flight.WithShards(1)))
	with := miss(newCInt(t, flight.WithShards(1), flight.WithTTL(time.Hour), flight.WithMaxEntries(1000)))
	t.Logf("allocations per miss: %.2f without WithTTL, %.2f with", without, with)
	assert.LessOrEqual(t, with, without+0.05)
}
