package flight_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// overloadFull runs TestOverloadBurst at full size (1,000,000 calls over
// 100,000 keys) even under -race, where it is scaled down by default.
var overloadFull = flag.Bool("overload.full", false, "run TestOverloadBurst at full size under -race too")

// TestOverloadBurst: WithMaxWaiters and WithMaxInFlight under a burst of
// 1,000,000 calls over 100,000 keys (10 calls per key, round robin), from
// several goroutines, while every admitted fn is blocked. The bounds admit
// exactly maxInFlight flights of maxWaiters callers each; every other call
// must be refused with ErrOverloaded at once — before any fn returns, and for
// most of them before DoChan even returns (Do returns it synchronously) —
// and the admitted must all get their own key's answer once the fns are
// released. The coordinator's memory stays bounded by what it admitted, not
// by the burst: the test states the live heap at the peak, after the burst
// and after the flights end.
//
// Size: full (1M calls) without -race; under -race 1/10 of it (100,000 calls
// over 10,000 keys, same shape), unless -overload.full or -short (which
// also shrinks the run without -race).
func TestOverloadBurst(t *testing.T) {
	calls, keys := 1_000_000, 100_000
	if (raceEnabled() && !*overloadFull) || testing.Short() {
		calls, keys = 100_000, 10_000
	}
	overloadBurst(t, calls, keys, 1000, 4)
}

