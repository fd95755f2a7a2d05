package flight_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
)

// Stale values and breakers on the slot store of retained results: a stale
// value is an entry like any other for WithMaxEntries (one bound across
// shards, CLOCK over every shard's entries), and an open breaker serves the
// stale value it saw only while the store still holds that very result.

// A stale value counts in Stats.Entries and against WithMaxEntries, which
// stays one bound across shards: beyond it, CLOCK evicts the oldest entry,
// stale or not, whichever shard holds it, and the new result is retained.
// An evicted stale value answers no failed flight any more.
func TestStaleValuesCountAgainstMaxEntries(t *testing.T) {
	bubble(t, func(t *testing.T) {
		const max = 3
		c := flight.New[string, string](flight.WithShards(8), flight.WithMaxEntries(max),
			flight.WithTTL(time.Second), flight.WithStaleIfError(time.Hour))
		defer c.Close()
		var n atomic.Int32
		for i := range 10 {
			key := fmt.Sprint("k", i)
			_, _, err := c.Do(context.Background(), key, counted(&n, "v"+key))
			require.NoError(t, err)
			time.Sleep(2 * time.Second) // past the TTL: stale
			synctest.Wait()
			assert.Equal(t, min(i+1, max), c.Stats().Entries, "after %s: stale values count, never above the bound", key)
		}
		// The last three are held (stale); the first seven were evicted.
		for i := 7; i < 10; i++ {
			key := fmt.Sprint("k", i)
			r := <-c.DoChan(context.Background(), key, failing(&n))
			assert.Equal(t, flight.Result[string]{Val: "v" + key, Stale: true}, r, key)
		}
		_, _, err := c.Do(context.Background(), "k0", failing(&n))
		assert.ErrorIs(t, err, errDown, "an evicted stale value answers nothing")
		st := c.Stats()
		assert.Equal(t, uint64(3), st.Stale)
		assert.Equal(t, max, st.Entries)
		assert.Zero(t, st.Hits, "a stale value is never a hit")
	})
}

// An open breaker remembers which retained result its key held (a slot and
// its generation), not a pointer to it: once WithMaxEntries evicts the
// key's stale value and the slot is reused for another key's result, a
// refused call gets ErrOpen, never the other key's value nor the evicted
// one. With one shard and with several (the slot is reused across shards:
// the slab is the coordinator's).
func TestOpenBreakerNeverReadsAReusedSlot(t *testing.T) {
	for _, shards := range []int{1, 8} {
		t.Run(fmt.Sprint("shards=", shards), func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				c := flight.New[string, string](flight.WithShards(shards), flight.WithMaxEntries(1),
					flight.WithTTL(10*time.Second), flight.WithStaleIfError(time.Hour),
					flight.WithBreaker(1, time.Hour))
				defer c.Close()
				var n atomic.Int32
				_, _, err := c.Do(context.Background(), "a", counted(&n, "A"))
				require.NoError(t, err)
				time.Sleep(11 * time.Second) // past the TTL: stale
				synctest.Wait()

				// The failure opens the breaker and is answered with the stale value.
				r := <-c.DoChan(context.Background(), "a", failing(&n))
				require.Equal(t, flight.Result[string]{Val: "A", Stale: true}, r)
				require.Equal(t, 1, c.Stats().Open)
				r = <-c.DoChan(context.Background(), "a", failing(&n))
				require.Equal(t, flight.Result[string]{Val: "A", Shared: true, Stale: true}, r,
					"refused with the stale value (shared, as a hit)")
				require.Equal(t, int32(2), n.Load(), "the open breaker runs no fn")

				// Another key's result evicts it (WithMaxEntries(1)) and takes its slot.
				v, _, err := c.Do(context.Background(), "b", counted(&n, "B"))
				require.NoError(t, err)
				require.Equal(t, "B", v)
				require.Equal(t, 1, c.Stats().Entries)

				v, shared, err := c.Do(context.Background(), "a", failing(&n))
				assert.ErrorIs(t, err, flight.ErrOpen)
				assert.Empty(t, v, "neither b's value nor a's evicted one")
				assert.False(t, shared)
				r = <-c.DoChan(context.Background(), "a", failing(&n))
				assert.ErrorIs(t, r.Err, flight.ErrOpen)
				assert.False(t, r.Stale)
				assert.Empty(t, r.Val)
				assert.Equal(t, int32(3), n.Load())

				// b's result is untouched, and still a hit.
				v, shared, err = c.Do(context.Background(), "b", failing(&n))
				require.NoError(t, err)
				assert.Equal(t, "B", v)
				assert.True(t, shared)
				st := c.Stats()
				assert.Equal(t, uint64(2), st.Rejected)
				assert.Equal(t, uint64(2), st.Stale)
				assert.Equal(t, uint64(1), st.Hits)
			})
		})
	}
}

// An open breaker's fresh retained result (an error kept with WithErrorTTL)
// is a hit while the store holds it, and once it expires the refusal is
// ErrOpen: the breaker reads the store's entry, whose deadlines it checks.
func TestOpenBreakerReadsTheStoresEntry(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := flight.New[string, string](flight.WithTTL(time.Minute), flight.WithErrorTTL(10*time.Second),
			flight.WithBreaker(1, time.Hour))
		defer c.Close()
		var n atomic.Int32
		_, _, err := c.Do(context.Background(), "k", failing(&n))
		require.ErrorIs(t, err, errDown)
		require.Equal(t, 1, c.Stats().Open)
		_, shared, err := c.Do(context.Background(), "k", failing(&n))
		require.ErrorIs(t, err, errDown, "the retained error is still a hit")
		assert.True(t, shared)
		assert.Equal(t, uint64(1), c.Stats().Hits)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Zero(t, c.Stats().Entries)
		_, _, err = c.Do(context.Background(), "k", failing(&n))
		assert.ErrorIs(t, err, flight.ErrOpen)
		assert.Equal(t, int32(1), n.Load())
	})
}
