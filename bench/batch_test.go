package bench

// Batcher benchmarks, side by side with vikstrous/dataloadgen and
// graph-gophers/dataloader (v7), on the workloads of dataloadgen's own
// benchmark: a loader per request (init), 100 loads of one key (cached),
// 100 loads of distinct keys (unique keys), 10 goroutines loading their own
// key 10 times each (10 concurrently), and 10,000 keys in one LoadMany (all
// in one request). Each peer is configured as there: batches of 100 keys,
// a 500 ns wait, and a fetch that fails every key ≡ 1 (mod 100) with its
// own error. Every operation makes a fresh loader, as a request would;
// flight's Batcher is closed at the end of it (the peers have nothing to
// close), with one shard, the right size for a loader per request.
//
// The peers cache every value (dataloadgen: and error) for the loader's
// life, by default; the Batcher keeps none unless given WithTTL (it joins a
// key only while it waits or runs), so the dataloadgen-nocache variant
// shows the peer without its cache, and flight-ttl the Batcher with
// WithTTL and WithErrorTTL of a minute (longer than a request), the same
// semantics as the caching peers.

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graph-gophers/dataloader/v7"
	"github.com/vikstrous/dataloadgen"

	"github.com/actorflight/flight"
)

type user struct{ ID, Name string }

var errNoUser = errors.New("user not found")

func userOf(key int) user { return user{ID: strconv.Itoa(key), Name: "user " + strconv.Itoa(key)} }

// loader is one request's loader, whatever the implementation.
type loader interface {
	thunk(ctx context.Context, key int) func() (user, error)
	loadMany(ctx context.Context, keys []int)
	close()
}

type loaderImpl struct {
	name string
	make func() loader
}

var loaders = []loaderImpl{
	{"flight", func() loader { return newFlightLoader() }},
	{"flight-ttl", func() loader { return newFlightLoader(flight.WithTTL(time.Minute), flight.WithErrorTTL(time.Minute)) }},
	{"dataloadgen", func() loader { return newDataloadgen() }},
	{"dataloadgen-nocache", func() loader { return newDataloadgen(dataloadgen.WithoutCache()) }},
	{"dataloader", newDataloader},
}

type flightLoader struct{ b *flight.Batcher[int, user] }

// batchFetches counts the calls of the workloads' fetch functions, for
// BenchmarkBatch's fetches/op.
var batchFetches atomic.Int64

func newFlightLoader(opts ...flight.Option) loader {
	return flightLoader{flight.NewBatcher(func(_ context.Context, keys []int) (map[int]user, error) {
		batchFetches.Add(1)
		users := make(map[int]user, len(keys))
		var failed flight.KeyErrors[int]
		for _, k := range keys {
			if k%100 == 1 {
				if failed == nil {
					failed = flight.KeyErrors[int]{}
				}
				failed[k] = errNoUser
			} else {
				users[k] = userOf(k)
			}
		}
		if failed != nil {
			return users, failed
		}
		return users, nil
	}, append([]flight.Option{flight.WithMaxBatch(100), flight.WithMaxWait(500 * time.Nanosecond), flight.WithShards(1)}, opts...)...)}
}

func (l flightLoader) thunk(ctx context.Context, key int) func() (user, error) {
	ch := l.b.LoadChan(ctx, key)
	return func() (user, error) { r := <-ch; return r.Val, r.Err }
}
func (l flightLoader) loadMany(ctx context.Context, keys []int) { _, _ = l.b.LoadMany(ctx, keys) }
func (l flightLoader) close()                                   { _ = l.b.Close() }

type dataloadgenLoader struct {
	l *dataloadgen.Loader[int, user]
}

func newDataloadgen(opts ...dataloadgen.Option) loader {
	opts = append([]dataloadgen.Option{dataloadgen.WithBatchCapacity(100), dataloadgen.WithWait(500 * time.Nanosecond)}, opts...)
	return dataloadgenLoader{dataloadgen.NewLoader(func(_ context.Context, keys []int) ([]user, []error) {
		batchFetches.Add(1)
		users := make([]user, len(keys))
		errs := make([]error, len(keys))
		for i, k := range keys {
			if k%100 == 1 {
				errs[i] = errNoUser
			} else {
				users[i] = userOf(k)
			}
		}
		return users, errs
	}, opts...)}
}

