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

	"github.com/actorflight/flight"
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

// The options are checked in New; NewBatcher refuses both.
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
	assert.PanicsWithValue(t, "flight: NewBatcher: WithStaleIfError (it needs WithTTL, which a Batcher does not take) does not apply to a Batcher", func() {
		flight.NewBatcher(fn, flight.WithStaleIfError(time.Second))
	})
	// Order does not matter.
	c := flight.New[string, string](flight.WithStaleIfError(time.Second), flight.WithBreaker(1, time.Second), flight.WithTTL(time.Second))
	require.NoError(t, c.Close())
}
