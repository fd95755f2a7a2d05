package flight_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/actorflight/flight"
)

// TestRetainRetryProperties checks invariants of retained results and
// retries that the exact model (TestModel) leaves out, because it keeps
// WithMaxEntries, WithRetry and retained results apart: here random
// sequences of calls (Do and DoChan, over more keys than WithMaxEntries, so
// that results are evicted), callers leaving, fns returning a value or an
// error or panicking, Forget, time passing (expiry, refresh-ahead hits,
// retry waits) and Close run against one coordinator with all of them at
// once (and, drawn, WithStaleIfError and WithBreaker: a stale value is a
// retained result for the bound and for memory, and an open breaker
// refuses calls), and after every step:
//
//   - Stats.Entries ≤ WithMaxEntries;
//   - the live heap beyond the start is bounded by the retained results
//     (each fn's value is 256 KiB, so a result held after its eviction,
//     expiry, replacement or Forget shows), not by the keys seen (checked
//     at the end of each sequence);
//   - no key is wedged: a probe forgets a key, lets every running fn of it
//     that callers wait for end (or makes every caller of it leave), and
//     then a call for the key must run its own fn with no time passing
//     (not wait for a forgotten refresh nobody waits for, nor for a
//     forgotten flight's backoff);
//   - every caller is answered exactly once, and by Close at the latest.
//
// Every fn honours its ctx (a fn that ignores it keeps its key busy by
// design: executions never overlap). It runs in a testing/synctest bubble,
// as TestModel does, so time is the bubble's fake clock.
func TestRetainRetryProperties(t *testing.T) {
	flight.New[int, int]().Close() // the shared actor system, outside any bubble
	rapid.Check(t, func(rt *rapid.T) {
		cfg := propConfig{
			shards:     rapid.SampledFrom([]int{1, 3, 8}).Draw(rt, "shards"),
			maxEntries: rapid.IntRange(1, 4).Draw(rt, "maxEntries"),
			keys:       rapid.IntRange(2, 12).Draw(rt, "keys"),
			ttl:        rapid.IntRange(2, 8).Draw(rt, "ttlTicks"),
			errTTL:     rapid.SampledFrom([]int{0, 2}).Draw(rt, "errTTLTicks"),
			attempts:   rapid.IntRange(1, 3).Draw(rt, "attempts"),
			backoff:    rapid.SampledFrom([]int{1, 3, 20}).Draw(rt, "backoffTicks"),
		}
		if rapid.Bool().Draw(rt, "refreshAhead") {
			cfg.refreshAhead = rapid.IntRange(1, cfg.ttl-1).Draw(rt, "refreshAheadTicks")
		}
		cfg.stale = rapid.SampledFrom([]int{0, 3, 30}).Draw(rt, "staleTicks")
		if cfg.failures = rapid.IntRange(0, 2).Draw(rt, "breakerFailures"); cfg.failures > 0 {
			cfg.cooldown = rapid.SampledFrom([]int{2, 10}).Draw(rt, "cooldownTicks")
		}
		rapid.SyncTest(rt, func(rt *rapid.T) { runProperties(rt, cfg) })
	})
	t.Logf("over all runs: %d calls answered with a stale value, %d refused by an open breaker, %d hits",
		propStale.Load(), propRejected.Load(), propHits.Load())
}

var propStale, propRejected, propHits atomic.Uint64

type propConfig struct {
	shards, maxEntries, keys  int
	ttl, errTTL, refreshAhead int // ticks
	attempts, backoff         int // WithRetry(attempts, backoff ticks)
	stale                     int // WithStaleIfError in ticks; 0: none
	failures, cooldown        int // WithBreaker(failures, cooldown ticks); 0: none
}

const propValue = 256 << 10

// How a property test's fn behaves (drawn 0–10).
const (
	fnQuick  = 5 // 5–8: returns a value at once
	fnPanics = 9
	fnFails  = 10 // returns an error at once (stale answers, breakers)
)

type pCaller struct {
	id, key int
	stop    context.CancelFunc
	ch      <-chan flight.Result[[]byte] // DoChan; nil for Do

	mu      sync.Mutex
	answers []string
}

func (c *pCaller) record(kind string) {
	c.mu.Lock()
	c.answers = append(c.answers, kind)
	c.mu.Unlock()
}

type pRun struct {
	key     int
	release chan bool // true: return an error
}

type pHarness struct {
	rt      *rapid.T
	cfg     propConfig
	c       *flight.Coordinator[int, []byte]
	calls   []*pCaller
	base    uint64
	closed  bool
	mu      sync.Mutex // guards running
	running map[*pRun]bool
}

