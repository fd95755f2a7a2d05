package bench

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/actorflight/flight"
)

// WithBreaker and WithStaleIfError: what a breaker costs a distinct-key
// flight that never fails (target: ≤ 5% more than none), and what a call
// refused by an open breaker costs against a hit (target: no more), on the
// same 1,024 keys as BenchmarkRetainHit.

// BenchmarkBreakerNoFailure: distinct keys, fn never fails, with and
// without WithBreaker (and with WithTTL, with and without WithStaleIfError).
func BenchmarkBreakerNoFailure(b *testing.B) {
	benchFreshKeys(b, []optionCase{
		{"none", nil},
		{"breaker", []flight.Option{flight.WithBreaker(5, time.Second)}},
		{"ttl", []flight.Option{flight.WithTTL(time.Hour)}},
		{"ttl-stale-breaker", []flight.Option{flight.WithTTL(time.Hour), flight.WithStaleIfError(time.Hour), flight.WithBreaker(5, time.Second)}},
	})
}

var errBench = errors.New("down")

// BenchmarkBreakerRefusal: a hit (WithTTL), a call refused with ErrOpen,
// and a call answered with a stale value by an open breaker.
func BenchmarkBreakerRefusal(b *testing.B) {
	ctx := context.Background()
	ok := func(context.Context) (int, error) { return 1, nil }
	fail := func(context.Context) (int, error) { return 0, errBench }
	run := func(b *testing.B, c *flight.Coordinator[string, int], check func(shared bool, err error) bool) {
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, shared, err := c.Do(ctx, retainKeyNames[i&(retainKeys-1)], fail); !check(shared, err) {
					panic("an unexpected answer")
				}
				i++
			}
		})
		b.StopTimer()
		if st := c.Stats(); st.Flights != 2*retainKeys && st.Flights != retainKeys {
			b.Fatalf("%d flights for %d keys", st.Flights, retainKeys)
		}
	}
	b.Run("hit", func(b *testing.B) {
		c := flight.New[string, int](flight.WithTTL(time.Hour))
		defer c.Close()
		for _, k := range retainKeyNames {
			if _, _, err := c.Do(ctx, k, ok); err != nil {
				b.Fatal(err)
			}
		}
		run(b, c, func(shared bool, err error) bool { return shared && err == nil })
	})
	b.Run("open", func(b *testing.B) {
		c := flight.New[string, int](flight.WithBreaker(1, time.Hour))
		defer c.Close()
		for _, k := range retainKeyNames {
			if _, _, err := c.Do(ctx, k, fail); !errors.Is(err, errBench) {
				b.Fatal(err)
			}
		}
		run(b, c, func(shared bool, err error) bool { return errors.Is(err, flight.ErrOpen) })
	})
	b.Run("open-ttl", func(b *testing.B) {
		// With WithTTL too: the call looks for a hit first.
		c := flight.New[string, int](flight.WithBreaker(1, time.Hour), flight.WithTTL(time.Hour))
		defer c.Close()
		for _, k := range retainKeyNames {
			if _, _, err := c.Do(ctx, k, fail); !errors.Is(err, errBench) {
				b.Fatal(err)
			}
		}
		run(b, c, func(shared bool, err error) bool { return errors.Is(err, flight.ErrOpen) })
	})
	b.Run("open-stale", func(b *testing.B) {
		c := flight.New[string, int](flight.WithBreaker(1, time.Hour), flight.WithTTL(time.Nanosecond),
			flight.WithStaleIfError(time.Hour))
		defer c.Close()
		for _, k := range retainKeyNames {
			if _, _, err := c.Do(ctx, k, ok); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Microsecond)
			if _, _, err := c.Do(ctx, k, fail); err != nil {
				b.Fatal(err) // answered stale
			}
		}
		run(b, c, func(shared bool, err error) bool { return shared && err == nil })
	})
}

