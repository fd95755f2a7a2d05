package batch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/actorflight/flight/coordinator"
	"github.com/actorflight/flight/internal/wait"
)

// A hit is answered on the caller's goroutine: no message reaches a shard
// or the collector (counted by the test hooks), and no batch is made.
func TestRetainHitSendsNoMessage(t *testing.T) {
	var msgs atomic.Int64
	f := func(string, any) bool { msgs.Add(1); return false }
	fault.Store(&f)
	t.Cleanup(func() { fault.Store(nil) })
	cfg := testConfig(func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{keys[0]: "v:" + keys[0]}, nil
	})
	cfg.Retain = &coordinator.RetainConfig{TTL: time.Hour, MaxEntries: 10}
	e := newEngine(t, cfg)
	ctx := context.Background()
	if r := e.Load(ctx, "a"); r.v != "v:a" || r.err != nil {
		t.Fatalf("miss: %+v", r)
	}
	wait.Until(t, "retained", func() bool { return e.Entries() == 1 })
	// The shard retains before it answers; the collector's done may still
	// be under way on the worker: wait for it to settle.
	wait.Until(t, "batch finished", func() bool { return e.Stats().Running.Load() == 0 })
	before := msgs.Load()
	if r := e.Load(ctx, "a"); r != (result{"v:a", nil, true}) {
		t.Fatalf("hit: %+v", r)
	}
	if r := <-e.LoadChan(ctx, "a", nil); r != (result{"v:a", nil, true}) {
		t.Fatalf("LoadChan hit: %+v", r)
	}
	vals, errs, _, err := e.LoadMany(ctx, []string{"a"})
	if err != nil || errs != nil || vals["a"] != "v:a" {
		t.Fatalf("LoadMany hit: %v %v %v", vals, errs, err)
	}
	if n := msgs.Load() - before; n != 0 {
		t.Fatalf("%d messages handled for hits, want 0", n)
	}
	if got := e.Stats().Batches.Load(); got != 1 {
		t.Fatalf("%d batches, want 1", got)
	}
	if got := e.Stats().Hits.Load(); got != 3 {
		t.Fatalf("%d hits, want 3", got)
	}
}
