package flight_test

import (
	"context"
	"errors"
	"runtime"
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

var errDown = errors.New("upstream down")

// failing returns a fn that counts its calls and fails with errDown.
func failing(n *atomic.Int32) flight.Func[string] {
	return func(context.Context) (string, error) {
		n.Add(1)
		return "", errDown
	}
}

// held starts a flight for key with a fn that waits for release and then
// fails, plus joiners Do callers and one DoChan caller, and returns their
// answers once release is closed. It waits (synctest) until all have
// joined.
func heldFailure(t *testing.T, c *flight.Coordinator[string, string], key string, joiners int, fn func(context.Context) (string, error)) (do []<-chan doResult[string], ch <-chan flight.Result[string]) {
	t.Helper()
	for range 1 + joiners {
		do = append(do, goDo(c, context.Background(), key, fn))
		synctest.Wait()
	}
	ch = c.DoChan(context.Background(), key, fn)
	synctest.Wait()
	return do, ch
}

// A value past its TTL is kept d longer as stale: never a hit, but a
// failed flight answers every waiter with it (nil error, shared as usual,
// Result.Stale), and Stats.Stale counts them.
func TestStaleIfErrorAnswersAFailedFlight(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithStaleIfError(time.Minute))
		defer c.Close()
		var n atomic.Int32
		v, _, err := c.Do(context.Background(), "k", counted(&n, "good"))
		require.NoError(t, err)
		require.Equal(t, "good", v)

		time.Sleep(11 * time.Second)
		synctest.Wait()
		assert.Equal(t, 1, c.Stats().Entries, "a stale value is still held")

		// Past its TTL, the value is not a hit: a call runs a flight.
		release := make(chan struct{})
		fn := func(context.Context) (string, error) { n.Add(1); <-release; return "", errDown }
		do, ch := heldFailure(t, c, "k", 2, fn)
		assert.Equal(t, int32(2), n.Load(), "the stale value is not served as a hit")
		close(release)
		for _, d := range do {
			r := <-d
			require.NoError(t, r.err)
			assert.Equal(t, "good", r.v)
			assert.True(t, r.shared)
		}
		assert.Equal(t, flight.Result[string]{Val: "good", Shared: true, Stale: true}, <-ch)
		st := c.Stats()
		assert.Equal(t, uint64(4), st.Stale)
		assert.Equal(t, uint64(0), st.Hits)

		// One caller alone: shared false, Stale true.
		r := <-c.DoChan(context.Background(), "k", failing(&n))
		assert.Equal(t, flight.Result[string]{Val: "good", Stale: true}, r)
	})
}

// A failed flight answered with a stale value is never retained, even
// with WithErrorTTL: the next call runs fn again and gets the stale value
// again. Without a stale value, the error is retained as usual.
func TestStaleAnswerIsNotRetained(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithErrorTTL(time.Hour),
			flight.WithStaleIfError(time.Minute))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", counted(&n, "good"))
		require.NoError(t, err)
		time.Sleep(10 * time.Second)
		for i := range 3 {
			r := <-c.DoChan(context.Background(), "k", failing(&n))
			assert.Equal(t, flight.Result[string]{Val: "good", Stale: true}, r)
			assert.Equal(t, int32(2+i), n.Load(), "each call runs fn: the failure is not retained")
		}
		assert.Equal(t, 1, c.Stats().Entries)
		// Another key, no stale value: its error is retained.
		_, _, err = c.Do(context.Background(), "other", failing(&n))
		require.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "other", failing(&n))
		require.ErrorIs(t, err, errDown)
		assert.Equal(t, int32(5), n.Load())
		assert.Equal(t, uint64(1), c.Stats().Hits)
	})
}

// The stale value is dropped at TTL + d without any caller asking; then a
// failure reaches the callers.
func TestStaleValueDroppedAtTTLPlusD(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithStaleIfError(20*time.Second))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", counted(&n, "good"))
		require.NoError(t, err)
		time.Sleep(30*time.Second - time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, 1, c.Stats().Entries, "held until TTL + d")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, 0, c.Stats().Entries, "dropped at TTL + d, with no caller")
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, errDown)
		assert.Zero(t, c.Stats().Stale)
	})
}

