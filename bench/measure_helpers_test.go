package bench

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/actorflight/flight/internal/wait"
)

// The benchmarks and these tests leave no goroutine behind (flight's idle
// workers exit after their linger; goleak retries for a while).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Each implementation runs a stampede whose every caller joins the one
// flight, and the probe sees them all.
func TestStampedeRoundJoinsEveryCaller(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			probe := newJoinProbe(".stampedeCaller")
			for range 3 {
				d, err := runStampede(im, 200, probe)
				if err != nil {
					t.Fatal(err)
				}
				if d < 0 || d > 10*time.Second {
					t.Fatalf("fan-out %v", d)
				}
			}
		})
	}
}

// The probe counts exactly the caller goroutines parked in a flight: none
// before they start, all n once they wait (the leader of x/sync is parked in
// fn here, so it counts too), none after they return.
func TestJoinProbeCountsParkedCallers(t *testing.T) {
	probe := newJoinProbe(".stampedeCaller")
	if n := probe.joined(); n != 0 {
		t.Fatalf("joined() = %d with no caller", n)
	}
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			const n = 50
			release := make(chan struct{})
			s := &stampedeRound{n: n, ret: make([]time.Duration, n), base: time.Now()}
			s.g = im.new(func(context.Context) (int, error) { s.execs.Add(1); <-release; return 1, nil })
			defer s.g.Close()
			s.wg.Add(n)
			for i := range n {
				go stampedeCaller(s, i)
			}
			if !wait.For(10*time.Second, func() bool { return probe.joined() == n }) {
				t.Fatalf("joined() = %d, want %d", probe.joined(), n)
			}
			// It stays at n: nothing else is counted.
			for range 5 {
				if got := probe.joined(); got != n {
					t.Fatalf("joined() = %d, want %d", got, n)
				}
			}
			close(release)
			s.wg.Wait()
			if err := s.failed.err(); err != nil {
				t.Fatal(err)
			}
			if e := s.execs.Load(); e != 1 {
				t.Fatalf("fn ran %d times", e)
			}
			if !wait.For(10*time.Second, func() bool { return probe.joined() == 0 }) {
				t.Fatalf("joined() = %d after the callers returned", probe.joined())
			}
		})
	}
}

// A goroutine blocked on a mutex inside the caller function is not counted
// as joined: it has not reached the implementation's wait.
func TestJoinProbeSkipsMutexWaiters(t *testing.T) {
	var mu sync.Mutex
	mu.Lock()
	probe := newJoinProbe(".blockedOnMutex")
	done := make(chan struct{})
	go blockedOnMutex(&mu, done)
	// Wait until the profile shows it parked on the mutex.
	parkedOnMutex := func() bool {
		found := false
		probe.scan(func(g goroutine) { found = found || (g.isCaller && g.inMutex && g.parked) })
		return found
	}
	if !wait.For(10*time.Second, parkedOnMutex) {
		t.Fatal("the goroutine never parked on the mutex")
	}
	if n := probe.joined(); n != 0 {
		t.Fatalf("joined() = %d, want 0 for a goroutine parked on a mutex", n)
	}
	mu.Unlock()
	<-done
}

//go:noinline
func blockedOnMutex(mu *sync.Mutex, done chan struct{}) {
	mu.Lock()
	mu.Unlock()
	close(done)
}

// LiveKeys sees a running flight's key and its removal, for every
// implementation (for the peers it reads their unexported map).
func TestLiveKeys(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			release, started := make(chan struct{}), make(chan struct{})
			g := im.new(func(context.Context) (int, error) { close(started); <-release; return 1, nil })
			defer g.Close()
			done := make(chan struct{})
			go func() { defer close(done); g.Do(context.Background(), "k") }()
			<-started
			if !wait.For(5*time.Second, func() bool { return g.LiveKeys() == 1 }) {
				t.Fatalf("LiveKeys() = %d during a flight, want 1", g.LiveKeys())
			}
			close(release)
			<-done
			if !wait.For(5*time.Second, func() bool { return g.LiveKeys() == 0 }) {
				t.Fatalf("LiveKeys() = %d after the flight, want 0", g.LiveKeys())
			}
		})
	}
}

