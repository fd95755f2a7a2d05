package flight_test

// Tests of retained results on the Batcher (WithTTL, WithErrorTTL,
// WithRefreshAhead, WithMaxEntries, WithStaleIfError on NewBatcher).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/shared"
)

// counting is echo that counts its calls and keeps each call's keys.
type counting struct {
	mu    sync.Mutex
	calls [][]string
	fail  func(keys []string) (map[string]string, error) // nil: echo
}

func (c *counting) fn(ctx context.Context, keys []string) (map[string]string, error) {
	c.mu.Lock()
	c.calls = append(c.calls, slices.Clone(keys))
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		return fail(keys)
	}
	return echo(nil)(ctx, keys)
}

func (c *counting) n() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.calls) }

func (c *counting) setFail(f func(keys []string) (map[string]string, error)) {
	c.mu.Lock()
	c.fail = f
	c.mu.Unlock()
}

// A key with a retained result is answered at once by Load, LoadChan
// and LoadMany, without a message to its shard (Loads, which the shard
// counts as it handles each call, does not move) and without joining a
// batch (no call of fn).
func TestBatchRetainHitNoMessageNoBatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	var c counting
	b := flight.NewBatcher(c.fn, flight.WithTTL(time.Hour), flight.WithMaxBatch(1))
	defer b.Close()
	ctx := context.Background()
	v, err := b.Load(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "v:a", v)
	require.Eventually(t, func() bool { return b.Stats().Entries == 1 }, 5*time.Second, time.Millisecond)
	before := b.Stats()

	v, err = b.Load(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, "v:a", v)
	ch := b.LoadChan(ctx, "a")
	select {
	case r := <-ch: // at once: the channel is filled before LoadChan returns
		assert.Equal(t, flight.Result[string]{Val: "v:a", Shared: true}, r)
	default:
		t.Fatal("LoadChan of a retained key was not answered at once")
	}
	vals, err := b.LoadMany(ctx, []string{"a", "a"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "v:a"}, vals)

	s := b.Stats()
	assert.Equal(t, 1, c.n(), "fn ran once")
	assert.Equal(t, before.Loads, s.Loads, "no message reached a shard")
	assert.Equal(t, before.Batches, s.Batches)
	assert.Equal(t, uint64(3), s.Hits)
	assert.Equal(t, 1, s.Entries)
}

// Refresh-ahead refreshes are collected into batches: 50 keys hit
// together past their refresh point make one call of fn with all 50, not
// 50 calls; with WithMaxBatch(20), three calls of at most 20. A refresh
// counts as a load of its key; each key is refreshed once.
func TestBatchRetainRefreshAheadBatched(t *testing.T) {
	shared.System()
	for _, maxBatch := range []int{100, 20} {
		t.Run(fmt.Sprint("maxBatch=", maxBatch), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var c counting
				b := flight.NewBatcher(c.fn, flight.WithTTL(10*time.Second), flight.WithRefreshAhead(5*time.Second),
					flight.WithMaxBatch(maxBatch), flight.WithMaxWait(time.Millisecond))
				keys := make([]string, 50)
				for i := range keys {
					keys[i] = fmt.Sprint("k", i)
				}
				ctx := context.Background()
				_, err := b.LoadMany(ctx, keys)
				require.NoError(t, err)
				synctest.Wait()
				first := c.n()
				require.Equal(t, 50, b.Stats().Entries)

				time.Sleep(6 * time.Second) // past the refresh point, within the TTL
				var wg sync.WaitGroup
				for _, k := range keys {
					wg.Go(func() {
						v, err := b.Load(ctx, k)
						assert.NoError(t, err)
						assert.Equal(t, "v:"+k, v)
					})
				}
				wg.Wait()
				time.Sleep(time.Millisecond) // the refreshes' WithMaxWait
				synctest.Wait()
				c.mu.Lock()
				refreshes := slices.Clone(c.calls[first:])
				c.mu.Unlock()
				assert.Len(t, refreshes, (50+maxBatch-1)/maxBatch, "refresh calls of fn")
				n := 0
				for _, ks := range refreshes {
					assert.LessOrEqual(t, len(ks), maxBatch)
					n += len(ks)
				}
				assert.Equal(t, 50, n, "each key refreshed once")
				s := b.Stats()
				assert.Equal(t, uint64(50), s.Refreshes)
				assert.Equal(t, uint64(100), s.Loads, "a refresh counts as a load of its key")
				assert.Equal(t, uint64(50), s.Hits)

				// The refreshed results restarted their TTL: at 10s (the
				// first results' TTL, before the refreshed ones' refresh
				// point) they are hits, and nothing more runs.
				time.Sleep(4 * time.Second)
				before := c.n()
				_, err = b.LoadMany(ctx, keys)
				require.NoError(t, err)
				synctest.Wait()
				assert.Equal(t, before, c.n(), "refreshed results are hits")

				require.NoError(t, b.Close())
			})
		})
	}
}