// A successful flight replaces the stale value; Forget drops it.
func TestStaleValueReplacedAndForgotten(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(10*time.Second), flight.WithStaleIfError(time.Minute))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", counted(&n, "v1"))
		require.NoError(t, err)
		time.Sleep(15 * time.Second)
		v, _, err := c.Do(context.Background(), "k", counted(&n, "v2"))
		require.NoError(t, err)
		assert.Equal(t, "v2", v)
		time.Sleep(15 * time.Second)
		v, _, err = c.Do(context.Background(), "k", failing(&n))
		require.NoError(t, err)
		assert.Equal(t, "v2", v, "the success replaced the stale value")

		c.Forget("k")
		assert.Equal(t, 0, c.Stats().Entries)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, errDown, "Forget dropped the stale value")
	})
}

// What fails: a panic, Goexit and the WithTimeout expiry are answered with
// the stale value; a caller's own ctx ending, ErrClosed and ErrOverloaded
// are not.
func TestStaleIfErrorWhatFails(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(time.Second), flight.WithStaleIfError(time.Hour),
			flight.WithTimeout(time.Minute), flight.WithMaxWaiters(1))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", counted(&n, "good"))
		require.NoError(t, err)
		time.Sleep(time.Second)

		r := <-c.DoChan(context.Background(), "k", func(context.Context) (string, error) { panic("boom") })
		assert.Equal(t, flight.Result[string]{Val: "good", Stale: true}, r, "a panic")
		r = <-c.DoChan(context.Background(), "k", func(context.Context) (string, error) { runtime.Goexit(); return "", nil })
		assert.Equal(t, flight.Result[string]{Val: "good", Stale: true}, r, "Goexit")
		r = <-c.DoChan(context.Background(), "k", func(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() })
		assert.Equal(t, flight.Result[string]{Val: "good", Stale: true}, r, "the WithTimeout expiry")
		assert.Equal(t, uint64(1), c.Stats().Timeouts)

		// A caller whose ctx ends gets ctx.Err(); another caller of the
		// same flight, refused by WithMaxWaiters, gets ErrOverloaded.
		release := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		ch := c.DoChan(ctx, "k", func(context.Context) (string, error) { <-release; return "", errDown })
		synctest.Wait()
		_, _, err = c.Do(context.Background(), "k", counted(&n, "x"))
		assert.ErrorIs(t, err, flight.ErrOverloaded)
		cancel()
		assert.ErrorIs(t, (<-ch).Err, context.Canceled)
		close(release)
		synctest.Wait()

		// Close answers the waiters with ErrClosed, not the stale value.
		release = make(chan struct{})
		ch = c.DoChan(context.Background(), "k", func(context.Context) (string, error) { <-release; return "", errDown })
		synctest.Wait()
		done := make(chan struct{})
		go func() { c.Close(); close(done) }()
		synctest.Wait()
		assert.ErrorIs(t, (<-ch).Err, flight.ErrClosed)
		close(release)
		<-done
		assert.Equal(t, uint64(3), c.Stats().Stale)
	})
}

// The options are checked in New; NewBatcher refuses WithBreaker and takes
// WithStaleIfError, which needs WithTTL there too.
func TestResilienceOptionsValidated(t *testing.T) {
	for want, opts := range map[string][]flight.Option{
		"flight: WithStaleIfError(1s) needs WithTTL":                       {flight.WithStaleIfError(time.Second)},
		"flight: WithStaleIfError(0s): need a positive duration":           {flight.WithTTL(time.Second), flight.WithStaleIfError(0)},
		"flight: WithStaleIfError(-1s): need a positive duration":          {flight.WithTTL(time.Second), flight.WithStaleIfError(-time.Second)},
		"flight: WithBreaker(0, 1s): need failures >= 1 and cooldown > 0":  {flight.WithBreaker(0, time.Second)},
		"flight: WithBreaker(1, 0s): need failures >= 1 and cooldown > 0":  {flight.WithBreaker(1, 0)},
		"flight: WithBreaker(1, -1s): need failures >= 1 and cooldown > 0": {flight.WithBreaker(1, -time.Second)},
		"flight: WithStaleIfError(1m0s) needs WithTTL":                     {flight.WithBreaker(1, time.Second), flight.WithStaleIfError(time.Minute)},
	} {
		assert.Equal(t, want, panicText(opts))
	}
	fn := func(context.Context, []string) (map[string]int, error) { return nil, nil }
	assert.PanicsWithValue(t, "flight: NewBatcher: WithBreaker does not apply to a Batcher", func() {
		flight.NewBatcher(fn, flight.WithBreaker(1, time.Second))
	})
	assert.PanicsWithValue(t, "flight: WithStaleIfError(1s) needs WithTTL", func() {
		flight.NewBatcher(fn, flight.WithStaleIfError(time.Second))
	})
	// Order does not matter.
	c := flight.New[string, string](flight.WithStaleIfError(time.Second), flight.WithBreaker(1, time.Second), flight.WithTTL(time.Second))
	require.NoError(t, c.Close())
}

