package flight_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// soakFor is how long TestSoak runs. Without the flag it runs a few seconds,
// so that `go test -race ./...` stays quick; CI's soak job passes -soak=1m:
//
//	go test -race -run '^TestSoak$' -soak=1m -timeout 10m .
var soakFor = flag.Duration("soak", 0, "how long TestSoak runs (default a few seconds)")

const soakDefault = 3 * time.Second

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// heapBytes is the live heap (objects) now, read without stopping the world.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// settledHeap is the live heap after a full collection.
func settledHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// soakKeys: a few hot keys that every caller piles on, and many cold ones
// that mostly get a flight of their own.
const (
	soakHot  = 16
	soakCold = 50_000
	soakKeys = soakHot + soakCold
)

// soakState is what the soak's callers and fns share; every field is safe
// for concurrent use.
type soakState struct {
	running    []atomic.Int32 // per key: executions running now
	overlaps   atomic.Int64
	crossKey   atomic.Int64
	executions atomic.Uint64
	calls      atomic.Uint64
	answers    atomic.Uint64
	kinds      [nSoakKinds]atomic.Uint64
	twice      atomic.Int64 // DoChan channels that gave a second result
	unexpected atomic.Int64
	firstErr   atomic.Pointer[string]
}

const (
	skValue = iota
	skError
	skPanic
	skGoexit
	skCanceled
	skDeadline
	skClosed
	nSoakKinds
)

var soakKindNames = [nSoakKinds]string{"value", "error", "panic", "goexit", "canceled", "timeout", "closed"}

func (s *soakState) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.firstErr.CompareAndSwap(nil, &msg)
}

// fn returns the function a caller of key passes: its value names the key,
// and it panics, calls Goexit, fails, sleeps past the deadline, honours its
// ctx or just works, by the draw of mode.
func (s *soakState) fn(key int, mode int, work time.Duration) flight.Func[string] {
	return func(ctx context.Context) (string, error) {
		if s.running[key].Add(1) != 1 {
			s.overlaps.Add(1)
		}
		defer s.running[key].Add(-1)
		s.executions.Add(1)
		val := strconv.Itoa(key) + ":v"
		switch mode {
		case 0:
			panic(val)
		case 1:
			runtime.Goexit()
		case 2:
			return val, errBoom
		case 3: // outlives WithTimeout, ignoring its ctx
			time.Sleep(25 * time.Millisecond)
		case 4, 5: // honours its ctx
			t := time.NewTimer(work)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-t.C:
			}
		default:
			if work > 0 {
				time.Sleep(work)
			}
		}
		return val, nil
	}
}

// check classifies one answer of a caller of key and checks its value.
func (s *soakState) check(key int, v string, err error) {
	s.answers.Add(1)
	var pe *flight.PanicError
	kind := -1
	switch {
	case err == nil:
		kind = skValue
	case errors.As(err, &pe):
		kind = skPanic
		v, _ = pe.Value.(string)
	case errors.Is(err, errBoom):
		kind = skError
	case errors.Is(err, flight.ErrGoexit):
		kind = skGoexit
	case errors.Is(err, flight.ErrClosed):
		kind = skClosed
	case errors.Is(err, context.Canceled):
		kind = skCanceled
	case errors.Is(err, context.DeadlineExceeded):
		kind = skDeadline
	default:
		s.unexpected.Add(1)
		s.fail("caller of key %d: unexpected error %v", key, err)
		return
	}
	s.kinds[kind].Add(1)
	if kind == skValue || kind == skError || kind == skPanic {
		if k, _, _ := strings.Cut(v, ":"); k != strconv.Itoa(key) {
			s.crossKey.Add(1)
			s.fail("caller of key %d got %q: another key's value", key, v)
		}
	}
}

