package batch

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func allocEngine(tb testing.TB, maxBatch int) *Engine[int, int, int] {
	vals := map[int]int{0: 0}
	e, err := New(Config[int, int, int]{
		Fn:       func(context.Context, []int) (map[int]int, error) { return vals, nil },
		MaxBatch: maxBatch, MaxWait: time.Hour, Shards: 1,
		Logger: slog.New(slog.DiscardHandler),
		Hooks:  intHooks{},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

// A load of a batch dispatched full costs one message, and the
// batch no context of the standard library (its ctx is embedded in it) and
// no timer (the collector's one WithMaxWait timer is reset, not made). The
// six allocations left: the call and its channel, the key's entry, the
// batch, its entries and its keys.
func TestAllocsPerFullBatch(t *testing.T) {
	e := allocEngine(t, 1)
	ctx := context.Background()
	e.Load(ctx, 0) // the actors, the pool, the timer
	if n := testing.AllocsPerRun(500, func() { e.Load(ctx, 0) }); n > 6 {
		t.Errorf("%.1f allocations per load of a one-key batch, want at most 6", n)
	}
}

func BenchmarkFullBatchLoad(b *testing.B) {
	e := allocEngine(b, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e.Load(ctx, 0)
	}
}

// intHooks answer with the value alone.
type intHooks struct{}

func (intHooks) Result(v int, _ error, _ bool) int     { return v }
func (intHooks) KeyErrors(error) (map[int]error, bool) { return nil, false }