// After failures consecutive failed flights the key's breaker is open for
// cooldown: Do and DoChan get ErrOpen at once, without fn; Stats.Open and
// Stats.Rejected count it; other keys are independent.
func TestBreakerOpens(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(3, time.Minute))
		defer c.Close()
		var n atomic.Int32
		for i := range 3 {
			assert.Zero(t, c.Stats().Open, "closed after %d failures", i)
			_, _, err := c.Do(context.Background(), "k", failing(&n))
			require.ErrorIs(t, err, errDown)
		}
		assert.Equal(t, 1, c.Stats().Open)
		v, shared, err := c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen)
		assert.Equal(t, "flight: circuit open", err.Error())
		assert.Empty(t, v)
		assert.False(t, shared)
		assert.Equal(t, flight.Result[string]{Err: flight.ErrOpen}, <-c.DoChan(context.Background(), "k", failing(&n)))
		assert.Equal(t, int32(3), n.Load(), "an open breaker runs no fn")
		st := c.Stats()
		assert.Equal(t, uint64(2), st.Rejected)
		assert.Equal(t, uint64(3), st.Flights)
		assert.Zero(t, st.Keys, "a refused call makes no key actor")

		// Another key is independent.
		v, _, err = c.Do(context.Background(), "other", counted(&n, "ok"))
		require.NoError(t, err)
		assert.Equal(t, "ok", v)
		// Still open just before the cooldown ends.
		time.Sleep(time.Minute - time.Nanosecond)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen)
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Zero(t, c.Stats().Open, "half-open after the cooldown")
	})
}

// After the cooldown the next call starts one trial flight, which every
// caller arriving meanwhile joins; its failure opens the breaker for
// another cooldown at once, its success closes it and resets the count.
func TestBreakerHalfOpenTrial(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(2, time.Minute))
		defer c.Close()
		var n atomic.Int32
		for range 2 {
			_, _, err := c.Do(context.Background(), "k", failing(&n))
			require.ErrorIs(t, err, errDown)
		}
		time.Sleep(time.Minute)

		// The trial: one execution for 1+3 callers and a DoChan.
		release := make(chan struct{})
		fn := func(context.Context) (string, error) { n.Add(1); <-release; return "", errDown }
		do, ch := heldFailure(t, c, "k", 3, fn)
		assert.Equal(t, int32(3), n.Load(), "one trial flight")
		close(release)
		for _, d := range do {
			assert.ErrorIs(t, (<-d).err, errDown)
		}
		assert.ErrorIs(t, (<-ch).Err, errDown)
		assert.Equal(t, 1, c.Stats().Open, "the failed trial opens it again")
		_, _, err := c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen, "at once, for another cooldown")
		time.Sleep(time.Minute - time.Nanosecond)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen)
		time.Sleep(time.Nanosecond)

		// A successful trial closes it and resets the count: one failure
		// then does not open it (failures is 2).
		v, _, err := c.Do(context.Background(), "k", counted(&n, "back"))
		require.NoError(t, err)
		assert.Equal(t, "back", v)
		assert.Zero(t, c.Stats().Open)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, errDown, "the count restarted at the success")
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen)
	})
}

// A success resets the count: failures must be consecutive.
func TestBreakerSuccessResets(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(2, time.Minute))
		defer c.Close()
		var n atomic.Int32
		for range 5 {
			_, _, err := c.Do(context.Background(), "k", failing(&n))
			require.ErrorIs(t, err, errDown)
			_, _, err = c.Do(context.Background(), "k", counted(&n, "ok"))
			require.NoError(t, err)
		}
		assert.Zero(t, c.Stats().Open)
		assert.Zero(t, c.Stats().Rejected)
	})
}

