package flight_test

import (
	"context"
	"errors"
	"fmt"
	"math"
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

var errTransient = errors.New("transient")

// flaky returns a fn that fails its first `fails` calls with errTransient,
// then returns v; calls counts every call.
func flaky(calls *atomic.Int32, fails int32, v int) flight.Func[int] {
	return func(context.Context) (int, error) {
		if calls.Add(1) <= fails {
			return 0, errTransient
		}
		return v, nil
	}
}

// fixed is a backoff of d for every n, recording the ns it was asked for.
func fixed(d time.Duration, asked *[]int, mu *sync.Mutex) func(int) time.Duration {
	return func(n int) time.Duration {
		mu.Lock()
		*asked = append(*asked, n)
		mu.Unlock()
		return d
	}
}

// One retry loop per key, however many callers: fn runs 3 times for 50
// callers, who all get the final outcome; the waits are backoff(1) and
// backoff(2), on the fake clock.
func TestRetryOneLoopPerKey(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var asked []int
		var mu sync.Mutex
		c := flight.New[string, int](flight.WithRetry(5, fixed(time.Second, &asked, &mu)))
		defer c.Close()
		var calls atomic.Int32
		start := time.Now()
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, shared, err := c.Do(context.Background(), "k", flaky(&calls, 2, 7))
				assert.NoError(t, err)
				assert.Equal(t, 7, v)
				assert.True(t, shared)
			}()
		}
		wg.Wait()
		assert.Equal(t, int32(3), calls.Load(), "3 attempts for 50 callers")
		assert.Equal(t, 2*time.Second, time.Since(start), "two waits of 1 s")
		assert.Equal(t, []int{1, 2}, asked, "backoff(n) after the nth failure")
		st := c.Stats()
		assert.Equal(t, uint64(2), st.Retries)
		assert.Equal(t, uint64(3), st.Flights, "Flights counts attempts")
	})
}

// When every attempt fails, every waiter gets the last error; attempts
// includes the first.
func TestRetryExhausted(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, int](flight.WithRetry(3, nil))
		defer c.Close()
		var calls atomic.Int32
		last := errors.New("third")
		_, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) {
			if calls.Add(1) == 3 {
				return 0, last
			}
			return 0, errTransient
		})
		assert.ErrorIs(t, err, last)
		assert.Equal(t, int32(3), calls.Load())
		assert.Equal(t, uint64(2), c.Stats().Retries)
	})
}

// A panic, a Goexit and a context error are never retried by default;
// WithRetryIf replaces the predicate for fn's errors, but never makes a
// panic or Goexit retried.
func TestRetryWhatIsRetried(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, int](flight.WithRetry(3, nil))
		defer c.Close()
		var calls atomic.Int32
		for name, fn := range map[string]flight.Func[int]{
			"panic":    func(context.Context) (int, error) { calls.Add(1); panic("x") },
			"goexit":   func(context.Context) (int, error) { calls.Add(1); runtime.Goexit(); return 0, nil },
			"canceled": func(context.Context) (int, error) { calls.Add(1); return 0, context.Canceled },
			"deadline": func(context.Context) (int, error) {
				calls.Add(1)
				return 0, fmt.Errorf("w: %w", context.DeadlineExceeded)
			},
		} {
			calls.Store(0)
			ctx, cancel := context.WithCancel(context.Background()) // fn on a worker
			_, _, err := c.Do(ctx, name, fn)
			cancel()
			assert.Error(t, err, name)
			assert.Equal(t, int32(1), calls.Load(), "%s is not retried", name)
		}

		only := flight.New[string, int](flight.WithRetry(3, nil),
			flight.WithRetryIf(func(err error) bool { return errors.Is(err, context.Canceled) }))
		defer only.Close()
		calls.Store(0)
		_, _, err := only.Do(context.Background(), "other", flaky(&calls, 2, 1))
		assert.ErrorIs(t, err, errTransient)
		assert.Equal(t, int32(1), calls.Load(), "WithRetryIf replaces the default")
		calls.Store(0)
		_, _, err = only.Do(context.Background(), "canceled", func(context.Context) (int, error) {
			if calls.Add(1) < 3 {
				return 0, context.Canceled // fn's own error, not its flight's ctx
			}
			return 1, nil
		})
		assert.NoError(t, err)
		assert.Equal(t, int32(3), calls.Load(), "the predicate may retry what the default does not")
		calls.Store(0)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		always := flight.New[string, int](flight.WithRetry(3, nil), flight.WithRetryIf(func(error) bool { return true }))
		defer always.Close()
		_, _, err = always.Do(ctx, "p", func(context.Context) (int, error) { calls.Add(1); panic("y") })
		var pe *flight.PanicError
		assert.ErrorAs(t, err, &pe)
		assert.Equal(t, int32(1), calls.Load(), "a panic is never retried")
	})
}

