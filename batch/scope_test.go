package batch

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/actorflight/flight/internal/wait"
)

// With Config.Scope, a batch never holds keys of two scopes, however their
// loads interleave; each scope's open batch is dispatched when full or at
// its own WithMaxWait deadline (the collector's one timer is re-armed for
// the oldest open batch).
func TestScopeNeverMixed(t *testing.T) {
	var mu sync.Mutex
	var calls [][]string
	c := testConfig(func(_ context.Context, keys []string) (map[string]string, error) {
		mu.Lock()
		calls = append(calls, slices.Clone(keys))
		mu.Unlock()
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v:" + k
		}
		return m, nil
	})
	c.MaxBatch, c.MaxWait = 3, 5*time.Millisecond
	c.Scope = func(k string) any { return k[:1] } // "a1" is in scope "a"
	e := newEngine(t, c)
	var outs []<-chan result
	for _, k := range []string{"a1", "b1", "a2", "b2", "c1", "a3", "b3"} {
		outs = append(outs, e.LoadChan(context.Background(), k, nil))
	}
	for i, o := range outs {
		if r := wait.Recv(t, o); r.err != nil || !strings.HasPrefix(r.v, "v:") {
			t.Fatalf("load %d: %+v", i, r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, keys := range calls {
		for _, k := range keys {
			if k[:1] != keys[0][:1] {
				t.Fatalf("a batch mixed scopes: %v", keys)
			}
		}
		n += len(keys)
	}
	if n != 7 || len(calls) != 3 {
		t.Fatalf("batches %v, want a1 a2 a3 / b1 b2 b3 (full) and c1 (at its deadline)", calls)
	}
	wait.Until(t, "idle", func() bool { return idle(e) })
}
