package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fa "github.com/actorflight/flight/actor"
	"github.com/actorflight/flight/internal/wait"
)

func noop(context.Context) (int, error) { return 1, nil }

// distinctKeys hands each goroutine of a parallel benchmark its own block of
// 1,024 keys from a table of 65,536, so no two goroutines share a key and
// every call starts a fresh flight; a key comes round again only after 1,023
// other calls of its goroutine, long after its flight ended. Callers
// reported as shared are counted (they would mean a collision).
const keysPerGoroutine = 1024

// BenchmarkDistinct is workload 1: distinct keys, a no-op fn, RunParallel
// (GOMAXPROCS goroutines), context.Background(). ns/op is the cost of one
// flight nobody shares.
func BenchmarkDistinct(b *testing.B) {
	keys := keyTable(64 * keysPerGoroutine)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) { benchDistinct(b, im, keys, false) })
	}
}

// BenchmarkDistinctCtx is BenchmarkDistinct with a cancellable context:
// each RunParallel goroutine makes one with context.WithCancel, as a
// server's handler has its request's, and passes it to every call (x/sync
// ignores it). ns/op is the cost of one flight nobody shares when its
// caller can leave on its ctx.
func BenchmarkDistinctCtx(b *testing.B) {
	keys := keyTable(64 * keysPerGoroutine)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) { benchDistinct(b, im, keys, true) })
	}
}

// benchDistinct runs the distinct-key workload; cancellable gives each
// goroutine a context.WithCancel context (made before its first call and
// cancelled after its last, so neither is in the loop).
func benchDistinct(b *testing.B, im impl, keys []string, cancellable bool) {
	g := im.new(noop)
	defer g.Close()
	var next, sharedCalls atomic.Int64
	var failed errs
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		if cancellable {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
		}
		base := int(next.Add(1)-1) * keysPerGoroutine
		for i := 0; pb.Next(); i++ {
			v, shared, err := g.Do(ctx, keys[(base+i%keysPerGoroutine)%len(keys)])
			if err != nil || v != 1 {
				failed.set("Do = %d, %v", v, err)
			}
			if shared {
				sharedCalls.Add(1)
			}
		}
	})
	b.StopTimer()
	if err := failed.err(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(sharedCalls.Load())/float64(b.N), "shared/op")
}

// BenchmarkCompat is BenchmarkDistinct for flight's compat/singleflight
// (named flight) against x/sync, through their common Do(key, fn) API:
// distinct keys, a no-op fn, RunParallel. Both run fn on the caller's
// goroutine.
func BenchmarkCompat(b *testing.B) {
	keys := keyTable(64 * keysPerGoroutine)
	fn := func() (any, error) { return 1, nil } // a small int in an any does not allocate
	for _, im := range compatImpls {
		b.Run(im.name, func(b *testing.B) {
			g := im.new()
			var next, sharedCalls atomic.Int64
			var failed errs
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				base := int(next.Add(1)-1) * keysPerGoroutine
				for i := 0; pb.Next(); i++ {
					v, err, shared := g.Do(keys[(base+i%keysPerGoroutine)%len(keys)], fn)
					if err != nil || v != 1 {
						failed.set("Do = %v, %v", v, err)
					}
					if shared {
						sharedCalls.Add(1)
					}
				}
			})
			b.StopTimer()
			if err := failed.err(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(sharedCalls.Load())/float64(b.N), "shared/op")
		})
	}
}

// BenchmarkDistinctSeq is BenchmarkDistinct on one goroutine: the plain
// per-flight cost without contention, the one to profile.
func BenchmarkDistinctSeq(b *testing.B) {
	keys := keyTable(keysPerGoroutine)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			g := im.new(noop)
			defer g.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v, shared, err := g.Do(context.Background(), keys[i%len(keys)])
				if err != nil || v != 1 || shared {
					b.Fatalf("Do = %d, %v, %v", v, shared, err)
				}
			}
			b.StopTimer()
		})
	}
}

