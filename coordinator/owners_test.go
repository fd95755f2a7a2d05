package coordinator

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fa "github.com/actorflight/flight/actor"
)

// Keys that share a hash are all kept, found and removed, whichever of
// them came first or leaves first.
func TestOwnersKeepCollidingKeys(t *testing.T) {
	var tab owners[string, int]
	mk := func(key string, h uint64) *fa.Owner[string, int] {
		k := fa.NewOwner[string, int](key, nil)
		k.Hash = h
		return k
	}
	a, b, c, d := mk("a", 7), mk("b", 7), mk("c", 7), mk("d", 8)
	for _, k := range []*fa.Owner[string, int]{a, b, c, d} {
		require.Nil(t, tab.get(k.Hash, k.Key))
		tab.put(k)
	}
	require.Equal(t, 4, tab.len())
	for _, k := range []*fa.Owner[string, int]{a, b, c, d} {
		assert.Same(t, k, tab.get(k.Hash, k.Key), k.Key)
	}
	assert.Nil(t, tab.get(7, "d"), "a key is found only under its own hash's entry or in clash")
	assert.Nil(t, tab.get(7, "z"))

	require.True(t, tab.remove(a), "the first of the colliding keys leaves first")
	require.False(t, tab.remove(a), "removed once")
	assert.Nil(t, tab.get(7, "a"))
	assert.Same(t, b, tab.get(7, "b"))
	assert.Same(t, c, tab.get(7, "c"))

	e := mk("e", 7) // takes the free entry of hash 7
	require.Nil(t, tab.get(7, "e"))
	tab.put(e)
	assert.Same(t, e, tab.get(7, "e"))
	assert.Same(t, b, tab.get(7, "b"))

	stale := mk("b", 7) // another owner of key b: not the one in the table
	assert.False(t, tab.remove(stale))
	assert.Same(t, b, tab.get(7, "b"))

	seen := map[string]int{}
	for k := range tab.all() {
		seen[k.Key]++
		require.True(t, tab.remove(k), "removing the yielded owner inside the loop")
	}
	assert.Equal(t, map[string]int{"b": 1, "c": 1, "d": 1, "e": 1}, seen)
	assert.Equal(t, 0, tab.len())
}

// With every key's hash the same, so that all but one key of each shard
// live in the table's clash map, flights still run once per key, share
// per key, answer the right key, Forget the right key, and leave nothing.
func TestEngineWithCollidingHashes(t *testing.T) {
	testHookHash = func(uint64) uint64 { return 42 }
	defer func() { testHookHash = nil }()
	cfg := testConfig(0)
	cfg.Shards = 2
	c, err := New[string, string, result](cfg)
	require.NoError(t, err)
	defer c.Close()

	const keys = 20
	bs := make([]*blocker, keys)
	var outs []<-chan result
	for i := range bs {
		bs[i] = newBlocker()
		key := fmt.Sprint("k", i)
		for range 3 {
			outs = append(outs, goDo(c, context.Background(), key, bs[i].fn(key)))
		}
		<-bs[i].started // one execution per key, whoever of its callers starts it
	}
	waitFor(t, func() bool { st := c.Stats(); return st.Keys == keys && st.Waiters == 3*keys })

	// Forget one key in the middle: only its flight is detached, and the
	// key's next flight runs once the forgotten one's fn has returned.
	c.Forget("k7")
	waitFor(t, func() bool { return c.Stats().Forgotten == 1 })
	again := goDo(c, context.Background(), "k7", func(context.Context) (string, error) { return "k7 again", nil })
	waitFor(t, func() bool { return c.Stats().Waiters == 3*keys+1 })
	pending(t, again, "the forgotten key's next flight")
	bs[7].unblock()
	r := <-again
	require.NoError(t, r.err)
	assert.Equal(t, "k7 again", r.v)

	for _, b := range bs {
		b.unblock()
	}
	for i, out := range outs {
		r := <-out
		require.NoError(t, r.err)
		assert.Equal(t, fmt.Sprint("k", i/3), r.v, "call %d", i)
	}
	for i, b := range bs {
		assert.EqualValues(t, 1, b.calls.Load(), "key %d", i)
	}

	// Many goroutines over colliding keys at once.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				key := fmt.Sprint("k", (g*7+i)%keys)
				v, _, err := c.Do(context.Background(), key, func(context.Context) (string, error) { return key, nil })
				if err != nil || v != key {
					t.Errorf("Do(%s) = %q, %v", key, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, func() bool { st := c.Stats(); return st.Keys == 0 && st.InFlight == 0 })
}

// waitFor polls cond, ordered by the engine's own counters, until it holds
// or a generous deadline passes (a hang, not a timing assumption).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}