// TestSoak runs thousands of callers over hot and cold keys, with random
// cancellation, WithTimeout, Forget, panics, Goexit and errors, for -soak
// (a few seconds by default), in epochs: each epoch runs a fresh coordinator
// under load and closes it at a random moment while calls keep arriving.
//
// Checked continuously: every caller gets exactly one answer (a DoChan
// channel never a second one), no value crosses keys, executions of one key
// never overlap, the gauges stay within bounds. After each epoch (quiescence):
// the gauges are 0, Flights equals the executions fns saw, the live heap is
// back near its start, and goleak finds no goroutine left.
func TestSoak(t *testing.T) {
	d := *soakFor
	if d == 0 {
		d = soakDefault
	}
	callers := 2000
	st := &soakState{running: make([]atomic.Int32, soakKeys)}

	baseHeap := settledHeap()
	var peakWaiters, peakInFlight, peakKeys int
	var peakHeap uint64
	var epochs int
	var flights, joins, timeouts, abandoned, forgotten uint64
	var maxEpochHeapDelta int64
	var firstEpochHeap, lastEpochHeap uint64 // settled, after the epoch's Close
	start := time.Now()
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 1))
	t.Logf("soak: %v, %d caller goroutines per epoch, %d hot + %d cold keys, seed %d", d, callers, soakHot, soakCold, start.UnixNano())

	for epoch := 0; time.Since(start) < d; epoch++ {
		epochs++
		left := d - time.Since(start)
		length := min(left, time.Duration(300+rng.IntN(1200))*time.Millisecond)
		closeAt := time.Duration(float64(length) * (0.3 + 0.7*rng.Float64()))
		c := flight.New[int, string](flight.WithTimeout(time.Duration(5+rng.IntN(20)) * time.Millisecond))

		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				soakCaller(c, st, rand.New(rand.NewPCG(uint64(epoch), uint64(i))), stop)
			}()
		}

		// Sample the gauges while the load runs.
		sampleDone := make(chan struct{})
		var sampleErr atomic.Pointer[string]
		go func() {
			defer close(sampleDone)
			tk := time.NewTicker(2 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
				s := c.Stats()
				// Each field is exact but a Stats is no atomic snapshot
				// (InFlight may be read after a flight started, Keys
				// before its key was added), so only per-field bounds.
				if s.Waiters < 0 || s.InFlight < 0 || s.Keys < 0 {
					msg := fmt.Sprintf("gauges out of bounds: %+v", s)
					sampleErr.CompareAndSwap(nil, &msg)
				}
				peakWaiters = max(peakWaiters, s.Waiters)
				peakInFlight = max(peakInFlight, s.InFlight)
				peakKeys = max(peakKeys, s.Keys)
				peakHeap = max(peakHeap, heapBytes())
			}
		}()

		time.Sleep(closeAt) // the load runs; Close lands at a random moment of it
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("epoch %d: Close: %v", epoch, err)
			}
		case <-time.After(hang):
			dumpGoroutines(t)
			t.Fatalf("epoch %d: Close hangs; Stats %+v", epoch, c.Stats())
		}
		// Calls keep arriving after Close for a moment (they get ErrClosed).
		time.Sleep(min(length-closeAt, 20*time.Millisecond))
		close(stop)
		wait.Done(t, &wg, hang, fmt.Sprintf("epoch %d: callers to return", epoch))
		<-sampleDone
		if p := sampleErr.Load(); p != nil {
			t.Fatalf("epoch %d: %s", epoch, *p)
		}
		if p := st.firstErr.Load(); p != nil {
			t.Fatalf("epoch %d: %s", epoch, *p)
		}

		s := c.Stats()
		if s.Keys != 0 || s.InFlight != 0 || s.Waiters != 0 {
			t.Fatalf("epoch %d: gauges after Close: %+v", epoch, s)
		}
		flights += s.Flights
		joins += s.Joins
		timeouts += s.Timeouts
		abandoned += s.Abandoned
		forgotten += s.Forgotten
		if flights != st.executions.Load() {
			t.Fatalf("epoch %d: Stats count %d executions in all, the fns saw %d", epoch, flights, st.executions.Load())
		}
		if got, want := st.answers.Load(), st.calls.Load(); got != want {
			t.Fatalf("epoch %d: %d calls, %d answers", epoch, want, got)
		}
		goleak.VerifyNone(t)
		h := settledHeap()
		maxEpochHeapDelta = max(maxEpochHeapDelta, int64(h)-int64(baseHeap))
		if epoch == 0 {
			firstEpochHeap = h
		}
		lastEpochHeap = h
	}

	if n := st.overlaps.Load(); n != 0 {
		t.Fatalf("executions of one key overlapped %d times", n)
	}
	if n := st.crossKey.Load() + st.twice.Load() + st.unexpected.Load(); n != 0 {
		t.Fatalf("cross-key values, second results or unexpected errors: %d", n)
	}
	endHeap := settledHeap()
	kinds := make([]string, 0, nSoakKinds)
	for i, n := range soakKindNames {
		kinds = append(kinds, fmt.Sprintf("%s=%d", n, st.kinds[i].Load()))
	}
	t.Logf("soak: %v in %d epochs (race=%v): calls=%d answers=%d executions=%d joins=%d timeouts=%d abandoned=%d forgotten=%d",
		time.Since(start).Round(time.Millisecond), epochs, raceEnabled(), st.calls.Load(), st.answers.Load(), st.executions.Load(), joins, timeouts, abandoned, forgotten)
	t.Logf("soak: answers by kind: %s", strings.Join(kinds, " "))
	t.Logf("soak: peak waiters=%d peak in-flight=%d peak keys=%d; heap: live at start %.1f MiB, peak of heap objects %.1f MiB, live after the first epoch %.1f MiB, after the last %.1f MiB, worst after an epoch %+.1f MiB, at the end %.1f MiB",
		peakWaiters, peakInFlight, peakKeys, mib(baseHeap), mib(peakHeap), mib(firstEpochHeap), mib(lastEpochHeap), float64(maxEpochHeapDelta)/(1<<20), mib(endHeap))
	// "Near its start": the coordinators, their flights and the callers are
	// gone; what may remain is runtime caches and the test's own state.
	const slack = 8 << 20
	if endHeap > baseHeap+slack {
		t.Fatalf("live heap after the soak %.1f MiB, at the start %.1f MiB: more than %d MiB kept", mib(endHeap), mib(baseHeap), slack>>20)
	}
	// And no growth from epoch to epoch: whatever the first epoch left
	// (runtime and actor-system caches) is not added to by the next ones.
	const growth = 2 << 20
	if lastEpochHeap > firstEpochHeap+growth {
		t.Fatalf("live heap grew from %.1f MiB after the first epoch to %.1f MiB after the last (%d epochs)", mib(firstEpochHeap), mib(lastEpochHeap), epochs)
	}
}

