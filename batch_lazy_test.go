package flight_test

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
)

func actorsOf(sys *actor.ActorSystem) int {
	n := 0
	for _, m := range sys.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}

// A loader costs a struct. NewBatcher spawns no actor and
// starts no goroutine; the first load makes the actors; Close of a Batcher
// never used has nothing to stop; a load after Close is refused without
// making any.
func TestNewBatcherSpawnsNothing(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	defer sys.Shutdown()
	actors, goroutines := actorsOf(sys), runtime.NumGoroutine()
	bs := make([]*flight.Batcher[string, string], 100)
	for i := range bs {
		bs[i] = flight.NewBatcher(echo(nil), flight.WithActorSystem(sys), flight.WithShards(2))
	}
	assert.Equal(t, actors, actorsOf(sys), "actors after 100 NewBatcher")
	assert.Equal(t, goroutines, runtime.NumGoroutine(), "goroutines after 100 NewBatcher")
	for _, b := range bs[1:] {
		require.NoError(t, b.Close())
	}
	assert.Equal(t, actors, actorsOf(sys), "actors after closing unused Batchers")

	b := bs[0]
	v, err := b.Load(context.Background(), "k")
	require.NoError(t, err)
	assert.Equal(t, "v:k", v)
	assert.Equal(t, actors+2, actorsOf(sys), "the first load makes the two shard actors (the collector is none)")
	require.NoError(t, b.Close())
	assert.Equal(t, actors, actorsOf(sys))

	unused := flight.NewBatcher(echo(nil), flight.WithActorSystem(sys))
	require.NoError(t, unused.Close())
	_, err = unused.Load(context.Background(), "k")
	assert.ErrorIs(t, err, flight.ErrClosed)
	assert.ErrorIs(t, (<-unused.LoadChan(context.Background(), "k")).Err, flight.ErrClosed)
	_, err = unused.LoadMany(context.Background(), []string{"k"})
	assert.ErrorIs(t, err, flight.ErrClosed)
	assert.Equal(t, actors, actorsOf(sys), "loads after Close make no actor")
}

// NewBatcher and Close of an unused Batcher allocate the Batcher and its
// engine, nothing more: the configuration and the keyspace are held by
// value, and options written in the call stay on the caller's stack.
func TestNewBatcherAllocs(t *testing.T) {
	fn := echo(nil)
	opts := []flight.Option{flight.WithMaxBatch(100), flight.WithShards(1)}
	n := testing.AllocsPerRun(1000, func() {
		b := flight.NewBatcher(fn, opts...)
		_ = b.Close()
	})
	assert.LessOrEqual(t, n, 2.0, "allocations per NewBatcher+Close (options made once)")
	// Options written in the call, as a loader per request makes them: they
	// stay on the caller's stack.
	n = testing.AllocsPerRun(1000, func() {
		b := flight.NewBatcher(fn, flight.WithMaxBatch(100), flight.WithMaxWait(time.Millisecond), flight.WithShards(1))
		_ = b.Close()
	})
	assert.LessOrEqual(t, n, 2.0, "allocations per NewBatcher+Close (options in the call)")
	// With retained results: the store of every shard in three allocations
	// (its policy and stores together, their list), its maps and its first
	// chunk of slots only once a result is retained (before: 12 allocations
	// with one shard, 43 with eight).
	for _, shards := range []int{1, 8} {
		n = testing.AllocsPerRun(1000, func() {
			b := flight.NewBatcher(fn, flight.WithMaxBatch(100), flight.WithShards(shards), flight.WithTTL(time.Minute), flight.WithErrorTTL(time.Minute))
			_ = b.Close()
		})
		t.Logf("WithTTL, %d shards: %v allocations", shards, n)
		assert.LessOrEqual(t, n, 7.0, "allocations per NewBatcher+Close with WithTTL, %d shards", shards)
	}
}

// A nil Option is refused with a message that says so, by both
// constructors.
func TestNilOption(t *testing.T) {
	assert.PanicsWithValue(t, "flight: a nil Option", func() { flight.New[string, int](nil) })
	assert.PanicsWithValue(t, "flight: a nil Option", func() { flight.NewBatcher(echo(nil), nil) })
}