// Forget closes the key's breaker, at once for the caller's next call.
func TestBreakerForgetCloses(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(1, time.Hour))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", failing(&n))
		require.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		require.ErrorIs(t, err, flight.ErrOpen)
		c.Forget("k")
		assert.Zero(t, c.Stats().Open)
		v, _, err := c.Do(context.Background(), "k", counted(&n, "ok"))
		require.NoError(t, err)
		assert.Equal(t, "ok", v)
	})
}

// What counts: a panic, Goexit and the WithTimeout expiry are failures; an
// abandoned flight and the coordinator's refusals are not; a WithRetry
// loop is one flight and its final outcome counts.
func TestBreakerWhatCounts(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(3, time.Hour), flight.WithTimeout(time.Minute),
			flight.WithRetry(3, nil))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", func(context.Context) (string, error) { panic("boom") })
		var pe *flight.PanicError
		require.ErrorAs(t, err, &pe)
		r := <-c.DoChan(context.Background(), "k", func(context.Context) (string, error) { runtime.Goexit(); return "", nil })
		require.ErrorIs(t, r.Err, flight.ErrGoexit)
		assert.Zero(t, c.Stats().Open, "two failures")

		// Abandoned: its caller leaves; it does not count.
		ctx, cancel := context.WithCancel(context.Background())
		ch := c.DoChan(ctx, "k", func(fctx context.Context) (string, error) { <-fctx.Done(); return "", fctx.Err() })
		synctest.Wait()
		cancel()
		assert.ErrorIs(t, (<-ch).Err, context.Canceled)
		synctest.Wait()
		assert.Equal(t, uint64(1), c.Stats().Abandoned)
		assert.Zero(t, c.Stats().Open, "an abandoned flight does not count")

		// The timeout is the third failure.
		_, _, err = c.Do(context.Background(), "k", func(fctx context.Context) (string, error) { <-fctx.Done(); return "", fctx.Err() })
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 1, c.Stats().Open)

		// Retries: three failed attempts are one failed flight.
		_, _, err = c.Do(context.Background(), "r", failing(&n))
		require.ErrorIs(t, err, errDown)
		assert.Equal(t, int32(3), n.Load())
		assert.Equal(t, 1, c.Stats().Open, "one failure of three for key r")
		_, _, err = c.Do(context.Background(), "r", failing(&n))
		require.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "r", failing(&n))
		require.ErrorIs(t, err, errDown)
		assert.Equal(t, 2, c.Stats().Open)
		// A retry loop that ends well is a success.
		_, _, err = c.Do(context.Background(), "s", failing(&n))
		require.ErrorIs(t, err, errDown)
		var calls atomic.Int32
		v, _, err := c.Do(context.Background(), "s", func(context.Context) (string, error) {
			if calls.Add(1) < 3 {
				return "", errDown
			}
			return "third time", nil
		})
		require.NoError(t, err)
		assert.Equal(t, "third time", v)
		_, _, err = c.Do(context.Background(), "s", failing(&n))
		require.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "s", failing(&n))
		require.ErrorIs(t, err, errDown, "the successful loop reset the count")
		assert.Equal(t, 2, c.Stats().Open)
	})
}

// WithMaxWaiters' refusal is not a failed flight, and a call refused by
// the breaker is not one either (nothing ran).
func TestBreakerRefusalsDoNotCount(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(2, time.Hour), flight.WithMaxWaiters(1))
		defer c.Close()
		release := make(chan struct{})
		first := goDo(c, context.Background(), "k", func(context.Context) (string, error) { <-release; return "ok", nil })
		synctest.Wait()
		for range 3 {
			_, _, err := c.Do(context.Background(), "k", func(context.Context) (string, error) { return "", nil })
			require.ErrorIs(t, err, flight.ErrOverloaded)
		}
		close(release)
		require.NoError(t, (<-first).err)
		assert.Zero(t, c.Stats().Open)
	})
}