func (l dataloadgenLoader) thunk(ctx context.Context, key int) func() (user, error) {
	return l.l.LoadThunk(ctx, key)
}
func (l dataloadgenLoader) loadMany(ctx context.Context, keys []int) { _, _ = l.l.LoadAll(ctx, keys) }
func (l dataloadgenLoader) close()                                   {}

type dataloaderLoader struct{ l *dataloader.Loader[int, user] }

func newDataloader() loader {
	return dataloaderLoader{dataloader.NewBatchedLoader(func(_ context.Context, keys []int) []*dataloader.Result[user] {
		batchFetches.Add(1)
		out := make([]*dataloader.Result[user], len(keys))
		for i, k := range keys {
			if k%100 == 1 {
				out[i] = &dataloader.Result[user]{Error: errNoUser}
			} else {
				out[i] = &dataloader.Result[user]{Data: userOf(k)}
			}
		}
		return out
	}, dataloader.WithBatchCapacity[int, user](100), dataloader.WithWait[int, user](500*time.Nanosecond))}
}

func (l dataloaderLoader) thunk(ctx context.Context, key int) func() (user, error) {
	return l.l.Load(ctx, key)
}
func (l dataloaderLoader) loadMany(ctx context.Context, keys []int) { _, _ = l.l.LoadMany(ctx, keys)() }
func (l dataloaderLoader) close()                                   {}

// BenchmarkBatch runs the five workloads for every implementation. ns/op,
// allocs/op and fetches/op (calls of the fetch function) are per request
// (one loader's life).
func BenchmarkBatch(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, op func(loader)) {
		for _, im := range loaders {
			b.Run(im.name, func(b *testing.B) {
				b.ReportAllocs()
				batchFetches.Store(0)
				for b.Loop() {
					l := im.make()
					op(l)
					l.close()
				}
				b.ReportMetric(float64(batchFetches.Load())/float64(b.N), "fetches/op")
			})
		}
	}
	thunks := func(l loader, key func(i int) int) {
		var ts [100]func() (user, error)
		for i := range ts {
			ts[i] = l.thunk(ctx, key(i))
		}
		for _, t := range ts {
			_, _ = t()
		}
	}
	b.Run("init", func(b *testing.B) { run(b, func(loader) {}) })
	b.Run("cached", func(b *testing.B) { run(b, func(l loader) { thunks(l, func(int) int { return 1 }) }) })
	b.Run("unique-keys", func(b *testing.B) { run(b, func(l loader) { thunks(l, func(i int) int { return i }) }) })
	// dataloadgen's version loops b.N times inside each of b.N×10 requests,
	// so its ns/op grows with b.N; here each goroutine loads its key 10
	// times.
	b.Run("10-concurrently", func(b *testing.B) {
		run(b, func(l loader) {
			var wg sync.WaitGroup
			for i := range 10 {
				wg.Go(func() {
					for range 10 {
						_, _ = l.thunk(ctx, i)()
					}
				})
			}
			wg.Wait()
		})
	})
	keys := make([]int, 10000)
	for i := range keys {
		keys[i] = i
	}
	b.Run("all-in-one-request", func(b *testing.B) { run(b, func(l loader) { l.loadMany(ctx, keys) }) })
}

// The implementations answer alike: values for found keys, an error for
// the missing ones, under every workload.
func TestBatchLoadersAgree(t *testing.T) {
	ctx := context.Background()
	for _, im := range loaders {
		l := im.make()
		var ts []func() (user, error)
		for k := range 200 {
			ts = append(ts, l.thunk(ctx, k), l.thunk(ctx, k))
		}
		for i, th := range ts {
			k := i / 2
			u, err := th()
			if k%100 == 1 {
				if err == nil {
					t.Errorf("%s: key %d: no error", im.name, k)
				}
			} else if err != nil || u != userOf(k) {
				t.Errorf("%s: key %d: %v, %v", im.name, k, u, err)
			}
		}
		l.close()
	}
}

