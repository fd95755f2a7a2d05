package coordinator

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStore is the retained store on its own, on one goroutine, at
// the steady state of a long-lived store: 100,000 results of 8 stores
// retained, every keep of a fresh key evicting one (keep), and a look-up
// of a key that has none (find), the caller's half of a miss; miss is
// both, as a miss does them.
// The stores of BenchmarkStore and BenchmarkStoreParallel: benchShards
// stores of one policy bounded at benchMax, full (every next keep evicts).
const benchShards, benchMax = 8, 100_000

// fullStores makes those stores and returns them with their close.
func fullStores() ([]*store[uint64, int], func()) {
	cfg := &RetainConfig{TTL: time.Hour, MaxEntries: benchMax}
	pol := newPolicy[uint64, int](benchMax)
	sts := make([]*store[uint64, int], benchShards)
	for i := range sts {
		sts[i] = newStore[uint64, int](cfg, pol, func(any) {})
	}
	for k := range uint64(benchMax) {
		sts[k%benchShards].keep(k, 1, nil)
	}
	return sts, func() {
		for _, st := range sts {
			st.close()
		}
	}
}

func BenchmarkStore(b *testing.B) {
	for _, bc := range []struct {
		name string
		op   func(b *testing.B, st *store[uint64, int], k uint64) // on key k's store
	}{
		{"keep", func(_ *testing.B, st *store[uint64, int], k uint64) { st.keep(k, 1, nil) }},
		{"miss", func(b *testing.B, st *store[uint64, int], k uint64) { // a miss's look-up, then its result retained
			if _, ok := st.find(k, false); ok {
				b.Fatal("a hit")
			}
			st.keep(k, 1, nil)
		}},
		{"find", func(b *testing.B, st *store[uint64, int], k uint64) {
			if _, ok := st.find(k*0x9e3779b97f4a7c15, false); ok {
				b.Fatal("a hit")
			}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sts, done := fullStores()
			defer done()
			b.ReportAllocs()
			b.ResetTimer()
			for k := uint64(benchMax); k < benchMax+uint64(b.N); k++ {
				bc.op(b, sts[k%benchShards], k)
			}
		})
	}
}

// BenchmarkStoreParallel is keep on every processor at once, each
// goroutine on stores of its own (a store is written by its shard only,
// one message at a time), at the same steady state as BenchmarkStore: what
// the stores share is all that makes them wait for each other.
func BenchmarkStoreParallel(b *testing.B) {
	const shards, max = benchShards, benchMax
	sts, done := fullStores()
	defer done()
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1) - 1 // goroutine g keeps into stores g, g+n, ...: never one another's
		n := uint64(runtime.GOMAXPROCS(0))
		own := []*store[uint64, int]{}
		for i := g; i < shards; i += n {
			own = append(own, sts[i])
		}
		k := uint64(max) + g<<40
		for pb.Next() {
			if len(own) > 0 {
				own[k%uint64(len(own))].keep(k, 1, nil)
			}
			k++
		}
	})
}
