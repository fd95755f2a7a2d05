package bench

import (
	"context"
	"errors"
	"slices"
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
func interleave(b *testing.B, names []string, calls []func(i int)) {
	const block = 256
	blocks := make([][]time.Duration, len(calls))
	n := 0
	b.ResetTimer()
	for n < b.N {
		for j, call := range calls {
			start := time.Now()
			for i := n; i < n+block; i++ {
				call(i)
			}
			blocks[j] = append(blocks[j], time.Since(start))
		}
		n += block
	}
	b.StopTimer()
	med := make([]float64, len(calls))
	for j := range blocks {
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
	ctx := context.Background()
	ok := func(context.Context) (int, error) { return 1, nil }
	fail := func(context.Context) (int, error) { return 0, errBench }
	b.Run("flight", func(b *testing.B) {
		none := flight.New[uint64, int]()
		defer none.Close()
		brk := flight.New[uint64, int](flight.WithBreaker(5, time.Second))
		defer brk.Close()
		var k uint64
		do := func(c *flight.Coordinator[uint64, int]) func(int) {
			return func(int) {
				k++
				if _, shared, err := c.Do(ctx, k, ok); shared || err != nil {
					panic("a fresh key was shared or failed")
				}
			}
		}
		interleave(b, []string{"none", "breaker"}, []func(int){do(none), do(brk)})
	})
	b.Run("refusal", func(b *testing.B) {
		hit := flight.New[string, int](flight.WithTTL(time.Hour))
		defer hit.Close()
		open := flight.New[string, int](flight.WithBreaker(1, time.Hour))
		defer open.Close()
		openTTL := flight.New[string, int](flight.WithBreaker(1, time.Hour), flight.WithTTL(time.Hour))
		defer openTTL.Close()
		openStale := flight.New[string, int](flight.WithBreaker(1, time.Hour), flight.WithTTL(time.Nanosecond),
			flight.WithStaleIfError(time.Hour))
		defer openStale.Close()
		for _, k := range retainKeyNames {
			hit.Do(ctx, k, ok)
			open.Do(ctx, k, fail)
			openTTL.Do(ctx, k, fail)
			openStale.Do(ctx, k, ok)
			time.Sleep(time.Microsecond) // past the TTL: stale
			if _, _, err := openStale.Do(ctx, k, fail); err != nil {
				b.Fatal(err)
			}
		}
		interleave(b, []string{"hit", "open", "open-ttl", "open-stale"}, []func(int){
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
		})
	})
}