// BenchmarkBatchResolver is a resolver workload: one long-lived
// loader per implementation, parallel goroutines (GOMAXPROCS×32, 64 here)
// each running requests of 100 concurrent loads of random keys among
// 10,000, and a fetch that costs CPU per batch and per key. The peers run
// without their cache (WithoutCache; dataloader with a no-op cache), as a
// long-lived loader must, so all three have the same semantics. ns/op is
// per request; it also reports ns/load, fetches/load and the p99 request
// latency.
func BenchmarkBatchResolver(b *testing.B) {
	resolver(b, false, func(rng *rand.Rand) func() int { return func() int { return rng.IntN(10000) } })
}

// BenchmarkBatchResolverPerRequest is the resolver workload with a loader
// made for each request (and closed at its end), the DataLoader
// convention.
func BenchmarkBatchResolverPerRequest(b *testing.B) {
	resolver(b, true, func(rng *rand.Rand) func() int { return func() int { return rng.IntN(10000) } })
}

// BenchmarkBatchHotKeys is the resolver workload on a long-lived loader
// over 100 keys drawn with a Zipf skew (s = 1.1): most loads of a batch
// want a few hot keys.
func BenchmarkBatchHotKeys(b *testing.B) {
	resolver(b, false, func(rng *rand.Rand) func() int {
		z := rand.NewZipf(rng, 1.1, 1, 99)
		return func() int { return int(z.Uint64()) }
	})
}

// resolver runs the resolver workload: perRequest makes a loader for each
// request; keys makes each goroutine's key generator.
func resolver(b *testing.B, perRequest bool, keys func(*rand.Rand) func() int) {
	var fetches atomic.Int64
	work := func(n int) {
		x := 0
		for i := range 200 + 20*n { // per batch and per key
			x += i * i
		}
		sink.Add(int64(x & 1))
	}
	fetchMap := func(keys []int) map[int]user {
		fetches.Add(1)
		work(len(keys))
		m := make(map[int]user, len(keys))
		for _, k := range keys {
			m[k] = userOf(k)
		}
		return m
	}
	impls := []struct {
		name string
		make func() (func(ctx context.Context, key int) func() (user, error), func())
	}{
		{"flight", func() (func(ctx context.Context, key int) func() (user, error), func()) {
			l := flight.NewBatcher(func(_ context.Context, keys []int) (map[int]user, error) {
				return fetchMap(keys), nil
			}, flight.WithMaxBatch(100), flight.WithMaxWait(500*time.Nanosecond))
			return func(ctx context.Context, key int) func() (user, error) {
				ch := l.LoadChan(ctx, key)
				return func() (user, error) { r := <-ch; return r.Val, r.Err }
			}, func() { l.Close() }
		}},
		{"dataloadgen-nocache", func() (func(ctx context.Context, key int) func() (user, error), func()) {
			l := dataloadgen.NewLoader(func(_ context.Context, keys []int) ([]user, []error) {
				m := fetchMap(keys)
				out := make([]user, len(keys))
				for i, k := range keys {
					out[i] = m[k]
				}
				return out, nil
			}, dataloadgen.WithBatchCapacity(100), dataloadgen.WithWait(500*time.Nanosecond), dataloadgen.WithoutCache())
			return l.LoadThunk, func() {}
		}},
	}
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			var load func(ctx context.Context, key int) func() (user, error)
			if !perRequest {
				var done func()
				load, done = im.make()
				defer done()
			}
			fetches.Store(0)
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
				key := keys(rng)
				var mine []time.Duration
				var ts [100]func() (user, error)
				for pb.Next() {
					start := time.Now()
					load, done := load, func() {}
					if perRequest {
						load, done = im.make()
					}
					for i := range ts {
						ts[i] = load(context.Background(), key())
					}
					for _, t := range ts {
						_, _ = t()
					}
					done()
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			loads := float64(b.N) * 100
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/loads, "ns/load")
			b.ReportMetric(float64(fetches.Load())/loads, "fetches/load")
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

var sink atomic.Int64