// Callers leave during a backoff; when the last one has left, no further
// attempt starts and the flight's ctx is cancelled.
func TestRetryEveryCallerLeavesDuringBackoff(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, int](flight.WithRetry(5, func(int) time.Duration { return time.Minute }))
		defer c.Close()
		var calls atomic.Int32
		fnCtx := make(chan context.Context, 5)
		fn := func(ctx context.Context) (int, error) {
			calls.Add(1)
			fnCtx <- ctx
			return 0, errTransient
		}
		ctx1, cancel1 := context.WithCancel(context.Background())
		ctx2, cancel2 := context.WithCancel(context.Background())
		a := c.DoChan(ctx1, "k", fn)
		b := c.DoChan(ctx2, "k", fn)
		synctest.Wait() // first attempt failed; the flight waits a minute
		assert.Equal(t, int32(1), calls.Load())
		st := c.Stats()
		assert.Equal(t, 0, st.InFlight, "no fn runs during a backoff")
		assert.Equal(t, 2, st.Waiters, "a flight in backoff keeps its callers")
		cancel1()
		assert.ErrorIs(t, (<-a).Err, context.Canceled)
		synctest.Wait()
		assert.NoError(t, (<-fnCtx).Err(), "one caller left: the flight goes on")
		cancel2()
		assert.ErrorIs(t, (<-b).Err, context.Canceled)
		synctest.Wait()
		st = c.Stats()
		assert.Equal(t, 0, st.Keys, "the flight ended with its last caller")
		assert.Equal(t, uint64(1), st.Abandoned)
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, int32(1), calls.Load(), "no further attempt")
	})
}

// WithTimeout bounds the whole flight, waits included: a deadline that
// passes during a backoff ends the flight with the timeout error, not fn's
// last error.
func TestRetryTimeoutDuringBackoff(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, int](flight.WithTimeout(5*time.Second),
			flight.WithRetry(10, func(int) time.Duration { return 2 * time.Second }))
		defer c.Close()
		var calls atomic.Int32
		start := time.Now()
		_, _, err := c.Do(context.Background(), "k", flaky(&calls, 100, 0))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, errTransient)
		assert.Equal(t, 5*time.Second, time.Since(start))
		assert.Equal(t, int32(3), calls.Load(), "attempts at 0 s, 2 s, 4 s; the deadline at 5 s falls in the third wait")
		synctest.Wait()
		assert.Equal(t, 0, c.Stats().InFlight)
	})
}

// Forget during a backoff detaches the flight like any other: its callers
// still get its outcome; a later caller starts a new flight (which runs
// once the old one has ended: executions of a key never overlap).
func TestRetryForgetDuringBackoff(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, int](flight.WithRetry(3, func(int) time.Duration { return time.Second }))
		defer c.Close()
		var calls atomic.Int32
		old := c.DoChan(context.Background(), "k", flaky(&calls, 1, 1))
		synctest.Wait()
		c.Forget("k")
		next := c.DoChan(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
		assert.Equal(t, 1, (<-old).Val, "the forgotten flight's callers get its outcome")
		assert.Equal(t, 2, (<-next).Val)
		assert.Equal(t, uint64(1), c.Stats().Forgotten)
	})
}

// A backoff holds no goroutine: 10,000 keys waiting between attempts leave
// the goroutine count where it was, and Close ends every wait at once.
func TestRetryBackoffHoldsNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := flight.New[int, int](flight.WithRetry(3, func(int) time.Duration { return time.Hour }))
	var failed atomic.Int32
	fn := func(context.Context) (int, error) { failed.Add(1); return 0, errTransient }
	const keys = 10_000
	chans := make([]<-chan flight.Result[int], keys)
	for i := range chans {
		chans[i] = c.DoChan(context.Background(), i, fn)
	}
	wait.Until(t, "every key failed once", func() bool { return failed.Load() == keys })
	wait.Until(t, "the workers gone", func() bool { return runtime.NumGoroutine() < 100 })
	wait.Until(t, "every flight in its backoff", func() bool { return c.Stats().InFlight == 0 })
	assert.Equal(t, keys, c.Stats().Keys, "every flight waits for its next attempt")
	start := time.Now()
	require.NoError(t, c.Close())
	assert.Less(t, time.Since(start), time.Minute, "Close ends the waits at once")
	for _, ch := range chans {
		assert.ErrorIs(t, wait.Recv(t, ch).Err, flight.ErrClosed)
	}
	assert.Zero(t, c.Stats().Retries)
}

func TestExponentialBackoff(t *testing.T) {
	b := flight.ExponentialBackoff(10*time.Millisecond, time.Second)
	for n, ceil := range map[int]time.Duration{
		-1: 10 * time.Millisecond, 0: 10 * time.Millisecond, 1: 10 * time.Millisecond,
		2: 20 * time.Millisecond, 3: 40 * time.Millisecond, 7: 640 * time.Millisecond,
		8: time.Second, 63: time.Second, 64: time.Second, math.MaxInt: time.Second,
	} {
		seenLow, seenHigh := false, false
		for range 2000 {
			d := b(n)
			require.GreaterOrEqual(t, d, time.Duration(0), "n=%d", n)
			require.LessOrEqual(t, d, ceil, "n=%d", n)
			seenLow = seenLow || d < ceil/4
			seenHigh = seenHigh || d > 3*ceil/4
		}
		assert.True(t, seenLow && seenHigh, "n=%d: full jitter covers [0, %v]", n, ceil)
	}
	assert.Panics(t, func() { flight.ExponentialBackoff(0, time.Second) })
	assert.Panics(t, func() { flight.ExponentialBackoff(time.Second, time.Millisecond) })
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = b(5) }))
}

func TestRetryOptionsValidated(t *testing.T) {
	assert.PanicsWithValue(t, "flight: WithRetry(0, …): attempts must be at least 1",
		func() { flight.New[int, int](flight.WithRetry(0, nil)) })
	assert.PanicsWithValue(t, "flight: WithRetryIf(nil)", func() { flight.New[int, int](flight.WithRetryIf(nil)) })
	fn := func(context.Context, []int) (map[int]int, error) { return nil, nil }
	assert.Panics(t, func() { flight.NewBatcher(fn, flight.WithRetry(2, nil)) })
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