// BenchmarkStampede is workload 2: n callers of one key. fn waits until
// every caller has joined its flight (see stampedeRound.fn), then returns;
// fanout-ns is the time from fn's return to the last caller's return, the
// median of the rounds (robust to a GC cycle landing in one fan-out);
// fanout-mean-ns is their mean. redone/op counts rounds that were voided
// because a caller missed the flight. ns/op is a whole round (starting n goroutines,
// waiting for them to join, the fan-out) and is not a figure of merit.
func BenchmarkStampede(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("callers=%d", n), func(b *testing.B) {
			for _, im := range impls {
				b.Run(im.name, func(b *testing.B) { benchStampede(b, im, n) })
			}
		})
	}
}

func benchStampede(b *testing.B, im impl, n int) {
	b.ReportAllocs()
	probe := newJoinProbe(".stampedeCaller")
	fanouts := make([]time.Duration, 0, b.N)
	retries := 0
	for i := 0; i < b.N; i++ {
		d, err := runStampede(im, n, probe)
		if err != nil {
			retries++
			if retries > 3+b.N/10 {
				b.Fatalf("round %d: %v (%d rounds redone)", i, err, retries)
			}
			i--
			continue
		}
		fanouts = append(fanouts, d)
	}
	b.StopTimer()
	slices.Sort(fanouts)
	var sum time.Duration
	for _, d := range fanouts {
		sum += d
	}
	b.ReportMetric(float64(fanouts[len(fanouts)/2].Nanoseconds()), "fanout-ns")
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(fanouts)), "fanout-mean-ns")
	b.ReportMetric(float64(retries)/float64(b.N), "redone/op")
}

// stampedeRound is one stampede: n callers of key "hot".
type stampedeRound struct {
	n       int
	g       group
	probe   *joinProbe
	base    time.Time       // the round's start; times below are since base
	t0      time.Duration   // when fn returned; written by fn before it returns
	ret     []time.Duration // ret[i]: when caller i's Do returned
	execs   atomic.Int64
	arrived atomic.Int64 // callers that are about to call Do
	wg      sync.WaitGroup
	failed  errs
}

// runStampede runs one round and returns its fan-out: the last caller's
// return minus fn's return. It returns an error, and the round does not
// count, if a caller did not join the one flight (fn ran more than once or
// a caller was not shared) or the join did not happen within 30 s.
func runStampede(im impl, n int, probe *joinProbe) (time.Duration, error) {
	s := &stampedeRound{n: n, probe: probe, ret: make([]time.Duration, n)}
	s.g = im.new(s.fn)
	defer s.g.Close()
	s.wg.Add(n)
	s.base = time.Now()
	for i := range n {
		go stampedeCaller(s, i)
	}
	s.wg.Wait()
	if err := s.failed.err(); err != nil {
		return 0, err
	}
	if e := s.execs.Load(); e != 1 {
		return 0, fmt.Errorf("fn ran %d times", e)
	}
	last := s.ret[0]
	for _, r := range s.ret[1:] {
		last = max(last, r)
	}
	return last - s.t0, nil
}

// fn is the stampede's flight function. Before returning it waits until all
// n callers have joined: for flight until Stats().Waiters == n, for the
// peers until all n callers are about to call Do; then, for every
// implementation, until the goroutine profile shows every caller parked in
// the implementation's wait (joinProbe). Only then is t0 taken, as the last
// thing before returning.
func (s *stampedeRound) fn(context.Context) (int, error) {
	if s.execs.Add(1) != 1 {
		return 1, nil // a late caller started a second flight: the round is void
	}
	cheap := func() bool { return s.arrived.Load() == int64(s.n) }
	if st, ok := s.g.(statser); ok {
		cheap = func() bool { return st.Stats().Waiters == s.n }
	}
	if !wait.For(30*time.Second, func() bool { return cheap() && s.probe.joined() >= s.n }) {
		s.failed.set("callers did not join within 30 s (%d arrived)", s.arrived.Load())
	}
	s.t0 = time.Since(s.base)
	return 1, nil
}

// stampedeCaller is one caller of a stampede. Its name is what joinProbe
// looks for in the goroutine profile: keep it a named, non-inlined function.
//
//go:noinline
func stampedeCaller(s *stampedeRound, i int) {
	defer s.wg.Done()
	s.arrived.Add(1)
	v, shared, err := s.g.Do(context.Background(), "hot")
	s.ret[i] = time.Since(s.base)
	if err != nil || v != 1 || !shared {
		s.failed.set("caller %d: Do = %d, shared %v, %v", i, v, shared, err)
	}
}

