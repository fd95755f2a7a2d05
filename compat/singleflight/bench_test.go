package singleflight_test

import (
	"strconv"
	"sync/atomic"
	"testing"

	xsync "golang.org/x/sync/singleflight"

	"github.com/actorflight/flight/compat/singleflight"
)

// group is what the benchmarks need of a singleflight implementation.
type group interface {
	Do(key string, fn func() (any, error)) (any, error, bool)
}

var impls = []struct {
	name string
	new  func() group
}{
	{"x-sync", func() group { return new(xsync.Group) }},
	{"compat", func() group { return new(singleflight.Group) }},
}

// BenchmarkGroup compares this package with golang.org/x/sync/singleflight
// in the same run, with a no-op fn:
//
//   - distinct: every call has a key of its own (each Do is a flight);
//   - hot: every call uses one key (callers overlap and share flights).
//
// Run with -count=5 and compare medians; docs/performance.md has the figures.
func BenchmarkGroup(b *testing.B) {
	noop := func() (any, error) { return nil, nil }
	for _, impl := range impls {
		b.Run("distinct/"+impl.name, func(b *testing.B) {
			g := impl.new()
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				// Keys are built outside the timed call as far as possible:
				// one strconv per call is the same for both.
				for pb.Next() {
					g.Do(strconv.FormatUint(next.Add(1), 36), noop)
				}
			})
		})
		b.Run("hot/"+impl.name, func(b *testing.B) {
			g := impl.new()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					g.Do("hot", noop)
				}
			})
		})
	}
}

// BenchmarkDoChan is BenchmarkGroup's distinct-key case through DoChan,
// where x/sync starts a goroutine per call and this package none.
func BenchmarkDoChan(b *testing.B) {
	noop := func() (any, error) { return nil, nil }
	b.Run("distinct/x-sync", func(b *testing.B) {
		var g xsync.Group
		var next atomic.Uint64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				<-g.DoChan(strconv.FormatUint(next.Add(1), 36), noop)
			}
		})
	})
	b.Run("distinct/compat", func(b *testing.B) {
		var g singleflight.Group
		var next atomic.Uint64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				<-g.DoChan(strconv.FormatUint(next.Add(1), 36), noop)
			}
		})
	})
}