// Keys a KeyErrors names are retained as errors only with
// WithErrorTTL; ErrNotFound is retained with it too (negative caching);
// a ctx error inside a KeyErrors never.
func TestBatchRetainKeyErrorsOnlyWithErrorTTL(t *testing.T) {
	defer goleak.VerifyNone(t)
	errBad := errors.New("bad")
	fail := func(keys []string) (map[string]string, error) {
		return map[string]string{"good": "v:good"}, flight.KeyErrors[string]{"bad": errBad, "canceled": context.Canceled}
	}
	for _, errorTTL := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint("errorTTL=", errorTTL), func(t *testing.T) {
			c := counting{fail: fail}
			opts := []flight.Option{flight.WithTTL(time.Hour), flight.WithMaxBatch(1)}
			if errorTTL > 0 {
				opts = append(opts, flight.WithErrorTTL(errorTTL))
			}
			b := flight.NewBatcher(c.fn, opts...)
			defer b.Close()
			ctx := context.Background()
			for range 2 {
				_, err := b.Load(ctx, "bad")
				require.ErrorIs(t, err, errBad)
				_, err = b.Load(ctx, "missing")
				require.ErrorIs(t, err, flight.ErrNotFound)
				_, err = b.Load(ctx, "canceled")
				require.ErrorIs(t, err, context.Canceled)
				v, err := b.Load(ctx, "good")
				require.NoError(t, err)
				require.Equal(t, "v:good", v)
			}
			if errorTTL == 0 {
				assert.Equal(t, 7, c.n(), "only good was retained")
				assert.Equal(t, 1, b.Stats().Entries)
			} else {
				assert.Equal(t, 5, c.n(), "bad, missing and good retained; canceled never")
				assert.Equal(t, 3, b.Stats().Entries)
				assert.Equal(t, uint64(3), b.Stats().Hits)
			}
		})
	}
}

// A batch-wide error (fn's error, a panic) is never retained, even
// with WithErrorTTL.
func TestBatchRetainBatchWideErrorNever(t *testing.T) {
	defer goleak.VerifyNone(t)
	errDown := errors.New("down")
	for name, fail := range map[string]func([]string) (map[string]string, error){
		"error": func([]string) (map[string]string, error) { return nil, errDown },
		"panic": func([]string) (map[string]string, error) { panic(errDown) },
	} {
		t.Run(name, func(t *testing.T) {
			c := counting{fail: fail}
			b := flight.NewBatcher(c.fn, flight.WithTTL(time.Hour), flight.WithErrorTTL(time.Hour), flight.WithMaxBatch(1))
			defer b.Close()
			for range 3 {
				_, err := b.Load(context.Background(), "a")
				require.ErrorIs(t, err, errDown)
			}
			assert.Equal(t, 3, c.n())
			assert.Equal(t, 0, b.Stats().Entries)
			assert.Zero(t, b.Stats().Hits)
		})
	}
}