// BenchmarkStampedeWhole is the whole of a stampede of n callers of one
// key, timed: spawning the callers (from the benchmark's goroutine, one
// after the other), their joins, fn and the fan-out, until the last caller
// has returned. fn returns once every caller has reached Do: the caller
// that is the n-th to reach it closes a channel that fn waits on, just
// before its own call. No goroutine profile and no polling, unlike
// BenchmarkStampede, so ns/op is the cost of the round. A caller whose join
// lands after the flight ended starts a flight of its own (its fn returns
// at once); that costs what it costs, and execs/stampede (fn executions per
// round, mean) shows how often it happened. Making the group and closing
// it are outside the timer.
func BenchmarkStampedeWhole(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("callers=%d", n), func(b *testing.B) {
			for _, im := range impls {
				b.Run(im.name, func(b *testing.B) { benchStampedeWhole(b, im, n) })
			}
		})
	}
}

func benchStampedeWhole(b *testing.B, im impl, n int) {
	b.ReportAllocs()
	var execs int64
	for range b.N {
		b.StopTimer()
		w := &wholeRound{n: n, all: make(chan struct{})}
		w.g = im.new(w.fn)
		b.StartTimer()
		w.run()
		b.StopTimer()
		w.g.Close()
		if err := w.failed.err(); err != nil {
			b.Fatal(err)
		}
		execs += w.execs.Load()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(execs)/float64(b.N), "execs/stampede")
}

// wholeRound is one round of BenchmarkStampedeWhole.
type wholeRound struct {
	n       int
	g       group
	arrived atomic.Int64  // callers that have reached Do
	all     chan struct{} // closed when all n have
	execs   atomic.Int64
	wg      sync.WaitGroup
	failed  errs
}

// run spawns the n callers and waits until every one has returned.
func (w *wholeRound) run() {
	w.wg.Add(w.n)
	for range w.n {
		go w.caller()
	}
	w.wg.Wait()
}

func (w *wholeRound) caller() {
	defer w.wg.Done()
	if w.arrived.Add(1) == int64(w.n) {
		close(w.all)
	}
	if v, _, err := w.g.Do(context.Background(), "hot"); err != nil || v != 1 {
		w.failed.set("Do = %d, %v", v, err)
	}
}

func (w *wholeRound) fn(context.Context) (int, error) {
	w.execs.Add(1)
	<-w.all
	return 1, nil
}

// shareHold is how long BenchmarkStampedeShare's fn runs at least: the
// window within which callers that reach Do must share one execution.
const shareHold = 2 * time.Millisecond

// BenchmarkStampedeShare counts fn executions when n callers reach Do
// together. Each round starts n callers and parks them on a start barrier
// (a channel), then releases them all at once (close); each notes when it
// reaches Do. fn runs for at least shareHold (2 ms) and, beyond that, until
// the last caller has reached Do, polling every 20 µs: so every caller
// reaches Do while the first execution is still running, and an
// implementation that shares flights among callers that reach Do within
// 2 ms of each other runs fn exactly once per round. A caller whose join is
// handled after the flight ended starts another one. execs/stampede is the
// mean of fn executions per round (target 1); arrive-spread-ns is the
// median over the rounds of the time between the first and the last caller
// reaching Do (it should be below 2 ms for the target's wording to apply;
// fn waits for the last caller either way). ns/op is a whole round and not
// a figure of merit.
func BenchmarkStampedeShare(b *testing.B) {
	const n = 1000
	b.Run(fmt.Sprintf("callers=%d", n), func(b *testing.B) {
		for _, im := range impls {
			b.Run(im.name, func(b *testing.B) {
				b.ReportAllocs()
				var execs int64
				spreads := make([]time.Duration, 0, b.N)
				for range b.N {
					e, spread, err := runShare(im, n)
					if err != nil {
						b.Fatal(err)
					}
					execs += e
					spreads = append(spreads, spread)
				}
				b.StopTimer()
				slices.Sort(spreads)
				b.ReportMetric(float64(execs)/float64(b.N), "execs/stampede")
				b.ReportMetric(float64(spreads[len(spreads)/2].Nanoseconds()), "arrive-spread-ns")
			})
		}
	})
}