// With WithStaleIfError, an open breaker answers with the stale value
// while one is held (Stale, nil error, shared as a hit), and ErrOpen once
// it is dropped; a fresh retained result is still a hit.
func TestBreakerServesStale(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(1, time.Hour), flight.WithTTL(10*time.Second),
			flight.WithStaleIfError(time.Minute))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", counted(&n, "good"))
		require.NoError(t, err)
		time.Sleep(10 * time.Second)
		v, _, err := c.Do(context.Background(), "k", failing(&n))
		require.NoError(t, err)
		assert.Equal(t, "good", v, "the failure is answered stale")
		assert.Equal(t, 1, c.Stats().Open)

		v, shared, err := c.Do(context.Background(), "k", failing(&n))
		require.NoError(t, err)
		assert.Equal(t, "good", v)
		assert.True(t, shared)
		assert.Equal(t, flight.Result[string]{Val: "good", Shared: true, Stale: true}, <-c.DoChan(context.Background(), "k", failing(&n)))
		assert.Equal(t, int32(2), n.Load(), "no fn while open")
		st := c.Stats()
		assert.Equal(t, uint64(3), st.Stale)
		assert.Zero(t, st.Rejected)

		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Zero(t, c.Stats().Entries)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen, "the stale value is dropped at TTL + d")
		assert.Equal(t, uint64(1), c.Stats().Rejected)
	})
}

// A retained result is still a hit while the key's breaker is open (here
// a retained error, WithErrorTTL: the only result a failing key can have).
func TestBreakerFreshResultIsAHit(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(1, time.Hour), flight.WithErrorTTL(time.Minute))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", failing(&n))
		require.ErrorIs(t, err, errDown)
		assert.Equal(t, 1, c.Stats().Open)
		_, shared, err := c.Do(context.Background(), "k", failing(&n))
		require.ErrorIs(t, err, errDown, "the retained error, a hit")
		assert.True(t, shared)
		st := c.Stats()
		assert.Equal(t, uint64(1), st.Hits)
		assert.Zero(t, st.Rejected)
		time.Sleep(time.Minute)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen)
		assert.Equal(t, int32(1), n.Load())
	})
}

// A key's breaker state is dropped cooldown after its last failure (closed)
// or once half-open and untried for another cooldown: a failure after that
// counts from one. The idle coordinator then holds no goroutine (the
// bubble ends only when every goroutine has).
func TestBreakerStateDropped(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(2, time.Minute))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "closed", failing(&n))
		require.ErrorIs(t, err, errDown)
		time.Sleep(time.Minute)
		synctest.Wait() // the timer's message is handled
		_, _, err = c.Do(context.Background(), "closed", failing(&n))
		require.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "closed", failing(&n))
		require.ErrorIs(t, err, errDown, "the first failure was dropped: this is the second")
		assert.Equal(t, 1, c.Stats().Open)

		for range 2 {
			_, _, err = c.Do(context.Background(), "open", failing(&n))
			require.ErrorIs(t, err, errDown)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		_, _, err = c.Do(context.Background(), "open", failing(&n))
		require.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "open", failing(&n))
		require.ErrorIs(t, err, errDown, "dropped after 2·cooldown untried: counts from one")
		assert.Equal(t, 1, c.Stats().Open, "key closed opened again at its second")

		// Half-open and tried within the second cooldown: one failure
		// opens it again.
		for range 2 {
			_, _, err = c.Do(context.Background(), "half", failing(&n))
			require.ErrorIs(t, err, errDown)
		}
		time.Sleep(90 * time.Second)
		synctest.Wait()
		_, _, err = c.Do(context.Background(), "half", failing(&n))
		require.ErrorIs(t, err, errDown)
		_, _, err = c.Do(context.Background(), "half", failing(&n))
		require.ErrorIs(t, err, flight.ErrOpen, "the trial failed")

		// A trial still running when the half-open state would be dropped
		// keeps it: its failure opens the breaker again.
		for range 2 {
			_, _, err = c.Do(context.Background(), "slow", failing(&n))
			require.ErrorIs(t, err, errDown)
		}
		time.Sleep(time.Minute)
		release := make(chan struct{})
		trial := goDo(c, context.Background(), "slow", func(context.Context) (string, error) { <-release; return "", errDown })
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		close(release)
		require.ErrorIs(t, (<-trial).err, errDown)
		_, _, err = c.Do(context.Background(), "slow", failing(&n))
		require.ErrorIs(t, err, flight.ErrOpen, "the slow trial failed")
	})
}