// dumpGoroutines writes every goroutine's stack to the test log's directory
// (for a hang) and logs where.
func dumpGoroutines(t testing.TB) {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	f, err := os.CreateTemp("", "flight-hang-*.txt")
	if err != nil {
		t.Logf("goroutine dump: %v", err)
		return
	}
	defer f.Close()
	f.Write(buf)
	t.Logf("goroutine dump: %s", f.Name())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// soakCaller calls until stop, then returns; each call gets one answer,
// which it checks.
func soakCaller(c *flight.Coordinator[int, string], st *soakState, rng *rand.Rand, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		key := rng.IntN(soakHot)
		if rng.IntN(4) == 0 {
			key = soakHot + rng.IntN(soakCold)
		}
		mode := rng.IntN(40)
		work := time.Duration(rng.IntN(2000)) * time.Microsecond
		fn := st.fn(key, mode, work)

		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		switch rng.IntN(8) {
		case 0: // leaves after a random time
			ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
		case 1: // cancelled by hand at a random moment
			ctx, cancel = context.WithCancel(ctx)
			time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
		}
		if rng.IntN(50) == 0 {
			c.Forget(key)
		}
		st.calls.Add(1)
		var err error
		if rng.IntN(2) == 0 {
			var v string
			v, _, err = c.Do(ctx, key, fn)
			st.check(key, v, err)
		} else {
			ch := c.DoChan(ctx, key, fn)
			select {
			case r := <-ch:
				err = r.Err
				st.check(key, r.Val, r.Err)
			case <-time.After(hang):
				st.fail("a DoChan caller of key %d was never answered", key)
				cancel()
				return
			}
			select {
			case r := <-ch:
				st.twice.Add(1)
				st.fail("a DoChan channel of key %d gave a second result %+v", key, r)
			default:
			}
		}
		cancel()
		if errors.Is(err, flight.ErrClosed) {
			// Refused at once: a caller retrying in a tight loop would take
			// the processors from everything else (2,000 of them starve the
			// goroutine draining a shard for seconds). Other callers still
			// arrive, each with its first call after Close.
			<-stop
			return
		}
	}
}