// WithStaleIfError on the Batcher: past its TTL, a key whose load fails (its KeyErrors
// entry, or a batch-wide error) is answered with its stale value, nil
// error, Result.Stale; ErrNotFound is an answer, never replaced by a stale
// value. The stale value is dropped at TTL + d without a caller.
func TestBatchStaleIfError(t *testing.T) {
	shared.System()
	synctest.Test(t, func(t *testing.T) {
		var c counting
		b := flight.NewBatcher(c.fn, flight.WithTTL(time.Second), flight.WithStaleIfError(10*time.Second),
			flight.WithMaxBatch(1))
		ctx := context.Background()
		for _, k := range []string{"a", "b", "c"} {
			_, err := b.Load(ctx, k)
			require.NoError(t, err)
		}
		time.Sleep(2 * time.Second) // past the TTL: stale
		c.setFail(func(keys []string) (map[string]string, error) {
			switch keys[0] {
			case "a":
				return nil, flight.KeyErrors[string]{"a": errors.New("a failed")}
			case "b":
				return nil, errors.New("down")
			}
			return map[string]string{}, nil // c: not found
		})
		v, err := b.Load(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "v:a", v)
		r := <-b.LoadChan(ctx, "b")
		assert.Equal(t, flight.Result[string]{Val: "v:b", Stale: true}, r)
		vals, err := b.LoadMany(ctx, []string{"a", "b"})
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"a": "v:a", "b": "v:b"}, vals)
		_, err = b.Load(ctx, "c")
		require.ErrorIs(t, err, flight.ErrNotFound)
		s := b.Stats()
		assert.Equal(t, uint64(4), s.Stale)
		assert.Equal(t, 3, s.Entries, "a, b and c stale values (c's ErrNotFound is not retained without WithErrorTTL)")

		time.Sleep(10 * time.Second) // past TTL + d
		synctest.Wait()
		assert.Equal(t, 0, b.Stats().Entries, "stale values dropped without a caller")
		_, err = b.Load(ctx, "a")
		require.Error(t, err, "no stale value any more")
		require.NoError(t, b.Close())
	})
}

// Per key: expired results are dropped without any caller asking
// (Entries back to 0), by a timer: no goroutine waits meanwhile.
func TestBatchRetainExpiryWithoutCaller(t *testing.T) {
	shared.System()
	synctest.Test(t, func(t *testing.T) {
		var c counting
		b := flight.NewBatcher(c.fn, flight.WithTTL(time.Second), flight.WithErrorTTL(time.Second/2))
		_, err := b.LoadMany(context.Background(), []string{"a", "b", "c"})
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, 3, b.Stats().Entries)
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 3, b.Stats().Entries, "kept for the TTL")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 0, b.Stats().Entries, "dropped at the TTL")
		require.NoError(t, b.Close())
	})
}

// Entries never goes beyond WithMaxEntries.
func TestBatchRetainMaxEntries(t *testing.T) {
	defer goleak.VerifyNone(t)
	var c counting
	var over atomic.Int32
	b := flight.NewBatcher(c.fn, flight.WithTTL(time.Hour), flight.WithMaxEntries(5), flight.WithShards(4))
	defer b.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				_, err := b.Load(context.Background(), fmt.Sprint(g, "-", i))
				assert.NoError(t, err)
				if b.Stats().Entries > 5 {
					over.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Zero(t, over.Load())
	assert.Equal(t, 5, b.Stats().Entries)
}

// Close drops every retained result: Entries 0, and a retained key then
// gets ErrClosed.
func TestBatchRetainClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	var c counting
	b := flight.NewBatcher(c.fn, flight.WithTTL(time.Hour), flight.WithStaleIfError(time.Hour))
	_, err := b.LoadMany(context.Background(), []string{"a", "b"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Stats().Entries == 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, b.Close())
	assert.Equal(t, 0, b.Stats().Entries)
	_, err = b.Load(context.Background(), "a")
	assert.ErrorIs(t, err, flight.ErrClosed)
	r := <-b.LoadChan(context.Background(), "a")
	assert.ErrorIs(t, r.Err, flight.ErrClosed)
	_, err = b.LoadMany(context.Background(), []string{"a"})
	assert.ErrorIs(t, err, flight.ErrClosed)
}

// An idle Batcher that retains results holds no goroutine: the expiry is a
// runtime timer, and the workers exit after their linger.
func TestBatchRetainIdleHoldsNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t)
	var c counting
	b := flight.NewBatcher(c.fn, flight.WithTTL(time.Hour), flight.WithRefreshAhead(time.Minute))
	_, err := b.LoadMany(context.Background(), []string{"a", "b"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Stats().Entries == 2 }, 5*time.Second, time.Millisecond)
	goleak.VerifyNone(t) // retries until the workers' linger has passed
	assert.Equal(t, 2, b.Stats().Entries)
	require.NoError(t, b.Close())
}