// shareRound is one round of BenchmarkStampedeShare.
type shareRound struct {
	n       int
	g       group
	release chan struct{} // the start barrier: closed to release the callers
	base    time.Time     // set before release is closed
	arrive  []time.Duration
	arrived atomic.Int64
	execs   atomic.Int64
	ready   sync.WaitGroup // every caller's goroutine is running
	done    sync.WaitGroup
	failed  errs
}

// runShare runs one round and returns fn's executions and the time between
// the first and the last caller reaching Do.
func runShare(im impl, n int) (execs int64, spread time.Duration, err error) {
	s := &shareRound{n: n, release: make(chan struct{}), arrive: make([]time.Duration, n)}
	s.g = im.new(s.fn)
	defer s.g.Close()
	s.ready.Add(n)
	s.done.Add(n)
	for i := range n {
		go s.caller(i)
	}
	s.ready.Wait()
	s.base = time.Now()
	close(s.release)
	s.done.Wait()
	if err := s.failed.err(); err != nil {
		return 0, 0, err
	}
	return s.execs.Load(), slices.Max(s.arrive) - slices.Min(s.arrive), nil
}

func (s *shareRound) caller(i int) {
	defer s.done.Done()
	s.ready.Done()
	<-s.release
	s.arrive[i] = time.Since(s.base)
	s.arrived.Add(1)
	if v, _, err := s.g.Do(context.Background(), "hot"); err != nil || v != 1 {
		s.failed.set("caller %d: Do = %d, %v", i, v, err)
	}
}

func (s *shareRound) fn(context.Context) (int, error) {
	s.execs.Add(1)
	start := time.Now()
	for time.Since(start) < shareHold || s.arrived.Load() < int64(s.n) {
		time.Sleep(20 * time.Microsecond)
	}
	return 1, nil
}

// BenchmarkZipf is workload 3: 64 goroutines call keys drawn from a Zipf
// distribution (s = 1.1) over 10,000 keys; fn busy-waits 20 µs. ns/op is
// wall time per call (b.N calls shared by the 64 goroutines); execs/call is
// fn executions per call (lower: more deduplication).
func BenchmarkZipf(b *testing.B) {
	const keys, workers = 10000, 64
	kt := keyTable(keys)
	seq := zipfKeys(1<<16, keys, 1.1, 1)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			var execs atomic.Int64
			g := im.new(func(context.Context) (int, error) {
				execs.Add(1)
				spin(20 * time.Microsecond)
				return 1, nil
			})
			defer g.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed errs
			b.ReportAllocs()
			b.ResetTimer()
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if v, _, err := g.Do(context.Background(), kt[seq[i%int64(len(seq))]]); err != nil || v != 1 {
							failed.set("Do = %d, %v", v, err)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if err := failed.err(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(execs.Load())/float64(b.N), "execs/call")
		})
	}
}

// inFlightKeys is workload 4's key count.
const inFlightKeys = 100000

var warmGoroutines sync.Once

// BenchmarkInFlight is workload 4: 100,000 keys in flight at once, each
// with one caller whose fn blocks until released. Once every fn runs, after
// two GCs: heap-B/key is the live heap delta from before the callers
// started, per key; stack-B/key the same for goroutine stacks (the caller's
// own stack included); goroutines/key is the goroutine count delta per key
// minus 1 (the caller). ns/op is a whole round and not a figure of merit.
func BenchmarkInFlight(b *testing.B) {
	keys := keyTable(inFlightKeys)
	// The runtime keeps the descriptors of exited goroutines for reuse and
	// never frees them: start (and end) once as many goroutines as the
	// hungriest implementation needs (a caller and a fn goroutine per key,
	// plus a margin), so that no implementation pays for the first
	// allocation of descriptors that the others then reuse.
	warmGoroutines.Do(func() { warmUp(2*inFlightKeys + inFlightKeys/10) })
	b.Run(fmt.Sprintf("keys=%d", inFlightKeys), func(b *testing.B) {
		for _, im := range impls {
			b.Run(im.name, func(b *testing.B) {
				var heap, stack, gs float64
				for range b.N {
					h, s, g, err := inFlightRound(im, keys)
					if err != nil {
						b.Fatal(err)
					}
					heap, stack, gs = heap+h, stack+s, gs+g
				}
				n := float64(b.N)
				b.ReportMetric(heap/n, "heap-B/key")
				b.ReportMetric(stack/n, "stack-B/key")
				b.ReportMetric(gs/n, "goroutines/key")
			})
		}
	})
}

