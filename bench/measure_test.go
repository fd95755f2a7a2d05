package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// keyTable returns n distinct keys "k0" … "k<n-1>", made once so that no
// benchmark pays for formatting or allocating a key per call.
func keyTable(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	return keys
}

// spin busy-waits for d on the calling goroutine. The Zipf workload's fn
// uses it instead of time.Sleep, whose granularity (≈ 1 ms under load) is far
// coarser than the 20 µs it needs; a spinning fn also keeps its CPU busy, as
// a real computation or a fast backend call would.
func spin(d time.Duration) {
	start := time.Now()
	for time.Since(start) < d {
	}
}

// zipfKeys returns n samples of key indices in [0, keys) drawn from a Zipf
// distribution with exponent s (rank 0 the most frequent), from a fixed seed
// so that every implementation sees the same sequence.
func zipfKeys(n, keys int, s float64, seed uint64) []int {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), s, 1, uint64(keys-1))
	out := make([]int, n)
	for i := range out {
		out[i] = int(z.Uint64())
	}
	return out
}

// joinProbe tells whether every caller of a stampede has joined the flight,
// from outside the implementation: a caller has joined when its goroutine is
// parked (its innermost frame is runtime.gopark) under the caller function
// (callerFrame), and not parked on a mutex on its way in (a frame of
// sync.Mutex or sync.RWMutex, or internal/sync's, or the runtime's
// semacquire for them). It reads a goroutine profile, which stops
// the world for about a millisecond per 10,000 goroutines, so callers of it
// check a cheaper condition first.
type joinProbe struct {
	callerFrame string             // suffix of the caller function's name
	names       map[uintptr]string // function names by PC, cached
	recs        []runtime.StackRecord
}

func newJoinProbe(callerFrame string) *joinProbe {
	return &joinProbe{callerFrame: callerFrame, names: make(map[uintptr]string)}
}

func (p *joinProbe) name(pc uintptr) string {
	n, ok := p.names[pc]
	if !ok {
		if f := runtime.FuncForPC(pc - 1); f != nil {
			n = f.Name()
		}
		p.names[pc] = n
	}
	return n
}

// joined returns how many goroutines run the caller function and are parked
// in the implementation's wait, plus one if the calling goroutine itself
// runs the caller function (the leader of an implementation that runs fn on
// the caller's goroutine is not parked, but has joined).
func (p *joinProbe) joined() int {
	count := 0
	p.scan(func(g goroutine) {
		switch {
		case !g.isCaller || g.inMutex:
		case g.self, g.parked:
			count++
		}
	})
	return count
}

// goroutine is what joinProbe.scan tells of one goroutine.
type goroutine struct {
	isCaller bool // a frame's name ends in callerFrame
	inMutex  bool // a frame is in sync.Mutex or sync.RWMutex
	parked   bool // the innermost frame is runtime.gopark
	self     bool // the goroutine calling scan
}

// scan reads a goroutine profile and calls f for each goroutine.
func (p *joinProbe) scan(f func(goroutine)) {
	n, ok := runtime.GoroutineProfile(p.recs)
	for !ok {
		p.recs = make([]runtime.StackRecord, n+n/4+16)
		n, ok = runtime.GoroutineProfile(p.recs)
	}
	for i := range p.recs[:n] {
		stk := p.recs[i].Stack()
		if len(stk) == 0 {
			continue
		}
		// GoroutineProfile puts the calling goroutine first.
		g := goroutine{self: i == 0, parked: p.name(stk[0]) == "runtime.gopark"}
		for _, pc := range stk {
			name := p.name(pc)
			if strings.HasSuffix(name, p.callerFrame) {
				g.isCaller = true
			}
			// sync.(*Mutex), internal/sync.(*Mutex), the RWMutex, and
			// the runtime's semacquire for them (not for a WaitGroup).
			if strings.Contains(name, "sync.(*Mutex).") || strings.Contains(name, "sync.(*RWMutex).") ||
				strings.Contains(name, "SemacquireMutex") || strings.Contains(name, "SemacquireRWMutex") {
				g.inMutex = true
			}
		}
		f(g)
	}
}

// settleGoroutines waits, up to limit, until runtime.NumGoroutine is at most
// want, and returns the last reading. It polls every 100 µs.
func settleGoroutines(want int, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// stableGoroutines waits until the goroutine count has not changed for 20 ms
// (at most 2 s) and returns it: the baseline before a measurement, once the
// goroutines of whatever ran before (workers still lingering) are gone.
func stableGoroutines() int {
	last, since := runtime.NumGoroutine(), time.Now()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		n := runtime.NumGoroutine()
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= 20*time.Millisecond {
			break
		}
	}
	return last
}

// heapAfterGC runs two garbage collections and returns the live heap bytes
// and the bytes of goroutine stacks in use.
func heapAfterGC() (heap, stacks uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

// errs collects the first error of many goroutines.
type errs struct {
	mu    sync.Mutex
	first error
}

func (e *errs) set(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.first == nil {
		e.first = fmt.Errorf(format, args...)
	}
}

func (e *errs) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first
}