// interleave runs the calls of each case in turn, in blocks of 256 calls
// on one goroutine, and reports each case's median block time per call
// and its ratio to the first case's. On a shared machine whose load drifts
// from second to second, two benchmarks run one after the other can differ
// by 2× for no reason of their own; alternated blocks a few tens of
// microseconds long see the same load, and the median drops the blocks
// that another process preempted.
//
// With parallel set, GOMAXPROCS goroutines do so at once (each over its
// own share of the calls), so that the figures include the contention of
// concurrent callers, as RunParallel's do.
func interleave(b *testing.B, names []string, calls []func(i int), parallel ...bool) {
	const block = 256
	procs := 1
	if len(parallel) > 0 && parallel[0] {
		procs = runtime.GOMAXPROCS(0)
	}
	per := make([][][]time.Duration, procs)
	var wg sync.WaitGroup
	b.ResetTimer()
	for p := range procs {
		per[p] = make([][]time.Duration, len(calls))
		wg.Go(func() {
			for n := p * block; n < b.N; n += procs * block {
				for j, call := range calls {
					start := time.Now()
					for i := n; i < n+block; i++ {
						call(i)
					}
					per[p][j] = append(per[p][j], time.Since(start))
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	blocks := make([][]time.Duration, len(calls))
	for p := range per {
		for j := range calls {
			blocks[j] = append(blocks[j], per[p][j]...)
		}
	}
	med := make([]float64, len(calls))
	for j := range blocks {
		if len(blocks[j]) == 0 {
			return // b.N smaller than a block
		}
		slices.Sort(blocks[j])
		med[j] = float64(blocks[j][len(blocks[j])/2].Nanoseconds()) / block
	}
	for j, name := range names {
		b.ReportMetric(med[j], name+"-ns/call")
		if j > 0 {
			b.ReportMetric(med[j]/med[0], name+"/"+names[0])
		}
	}
}

// BenchmarkBreakerCost: the two cost targets, interleaved (see interleave):
// a distinct-key flight that succeeds with WithBreaker against none, and a
// call refused by an open breaker (WithBreaker alone, and with WithTTL)
// against a hit, and a call an open breaker answers with a stale value.
func BenchmarkBreakerCost(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		suffix := ""
		if parallel {
			suffix = "-parallel"
		}
		b.Run("flight"+suffix, func(b *testing.B) { benchFlightCost(b, parallel) })
		b.Run("refusal"+suffix, func(b *testing.B) { benchRefusalCost(b, parallel) })
	}
}

func benchFlightCost(b *testing.B, parallel bool) {
	ctx := context.Background()
	ok := func(context.Context) (int, error) { return 1, nil }
	none := flight.New[uint64, int]()
	defer none.Close()
	brk := flight.New[uint64, int](flight.WithBreaker(5, time.Second))
	defer brk.Close()
	do := func(c *flight.Coordinator[uint64, int]) func(int) {
		return func(i int) { // each i once per coordinator: a fresh key
			if _, shared, err := c.Do(ctx, uint64(i), ok); shared || err != nil {
				panic("a fresh key was shared or failed")
			}
		}
	}
	interleave(b, []string{"none", "breaker"}, []func(int){do(none), do(brk)}, parallel)
}

func benchRefusalCost(b *testing.B, parallel bool) {
	ctx := context.Background()
	ok := func(context.Context) (int, error) { return 1, nil }
	fail := func(context.Context) (int, error) { return 0, errBench }
	hit := flight.New[string, int](flight.WithTTL(time.Hour))
	defer hit.Close()
	open := flight.New[string, int](flight.WithBreaker(1, time.Hour))
	defer open.Close()
	openTTL := flight.New[string, int](flight.WithBreaker(1, time.Hour), flight.WithTTL(time.Hour))
	defer openTTL.Close()
	openStale := flight.New[string, int](flight.WithBreaker(1, time.Hour), flight.WithTTL(time.Nanosecond),
		flight.WithStaleIfError(time.Hour))
	defer openStale.Close()
	// A hit on a coordinator whose every shard holds open breakers (for
	// other keys): the call looks at the breakers first.
	hitNear := flight.New[string, int](flight.WithTTL(time.Hour), flight.WithBreaker(1, time.Hour))
	defer hitNear.Close()
	for _, k := range retainKeyNames {
		hitNear.Do(ctx, k, ok)
		hitNear.Do(ctx, "down:"+k, fail)
		hit.Do(ctx, k, ok)
		open.Do(ctx, k, fail)
		openTTL.Do(ctx, k, fail)
		openStale.Do(ctx, k, ok)
		time.Sleep(time.Microsecond) // past the TTL: stale
		if _, _, err := openStale.Do(ctx, k, fail); err != nil {
			b.Fatal(err)
		}
	}
	if st := hitNear.Stats(); st.Open != retainKeys {
		b.Fatalf("%d open breakers", st.Open)
	}
	interleave(b, []string{"hit", "open", "open-ttl", "open-stale", "hit-beside-open"}, []func(int){
		func(i int) {
			if _, shared, err := hit.Do(ctx, retainKeyNames[i&(retainKeys-1)], fail); !shared || err != nil {
				panic("a miss in the hit case")
			}
		},
		func(i int) {
			if _, _, err := open.Do(ctx, retainKeyNames[i&(retainKeys-1)], fail); err != flight.ErrOpen {
				panic("not refused")
			}
		},
		func(i int) {
			if _, _, err := openTTL.Do(ctx, retainKeyNames[i&(retainKeys-1)], fail); err != flight.ErrOpen {
				panic("not refused")
			}
		},
		func(i int) {
			if _, shared, err := openStale.Do(ctx, retainKeyNames[i&(retainKeys-1)], fail); !shared || err != nil {
				panic("not answered stale")
			}
		},
		func(i int) {
			if _, shared, err := hitNear.Do(ctx, retainKeyNames[i&(retainKeys-1)], fail); !shared || err != nil {
				panic("a miss in the hit case")
			}
		},
	}, parallel)
}