// warmUp starts n goroutines that block, then releases them.
func warmUp(n int) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		go func() { defer wg.Done(); <-release }()
	}
	close(release)
	wg.Wait()
}

// inFlightRound puts one flight per key in flight, measures, releases.
func inFlightRound(im impl, keys []string) (heapPerKey, stackPerKey, goroutinesPerKey float64, err error) {
	release := make(chan struct{})
	var running atomic.Int64
	g := im.new(func(context.Context) (int, error) {
		running.Add(1)
		<-release
		return 1, nil
	})
	defer g.Close()
	var wg sync.WaitGroup
	var failed errs
	n := len(keys)
	g0 := stableGoroutines()
	h0, s0 := heapAfterGC()
	wg.Add(n)
	for i := range n {
		go func() {
			defer wg.Done()
			if v, shared, err := g.Do(context.Background(), keys[i]); err != nil || v != 1 || shared {
				failed.set("Do(%s) = %d, shared %v, %v", keys[i], v, shared, err)
			}
		}()
	}
	ok := wait.For(60*time.Second, func() bool { return running.Load() == int64(n) })
	h1, s1 := heapAfterGC()
	g1 := runtime.NumGoroutine()
	close(release)
	wg.Wait()
	if !ok {
		return 0, 0, 0, fmt.Errorf("only %d of %d flights running after 60 s", running.Load(), n)
	}
	if err := failed.err(); err != nil {
		return 0, 0, 0, err
	}
	fn := float64(n)
	return (float64(h1) - float64(h0)) / fn, (float64(s1) - float64(s0)) / fn, float64(g1-g0)/fn - 1, nil
}

// BenchmarkIdle is workload 5: after a load (64 goroutines, 20,000 calls
// over 1,000 Zipf keys, fn busy-waits 5 µs), once every caller has returned,
// flight's Stats gauges are 0 (peers: at once) and twice the worker linger
// has passed, idle-goroutines is the goroutine count above the baseline
// taken before the load (polled for up to 100 ms more), and live-keys the
// keys the implementation still holds state for. settle-us is the time from
// the last caller's return until the goroutine count was back at the
// baseline (polled every 100 µs; it includes the load's own 64 goroutines
// exiting, and flight's worker linger). All three are maxima over the
// rounds.
func BenchmarkIdle(b *testing.B) {
	const keys, workers, calls = 1000, 64, 20000
	kt := keyTable(keys)
	seq := zipfKeys(calls, keys, 1.1, 2)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			var extra, live int
			var settle time.Duration
			for range b.N {
				g := im.new(func(context.Context) (int, error) { spin(5 * time.Microsecond); return 1, nil })
				base := stableGoroutines()
				var next atomic.Int64
				var wg sync.WaitGroup
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := next.Add(1) - 1; i < calls; i = next.Add(1) - 1 {
							g.Do(context.Background(), kt[seq[i]])
						}
					}()
				}
				wg.Wait()
				end := time.Now()
				if n := settleGoroutines(base, time.Second); n <= base {
					settle = max(settle, time.Since(end))
				}
				if st, ok := g.(statser); ok {
					if !wait.For(5*time.Second, func() bool {
						s := st.Stats()
						return s.Keys == 0 && s.InFlight == 0 && s.Waiters == 0
					}) {
						b.Fatalf("gauges not 0 after 5 s: %+v", st.Stats())
					}
				}
				time.Sleep(2 * fa.Linger)
				n := settleGoroutines(base, 100*time.Millisecond)
				extra = max(extra, n-base)
				live = max(live, g.LiveKeys())
				g.Close()
			}
			b.ReportMetric(float64(extra), "idle-goroutines")
			b.ReportMetric(float64(live), "live-keys")
			b.ReportMetric(float64(settle.Microseconds()), "settle-us")
		})
	}
}