func runProperties(rt *rapid.T, cfg propConfig) {
	opts := []flight.Option{
		flight.WithShards(cfg.shards), flight.WithMaxEntries(cfg.maxEntries),
		flight.WithTTL(time.Duration(cfg.ttl) * tick),
		flight.WithRetry(cfg.attempts, func(int) time.Duration { return time.Duration(cfg.backoff) * tick }),
	}
	if cfg.errTTL > 0 {
		opts = append(opts, flight.WithErrorTTL(time.Duration(cfg.errTTL)*tick))
	}
	if cfg.refreshAhead > 0 {
		opts = append(opts, flight.WithRefreshAhead(time.Duration(cfg.refreshAhead)*tick))
	}
	if cfg.stale > 0 {
		opts = append(opts, flight.WithStaleIfError(time.Duration(cfg.stale)*tick))
	}
	if cfg.failures > 0 {
		opts = append(opts, flight.WithBreaker(cfg.failures, time.Duration(cfg.cooldown)*tick))
	}
	h := &pHarness{rt: rt, cfg: cfg, c: flight.New[int, []byte](opts...), running: map[*pRun]bool{}}
	rt.Cleanup(func() {
		h.c.Close()
		for _, c := range h.calls {
			c.stop()
		}
	})
	h.base = liveHeap()
	rt.Repeat(map[string]func(*rapid.T){
		"":             func(*rapid.T) { h.check() },
		"Do":           func(rt *rapid.T) { h.call(rt, false) },
		"DoChan":       func(rt *rapid.T) { h.call(rt, true) },
		"Leave":        h.leave,
		"Release":      h.release,
		"Forget":       func(rt *rapid.T) { h.c.Forget(rapid.IntRange(0, cfg.keys-1).Draw(rt, "forgetKey")); h.step() },
		"Wait":         func(rt *rapid.T) { h.wait(rapid.IntRange(1, cfg.ttl+cfg.backoff).Draw(rt, "ticks")) },
		"ProbeRelease": func(rt *rapid.T) { h.probe(rt, false) },
		"ProbeLeave":   func(rt *rapid.T) { h.probe(rt, true) },
		"Close": func(rt *rapid.T) {
			if rapid.IntRange(0, 20).Draw(rt, "closeNow") != 20 {
				rt.Skip("Close is drawn rarely")
			}
			h.close()
		},
	})
	h.check()
	h.checkHeap()
	h.close()
	h.check()
	for _, c := range h.calls {
		if n := h.answered(c); n != 1 {
			rt.Fatalf("caller %d (key %d) answered %d times after Close: %v", c.id, c.key, n, c.answers)
		}
	}
}

// step settles the bubble, moves the clock one tick and settles it again.
func (h *pHarness) step() {
	synctest.Wait()
	time.Sleep(tick)
	synctest.Wait()
}

func (h *pHarness) wait(ticks int) {
	for range ticks {
		h.step()
		h.check()
	}
}