// mapLen panics on a field that is not a map, rather than measuring 0.
func TestMapLenPanicsOnMissingField(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	mapLen(&struct{ m int }{}, "m")
}

// The Zipf sequence is reproducible, in range, and skewed towards rank 0.
func TestZipfKeys(t *testing.T) {
	a, b := zipfKeys(10000, 1000, 1.1, 7), zipfKeys(10000, 1000, 1.1, 7)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different sequences")
	}
	counts := make([]int, 1000)
	for _, k := range a {
		if k < 0 || k >= 1000 {
			t.Fatalf("key %d out of range", k)
		}
		counts[k]++
	}
	if counts[0] < counts[1] || counts[1] < counts[10] || counts[0] < 500 {
		t.Fatalf("not Zipf-like: counts[0,1,10] = %d, %d, %d", counts[0], counts[1], counts[10])
	}
}

// spin takes at least d, and not wildly more on an idle machine.
func TestSpin(t *testing.T) {
	start := time.Now()
	spin(200 * time.Microsecond)
	if d := time.Since(start); d < 200*time.Microsecond || d > 200*time.Millisecond {
		t.Fatalf("spin(200µs) took %v", d)
	}
}

// A small in-flight round: x/sync runs fn on the caller's goroutine (no
// extra goroutine), resenje starts one per flight; every implementation
// holds some heap per key while its flights run.
func TestInFlightRound(t *testing.T) {
	keys := keyTable(2000)
	want := map[string]float64{"xsync": 0, "resenje": 1}
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			heap, stack, gs, err := inFlightRound(im, keys)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("heap %.0f B/key, stack %.0f B/key, %.3f goroutines/key", heap, stack, gs)
			if heap <= 0 || stack <= 0 {
				t.Errorf("heap %.0f, stack %.0f B/key: want > 0", heap, stack)
			}
			if w, ok := want[im.name]; ok && (gs < w-0.05 || gs > w+0.05) {
				t.Errorf("goroutines/key = %.3f, want %.0f", gs, w)
			}
			if gs < -0.05 || gs > 2 {
				t.Errorf("goroutines/key = %.3f out of range", gs)
			}
		})
	}
	runtime.GC()
}

// A whole-stampede round returns once every caller has returned with the
// value, for each implementation; fn ran at least once and at most once
// per caller.
func TestWholeRound(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			for range 3 {
				w := &wholeRound{n: 200, all: make(chan struct{})}
				w.g = im.new(w.fn)
				w.run()
				w.g.Close()
				if err := w.failed.err(); err != nil {
					t.Fatal(err)
				}
				if e := w.execs.Load(); e < 1 || e > 200 {
					t.Fatalf("fn ran %d times", e)
				}
			}
		})
	}
}

// A share round releases every caller, each gets the value, and the
// arrival spread is measured.
func TestShareRound(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			start := time.Now()
			execs, spread, err := runShare(im, 200)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < shareHold {
				t.Errorf("round took %v, less than fn's hold %v", d, shareHold)
			}
			if execs < 1 || execs > 200 || spread < 0 || spread > 10*time.Second {
				t.Fatalf("execs %d, spread %v", execs, spread)
			}
			t.Logf("execs %d, spread %v", execs, spread)
		})
	}
}

// The share round's fn runs for at least shareHold and does not return
// before the last caller has reached Do, however long that takes.
func TestShareFnWaitsForLastCaller(t *testing.T) {
	s := &shareRound{n: 2}
	s.arrived.Store(1)
	done := make(chan time.Duration)
	start := time.Now()
	go func() {
		s.fn(context.Background())
		done <- time.Since(start)
	}()
	// Past the hold, with a caller still missing, fn is still running.
	if !wait.For(10*time.Second, func() bool { return time.Since(start) > 2*shareHold }) {
		t.Fatal("unreachable")
	}
	select {
	case d := <-done:
		t.Fatalf("fn returned after %v with a caller missing", d)
	default:
	}
	s.arrived.Add(1)
	select {
	case d := <-done:
		if d < 2*shareHold {
			t.Fatalf("fn returned after %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fn did not return once every caller arrived")
	}
	if s.execs.Load() != 1 {
		t.Fatalf("execs = %d", s.execs.Load())
	}
}