// Stats.Stale, Stats.Rejected and Stats.Open are reported as flight.stale,
// flight.rejected (counters) and flight.open (an up-down counter).
func TestResilienceMetrics(t *testing.T) {
	m := newMeters(t)
	c := flight.New[string, string](flight.WithMeterProvider(m.provider), flight.WithBreaker(1, time.Hour),
		flight.WithTTL(time.Nanosecond), flight.WithStaleIfError(time.Hour))
	defer c.Close()
	var n atomic.Int32
	ctx := context.Background()
	_, _, err := c.Do(ctx, "a", counted(&n, "good"))
	require.NoError(t, err)
	v, _, err := c.Do(ctx, "a", failing(&n)) // past its TTL of 1ns: stale
	require.NoError(t, err)
	require.Equal(t, "good", v)
	_, _, err = c.Do(ctx, "a", failing(&n)) // open: stale
	require.NoError(t, err)
	for _, k := range []string{"b", "c"} {
		_, _, err = c.Do(ctx, k, failing(&n))
		require.ErrorIs(t, err, errDown)
	}
	for range 3 {
		_, _, err = c.Do(ctx, "b", failing(&n))
		require.ErrorIs(t, err, flight.ErrOpen)
	}
	st := c.Stats()
	require.Equal(t, uint64(2), st.Stale)
	require.Equal(t, uint64(3), st.Rejected)
	require.Equal(t, 3, st.Open)
	expect(t, m.collect(t), nil, map[string]int64{"flight.stale": 2, "flight.rejected": 3, "flight.open": 3})
	c.Forget("b")
	expect(t, m.collect(t), nil, map[string]int64{"flight.open": 2})
}

// An idle coordinator with open, half-open and stale keys holds no
// goroutine (not closed), and once the cooldowns and stale windows have
// passed it holds no breaker state or stale value either.
func TestResilienceIdleHoldsNoGoroutine(t *testing.T) {
	c := flight.New[int, string](flight.WithBreaker(1, 20*time.Millisecond), flight.WithTTL(time.Millisecond),
		flight.WithStaleIfError(30*time.Millisecond))
	ctx := context.Background()
	for i := range 100 {
		_, _, err := c.Do(ctx, i, func(context.Context) (string, error) { return "v", nil })
		require.NoError(t, err)
	}
	for i := range 200 {
		_, _, err := c.Do(ctx, i, func(context.Context) (string, error) { return "", errDown })
		if i < 100 && err != nil {
			// Within a millisecond the value may still be fresh; past it,
			// a stale answer.
			require.ErrorIs(t, err, errDown)
		}
	}
	require.Positive(t, c.Stats().Open)
	wait.Until(t, "idle", idle(c))
	goleak.VerifyNone(t) // breakers and stale values hold no goroutine
	wait.Until(t, "breakers and stale values dropped", func() bool {
		st := c.Stats()
		return st.Open == 0 && st.Entries == 0
	})
	goleak.VerifyNone(t)
	require.NoError(t, c.Close())
}

// A refresh-ahead that fails counts as a failed flight; while the breaker
// it opened is open, the fresh value is still a hit, and no further
// refresh starts.
func TestBreakerStopsRefreshAhead(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithBreaker(1, time.Hour), flight.WithTTL(10*time.Second),
			flight.WithRefreshAhead(time.Second))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", counted(&n, "good"))
		require.NoError(t, err)
		time.Sleep(2 * time.Second)
		v, shared, err := c.Do(context.Background(), "k", failing(&n)) // a hit that starts a refresh
		require.NoError(t, err)
		assert.Equal(t, "good", v)
		assert.True(t, shared)
		synctest.Wait()
		st := c.Stats()
		assert.Equal(t, uint64(1), st.Refreshes)
		assert.Equal(t, 1, st.Open, "the failed refresh opened the breaker")
		for range 3 {
			v, shared, err = c.Do(context.Background(), "k", failing(&n))
			require.NoError(t, err)
			assert.Equal(t, "good", v, "still a hit")
			assert.True(t, shared)
			synctest.Wait()
		}
		st = c.Stats()
		assert.Equal(t, uint64(1), st.Refreshes, "no refresh while open")
		assert.Equal(t, uint64(4), st.Hits)
		assert.Equal(t, int32(2), n.Load())
		time.Sleep(8 * time.Second)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen, "past its TTL, without WithStaleIfError")
	})
}
