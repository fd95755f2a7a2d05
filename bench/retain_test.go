package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/actorflight/flight"
)

// Retained results (WithTTL): the hit path against otter v2's GetIfPresent
// of a present key, on the same keys (1,024 string keys, each goroutine
// walking them in turn); a hit against a miss that joins a running flight;
// and distinct keys with WithTTL set but every call a miss, against no TTL.

const retainKeys = 1024

var retainKeyNames = func() []string {
	ks := make([]string, retainKeys)
	for i := range ks {
		ks[i] = "user:" + strconv.Itoa(i)
	}
	return ks
}()

func BenchmarkRetainHit(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.Run("flight", func(b *testing.B) {
		c := flight.New[string, int](flight.WithTTL(time.Hour))
		defer c.Close()
		for _, k := range retainKeyNames {
			if _, _, err := c.Do(ctx, k, fn); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, shared, _ := c.Do(ctx, retainKeyNames[i&(retainKeys-1)], fn); !shared {
					panic("a miss in the hit benchmark")
				}
				i++
			}
		})
		b.StopTimer()
		if st := c.Stats(); st.Flights != retainKeys {
			b.Fatalf("%d flights for %d keys: hits missed", st.Flights, retainKeys)
		}
	})
	b.Run("otter", func(b *testing.B) {
		c := otter.Must(&otter.Options[string, int]{MaximumSize: 100_000, ExpiryCalculator: otter.ExpiryWriting[string, int](time.Hour)})
		defer c.StopAllGoroutines() // its expiry's cleanup goroutine, which TestMain's goleak would find
		for _, k := range retainKeyNames {
			c.Set(k, 1)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := c.GetIfPresent(retainKeyNames[i&(retainKeys-1)]); !ok {
					panic("a miss in the hit benchmark")
				}
				i++
			}
		})
	})
}

// BenchmarkRetainJoin is the miss a hit is measured against: a call that
// joins a flight still running on its key (the flight never ends during the
// benchmark; each caller leaves on its own ctx at once after joining, which
// costs a second message, so the figure is a join plus a leave).
func BenchmarkRetainJoin(b *testing.B) {
	c := flight.New[string, int](flight.WithTTL(time.Hour))
	defer c.Close()
	release := make(chan struct{})
	holder := c.DoChan(context.Background(), "k", func(context.Context) (int, error) { <-release; return 1, nil })
	for c.Stats().InFlight != 1 {
		time.Sleep(time.Millisecond)
	}
	fn := func(context.Context) (int, error) { return 2, nil }
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithCancel(context.Background())
			ch := c.DoChan(ctx, "k", fn)
			cancel()
			<-ch
		}
	})
	b.StopTimer()
	close(release)
	<-holder
}

// BenchmarkRetainMiss: distinct keys, every call a miss, with and without
// WithTTL (what retaining costs a flight that is never hit again; past
// DefaultMaxEntries each new result also evicts one). In the -full cases the
// coordinator already holds its bound of live results (100,000 with
// WithTTL, as many unretained keys run once without it) before the timer
// starts, so that every timed miss also evicts one, and Close is not timed:
// the steady state of a long-lived store, collections scanning it included.
func BenchmarkRetainMiss(b *testing.B) {
	benchFreshKeys(b, []optionCase{
		{"none", nil},
		{"ttl", []flight.Option{flight.WithTTL(time.Hour)}},
		{"ttl-small", []flight.Option{flight.WithTTL(time.Hour), flight.WithMaxEntries(1000)}},
		{"none-full", nil},
		{"ttl-full", []flight.Option{flight.WithTTL(time.Hour)}},
	})
}

// BenchmarkRetryNoFailure: distinct keys, fn never fails, with and without
// WithRetry (what a retry policy costs a flight that does not need it).
func BenchmarkRetryNoFailure(b *testing.B) {
	benchFreshKeys(b, []optionCase{
		{"none", nil},
		{"retry", []flight.Option{flight.WithRetry(3, flight.ExponentialBackoff(time.Millisecond, time.Second))}},
	})
}

// optionCase is a sub-benchmark: a coordinator made with opts.
type optionCase struct {
	name string
	opts []flight.Option
}

// benchFreshKeys runs each case on keys never asked for before (RunParallel,
// context.Background(), a no-op fn that succeeds): every call is an unshared
// flight that succeeds, or the benchmark panics.
func benchFreshKeys(b *testing.B, cases []optionCase) {
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := flight.New[uint64, int](tc.opts...)
			defer c.Close()
			ctx := context.Background()
			fn := func(context.Context) (int, error) { return 1, nil }
			var next atomic.Uint64
			full := strings.HasSuffix(tc.name, "-full")
			if full {
				for range flight.DefaultMaxEntries {
					if _, _, err := c.Do(ctx, next.Add(1), fn); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, shared, err := c.Do(ctx, next.Add(1), fn); shared || err != nil {
						panic(fmt.Sprintf("a fresh key was shared (%v) or failed (%v)", shared, err))
					}
				}
			})
			if full {
				b.StopTimer() // Close drops the prefilled results: not a miss's cost
			}
		})
	}
}
