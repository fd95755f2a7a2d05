package flight_test

// Round 3 of the trust issues, the Coordinator's side: retained results and
// retries keeping the rules their docs state (WithMaxEntries as a bound on
// entries and on memory, Forget during a refresh or a backoff, refresh-ahead
// after a failure, a miss during a refresh, InFlight during a backoff, panics
// of the backoff and of the WithRetryIf predicate, edge values of the
// options).

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
)

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

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

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