// fn blocks until released (with a value or an error), or until its ctx
// ends; some fns return a value or panic at once.
func (h *pHarness) fn(key int, how int) flight.Func[[]byte] {
	return func(ctx context.Context) ([]byte, error) {
		switch {
		case how >= fnQuick && how < fnPanics:
			return make([]byte, propValue), nil
		case how == fnPanics:
			panic("boom")
		case how == fnFails:
			return nil, errBoom
		}
		r := &pRun{key: key, release: make(chan bool, 1)}
		h.mu.Lock()
		h.running[r] = true
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			delete(h.running, r)
			h.mu.Unlock()
		}()
		select {
		case fail := <-r.release:
			if fail {
				return nil, errBoom
			}
			return make([]byte, propValue), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (h *pHarness) call(rt *rapid.T, chanAPI bool) {
	key := rapid.IntRange(0, h.cfg.keys-1).Draw(rt, "key")
	how := rapid.IntRange(0, fnFails).Draw(rt, "fn") // 10: fails at once, 9: panics, 5–8: returns at once, else blocks
	ctx, stop := context.WithCancel(context.Background())
	c := &pCaller{id: len(h.calls) + 1, key: key, stop: stop}
	h.calls = append(h.calls, c)
	if chanAPI {
		c.ch = h.c.DoChan(ctx, key, h.fn(key, how))
	} else {
		go func() {
			_, _, err := h.c.Do(ctx, key, h.fn(key, how))
			c.record(propKind(err))
		}()
	}
	h.step()
}

func propKind(err error) string {
	var pe *flight.PanicError
	switch {
	case err == nil:
		return "value"
	case errors.As(err, &pe):
		return "panic"
	case errors.Is(err, errBoom):
		return "error"
	case errors.Is(err, flight.ErrClosed):
		return "closed"
	case errors.Is(err, flight.ErrOpen):
		return "open"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "unexpected: " + err.Error()
}

func (h *pHarness) leave(rt *rapid.T) {
	var waiting []*pCaller
	for _, c := range h.calls {
		if h.answered(c) == 0 {
			waiting = append(waiting, c)
		}
	}
	if len(waiting) == 0 {
		rt.Skip("no caller waits")
	}
	rapid.SampledFrom(waiting).Draw(rt, "leave").stop()
	h.step()
}

func (h *pHarness) runs(key int) []*pRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rs []*pRun
	for r := range h.running {
		if key < 0 || r.key == key {
			rs = append(rs, r)
		}
	}
	return rs
}

func (h *pHarness) release(rt *rapid.T) {
	rs := h.runs(-1)
	if len(rs) == 0 {
		rt.Skip("no fn runs")
	}
	r := rapid.SampledFrom(rs).Draw(rt, "release")
	r.release <- rapid.Bool().Draw(rt, "fail")
	h.step()
}

// probe checks that key is not wedged: it either makes every caller of the
// key leave or lets every running fn of the key end (each may start the
// next flight that waited for it, whose fn it lets end too), forgets the
// key, and then a call for the key must run its own fn at once. What may
// still hold the key then is a background refresh (nobody waits for it) or
// a flight waiting between two attempts: neither may delay the call.
func (h *pHarness) probe(rt *rapid.T, leave bool) {
	if h.closed {
		rt.Skip("closed")
	}
	key := rapid.IntRange(0, h.cfg.keys-1).Draw(rt, "probeKey")
	if leave {
		for _, c := range h.calls {
			if c.key == key {
				c.stop()
			}
		}
	} else {
		for rs := h.runs(key); len(rs) > 0; rs = h.runs(key) {
			for _, r := range rs {
				r.release <- rapid.Bool().Draw(rt, "probeFail")
			}
			synctest.Wait()
		}
	}
	synctest.Wait()
	h.c.Forget(key) // after the releases, whose results may be retained
	ran := false
	ctx, cancel := context.WithTimeout(context.Background(), tick)
	defer cancel()
	_, _, err := h.c.Do(ctx, key, func(context.Context) ([]byte, error) { ran = true; return nil, nil })
	if err != nil || !ran {
		rt.Fatalf("key %d is wedged: a call after Forget got %v (its fn ran: %v); %+v", key, err, ran, h.c.Stats())
	}
	h.c.Forget(key) // the probe's own result is not part of the sequence
	h.step()
}

func (h *pHarness) close() {
	if h.closed {
		return
	}
	h.closed = true
	st := h.c.Stats()
	propStale.Add(st.Stale)
	propRejected.Add(st.Rejected)
	propHits.Add(st.Hits)
	done := make(chan struct{})
	go func() { h.c.Close(); close(done) }()
	synctest.Wait() // every running fn's ctx is cancelled, and each honours it
	select {
	case <-done:
	default:
		h.rt.Fatalf("Close did not return though every fn honours its ctx")
	}
	synctest.Wait()
}

func (h *pHarness) answered(c *pCaller) int {
	if c.ch != nil {
		select {
		case r := <-c.ch:
			c.record(propKind(r.Err))
		default:
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.answers)
}

func (h *pHarness) check() {
	rt := h.rt
	st := h.c.Stats()
	if st.Entries > h.cfg.maxEntries {
		rt.Fatalf("Entries %d > WithMaxEntries(%d)", st.Entries, h.cfg.maxEntries)
	}
	for _, c := range h.calls {
		h.answered(c)
		// Under the caller's lock: a Do caller woken by a timer (the fake
		// clock's) records its answer with no other order to this read.
		c.mu.Lock()
		answers := slices.Clone(c.answers)
		c.mu.Unlock()
		if n := len(answers); n > 1 {
			rt.Fatalf("caller %d answered %d times: %v", c.id, n, answers)
		}
		for _, a := range answers {
			if a != "value" && a != "error" && a != "panic" && a != "closed" && a != "canceled" && a != "open" {
				rt.Fatalf("caller %d: %s", c.id, a)
			}
		}
	}
}

// checkHeap: the values alive are the retained ones, at most one per fn
// that is returning, and slack for the bubble's own garbage. (A collection
// per step would make the test ten times slower: it runs after each
// sequence, before the final Close.)
func (h *pHarness) checkHeap() {
	rt := h.rt
	st := h.c.Stats()
	if grown := int64(liveHeap()) - int64(h.base); grown > int64(h.cfg.maxEntries+2)*propValue+1<<20 {
		rt.Fatalf("the heap grew by %d KiB with %d results retained (WithMaxEntries(%d), values of %d KiB): %+v",
			grown>>10, st.Entries, h.cfg.maxEntries, propValue>>10, st)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