func overloadBurst(t *testing.T, calls, keys, maxInFlight, maxWaiters int) {
	c := newCInt(t, flight.WithMaxInFlight(maxInFlight), flight.WithMaxWaiters(maxWaiters))
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before Close, if the test stops half-way
	var started atomic.Int64
	fns := make([]flight.Func[int], keys) // made before the baseline: part of the caller, not the coordinator
	for k := range fns {
		fns[k] = func(context.Context) (int, error) {
			started.Add(1)
			<-gate
			return k*10 + 7, nil
		}
	}
	admittedWant := maxInFlight * maxWaiters
	refusedWant := calls - admittedWant

	base := settledHeap()
	var peak atomic.Uint64
	// Calls whose DoChan has returned but which no shard has handled yet:
	// while no fn returns, a handled call is a flight, a join or a refusal.
	var issued atomic.Int64
	var peakBacklog atomic.Int64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	stopSampling := sync.OnceFunc(func() { close(sampling); <-sampled })
	t.Cleanup(stopSampling) // also when the test fails half-way: no goroutine outlives it
	go func() {
		defer close(sampled)
		for {
			h := heapBytes()
			if h > peak.Load() {
				peak.Store(h)
			}
			st := c.Stats()
			if b := issued.Load() - int64(st.Flights+st.Joins+st.Overloaded); b > peakBacklog.Load() {
				peakBacklog.Store(b)
			}
			select {
			case <-sampling:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	// The burst.
	type pend struct {
		ch  <-chan flight.Result[int]
		key int
	}
	g := runtime.GOMAXPROCS(0) * 4
	pending := make([][]pend, g)
	var atOnce, wrong atomic.Int64
	var firstWrong atomic.Pointer[string]
	var wg sync.WaitGroup
	begin := time.Now()
	for w := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := w; i < calls; i += g {
				key := i % keys
				ch := c.DoChan(ctx, key, fns[key])
				issued.Add(1)
				select {
				case r := <-ch:
					if errors.Is(r.Err, flight.ErrOverloaded) {
						atOnce.Add(1)
						continue
					}
					wrong.Add(1)
					msg := fmt.Sprintf("call %d of key %d answered %+v during the burst", i, key, r)
					firstWrong.CompareAndSwap(nil, &msg)
				default:
					pending[w] = append(pending[w], pend{ch, key})
				}
			}
		}()
	}
	wait.Done(t, &wg, 10*hang, "the burst")
	burst := time.Since(begin)
	if p := firstWrong.Load(); p != nil {
		t.Fatal(*p)
	}
	// What the burst left held: the test's channels of the calls not
	// answered when DoChan returned, and the coordinator's state (and any
	// call messages still queued in a shard's mailbox).
	held, npending := settledHeap(), 0
	for _, ps := range pending {
		npending += len(ps)
	}

	// Every call is handled (a flight, a join or a refusal) while every fn
	// is still blocked.
	wait.Until(t, "every call handled", func() bool {
		st := c.Stats()
		return st.Flights+st.Joins+st.Overloaded == uint64(calls)
	})
	st := c.Stats()
	// The bounds admit at most maxInFlight flights of maxWaiters callers.
	// A shard whose mailbox fell more than its backlog bound behind the
	// burst (a loaded machine: the draining goroutine was descheduled) may
	// also have refused a call the bounds would have admitted; the bounds
	// are never exceeded, and every call is admitted or refused once.
	if st.InFlight != maxInFlight || st.Flights != uint64(maxInFlight) || st.Waiters > admittedWant ||
		uint64(st.Waiters) != st.Flights+st.Joins {
		t.Fatalf("after the burst: %+v; want %d flights in flight with at most %d waiters", st, maxInFlight, admittedWant)
	}
	backlogRefused := admittedWant - st.Waiters
	admittedWant = st.Waiters
	refusedWant = calls - admittedWant
	if st.Overloaded != uint64(refusedWant) {
		t.Fatalf("after the burst: %+v; want %d refused", st, refusedWant)
	}
	var admitted []pend
	late := 0
	for w, ps := range pending {
		pending[w] = nil // the refused ones' channels are garbage now
		for _, p := range ps {
			select {
			case r := <-p.ch:
				if !errors.Is(r.Err, flight.ErrOverloaded) {
					t.Fatalf("a pending call of key %d got %+v before any fn returned", p.key, r)
				}
				late++
			default:
				admitted = append(admitted, p)
			}
		}
	}
	if len(admitted) != admittedWant {
		t.Fatalf("%d callers admitted, want %d", len(admitted), admittedWant)
	}
	if got := atOnce.Load() + int64(late); got != int64(refusedWant) {
		t.Fatalf("%d refusals received, want %d", got, refusedWant)
	}

	// Do is refused synchronously while the coordinator is full.
	var slowest time.Duration
	for i := range 1000 {
		t0 := time.Now()
		_, _, err := c.Do(context.Background(), keys+i, func(context.Context) (int, error) { return 0, nil })
		slowest = max(slowest, time.Since(t0))
		if !errors.Is(err, flight.ErrOverloaded) {
			t.Fatalf("Do on a full coordinator: %v", err)
		}
	}
	afterBurst := settledHeap()
	if n := started.Load(); n != int64(maxInFlight) {
		t.Fatalf("%d fns started, want %d", n, maxInFlight)
	}

	// Release: the admitted all get their own key's value (shared, unless
	// the backlog bound refused the key's other callers).
	release()
	for _, p := range admitted {
		r := wait.Recv(t, p.ch)
		if r.Err != nil || r.Val != p.key*10+7 || (!r.Shared && backlogRefused == 0) {
			t.Fatalf("an admitted caller of key %d got %+v", p.key, r)
		}
	}
	wait.Until(t, "idle", idle(c))
	stopSampling()
	admitted, pending = nil, nil
	end := settledHeap()

	perCall := float64(int64(afterBurst)-int64(base)) / float64(admittedWant)
	t.Logf("burst of %d calls over %d keys (race=%v) in %v (%.0f ns/call); WithMaxInFlight(%d) WithMaxWaiters(%d): admitted %d, refused %d (%d of them before DoChan returned, %d just after; 1,000 Do refused in ≤ %v each)",
		calls, keys, raceEnabled(), burst.Round(time.Millisecond), float64(burst.Nanoseconds())/float64(calls),
		maxInFlight, maxWaiters, admittedWant, refusedWant, atOnce.Load(), late, slowest.Round(time.Microsecond))
	t.Logf("peak backlog of calls posted to a shard and not yet handled (sampled every 2 ms): %d; calls the bounds would have admitted, refused for a shard's backlog: %d",
		peakBacklog.Load(), backlogRefused)
	t.Logf("heap: before %.1f MiB; peak of heap objects during the burst (live and not yet swept) %.1f MiB; live at the end of the burst %.1f MiB with %d calls still pending in the test; live once the refusals are read %.1f MiB (%+.0f B per admitted caller); after the flights %.1f MiB",
		mib(base), mib(peak.Load()), mib(held), npending, mib(afterBurst), perCall, mib(end))

	// Bounded: what the coordinator holds after the burst is what it
	// admitted (4,000 callers, 1,000 flights: well under 16 MiB with the
	// test's own channels), nothing per refused call; and it is all given
	// back when the flights end.
	const bound = 16 << 20
	if afterBurst > base+bound {
		t.Fatalf("live heap after the burst grew by %.1f MiB (more than %d MiB) for %d admitted callers",
			mib(afterBurst-base), bound>>20, admittedWant)
	}
	if end > base+4<<20 {
		t.Fatalf("live heap after the flights ended: %.1f MiB, before the burst %.1f MiB", mib(end), mib(base))
	}
}

func newCInt(t testing.TB, opts ...flight.Option) *flight.Coordinator[int, int] {
	t.Helper()
	c := flight.New[int, int](opts...)
	t.Cleanup(func() { c.Close() })
	return c
}

// freshKeyAllocs returns the allocations of a Do of a key c has never seen,
// after warm such calls (the owners reused, maps and pools at their size).
func freshKeyAllocs(c *flight.Coordinator[int, int], warm int) float64 {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	next := 0
	for range warm {
		next++
		_, _, _ = c.Do(ctx, next, fn)
	}
	return testing.AllocsPerRun(2000, func() {
		next++
		if _, shared, _ := c.Do(ctx, next, fn); shared {
			panic("a fresh key was shared")
		}
	})
}
