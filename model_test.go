package flight_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/actorflight/flight"
)

// TestModel checks the coordinator against a plain sequential model of its
// rules (as the godoc states them, and docs/design.md: executions of
// one key never overlap, WithTimeout counts from flight creation, Close
// answers waiters with ErrClosed). A generated sequence of operations — Do,
// DoChan, cancelling a caller, Forget, fn returning a value / an error /
// panicking / calling Goexit, time passing (WithTimeout), Close, calls with a
// nil fn or a ctx already done, calls after Close — runs against both, and
// after every step the two must agree on:
//
//   - every caller's answer: its kind (value, fn's error, *PanicError with
//     the panic value, ErrGoexit, Canceled, DeadlineExceeded, ErrClosed,
//     ErrOverloaded, ErrNilFunc), its value and Shared, and that it came once;
//   - every field of Stats, gauges and counters;
//   - which executions run: for each key, whose fn (the caller that created
//     the flight, read from fn's ctx values) and the how-manieth of the key,
//     whether its ctx is cancelled and why, and never two of one key at once.
//
// Why rapid rather than native fuzzing: the input is a sequence of
// operations whose valid choices depend on the state (only a running fn can
// be released, only a waiting caller cancelled), and on a divergence we want
// the shortest sequence that shows it. rapid draws each step from the model's
// state and shrinks a failing run to a minimal sequence, printed step by
// step; go test's native fuzzing mutates flat byte strings, shrinks bytes
// rather than operations, and in a plain `go test` run only replays its seed
// corpus.
//
// Determinism: each run executes in a testing/synctest bubble (through
// rapid.SyncTest). After each step synctest.Wait returns only when every
// goroutine of the bubble — callers, workers running fn, ctx watches,
// timers' callbacks — is durably blocked, so the shards have handled every
// message the step caused; this is the "wait for the coordinator to reach the
// expected state" of a step, exact and without polling. The bubble's clock is
// fake and only moves when the test sleeps: every step advances it by one
// tick, so flights created by different steps have distinct deadlines, and
// WithTimeout fires at exactly the tick the model predicts, at no real cost.
//
// Size: three families of configurations (plain, WithTimeout, WithMaxWaiters
// and WithMaxInFlight), each -rapid.checks (default 100) runs of about
// -rapid.steps (default 30) steps; 1–2 s under -race on 2 cores.
func TestModel(t *testing.T) {
	// The shared actor system must be made outside any bubble: it outlives
	// them all.
	warm := flight.New[int, string]()
	if _, _, err := warm.Do(context.Background(), 0, func(context.Context) (string, error) { return "", nil }); err != nil {
		t.Fatal(err)
	}
	warm.Close()

	// Three families of configurations, each its own rapid.Check, so that
	// every family gets -rapid.checks runs and a failure names its family.
	families := map[string]func(*rapid.T) modelConfig{
		"plain": func(rt *rapid.T) modelConfig {
			return modelConfig{keys: rapid.IntRange(1, 3).Draw(rt, "keys"), shards: rapid.SampledFrom([]int{1, 3}).Draw(rt, "shards")}
		},
		"timeout": func(rt *rapid.T) modelConfig {
			return modelConfig{
				keys:    rapid.IntRange(1, 3).Draw(rt, "keys"),
				shards:  rapid.SampledFrom([]int{1, 3}).Draw(rt, "shards"),
				timeout: rapid.SampledFrom([]int{2, 3, 5, 8}).Draw(rt, "timeoutTicks"),
			}
		},
		"bounded": func(rt *rapid.T) modelConfig {
			return modelConfig{
				keys:        rapid.IntRange(1, 3).Draw(rt, "keys"),
				shards:      rapid.SampledFrom([]int{1, 3}).Draw(rt, "shards"),
				maxWaiters:  rapid.SampledFrom([]int{0, 1, 2, 3}).Draw(rt, "maxWaiters"),
				maxInFlight: rapid.SampledFrom([]int{1, 2, 0}).Draw(rt, "maxInFlight"),
				timeout:     rapid.SampledFrom([]int{0, 4}).Draw(rt, "timeoutTicks"),
			}
		},
		// No WithTimeout here: a deadline and a backoff timer firing at the
		// same fake instant would race, and the model could not say which
		// the coordinator saw first (TestRetryTimeoutDuringBackoff covers
		// them together).
		// Retained results: TTL, error TTL, refresh-ahead, Forget. No
		// WithTimeout or WithRetry (their timers could fire at the instant
		// a result expires), no WithMaxInFlight (a refresh may be refused
		// by it), and no eviction (TestRetainRetryProperties checks
		// WithMaxEntries with retries and refreshes together, and
		// TestMaxEntriesEvictsByClock the CLOCK order).
		"retain": func(rt *rapid.T) modelConfig {
			ttl := rapid.IntRange(2, 6).Draw(rt, "ttlTicks")
			cfg := modelConfig{
				keys:   rapid.IntRange(1, 3).Draw(rt, "keys"),
				shards: rapid.SampledFrom([]int{1, 3}).Draw(rt, "shards"),
				ttl:    ttl,
				errTTL: rapid.SampledFrom([]int{0, 1, 3}).Draw(rt, "errTTLTicks"),
			}
			if rapid.Bool().Draw(rt, "refreshAhead") {
				cfg.refreshAhead = rapid.IntRange(1, ttl-1).Draw(rt, "refreshAheadTicks")
			}
			// WithStaleIfError and WithBreaker (model_resil_test.go).
			cfg.stale = rapid.SampledFrom([]int{0, 2, 5}).Draw(rt, "staleTicks")
			if cfg.failures = rapid.IntRange(0, 2).Draw(rt, "breakerFailures"); cfg.failures > 0 {
				cfg.cooldown = rapid.IntRange(1, 4).Draw(rt, "breakerCooldownTicks")
			}
			return cfg
		},
		// The retain family with a stale window and a breaker always on,
		// short TTLs and few keys, so that most runs serve stale values
		// and take breakers through open, half-open, trial and reset.
		"resilience": func(rt *rapid.T) modelConfig {
			failures := rapid.SampledFrom([]int{2, 1, 2}).Draw(rt, "breakerFailures")
			return modelConfig{
				keys:     1,
				shards:   rapid.SampledFrom([]int{1, 3}).Draw(rt, "shards"),
				ttl:      rapid.IntRange(1, 2).Draw(rt, "ttlTicks"),
				errTTL:   rapid.SampledFrom([]int{0, 2}).Draw(rt, "errTTLTicks"),
				stale:    rapid.IntRange(3, 8).Draw(rt, "staleTicks"),
				failures: failures,
				cooldown: rapid.IntRange(1, 4).Draw(rt, "breakerCooldownTicks"),
			}
		},
		"retry": func(rt *rapid.T) modelConfig {
			return modelConfig{
				keys:     rapid.IntRange(1, 3).Draw(rt, "keys"),
				shards:   rapid.SampledFrom([]int{1, 3}).Draw(rt, "shards"),
				attempts: rapid.IntRange(2, 3).Draw(rt, "attempts"),
				backoff:  rapid.IntRange(1, 3).Draw(rt, "backoffTicks"),
			}
		},
	}
	for _, name := range []string{"plain", "timeout", "bounded", "retry", "retain", "resilience"} {
		t.Run(name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				cfg := families[name](rt)
				rapid.SyncTest(rt, func(rt *rapid.T) { runModel(rt, cfg) })
			})
		})
	}
	t.Logf("answers checked against the model (all runs, shrinking included): %v; retries: %d; hits: %d; refreshes: %d; expired: %d; breakers gone half-open: %d",
		modelSeen, modelRetries.Load(), modelHits.Load(), modelRefreshes.Load(), modelExpired.Load(), modelHalfOpen.Load())
}

// tick is one step of the bubble's fake clock.
const tick = time.Millisecond

type modelConfig struct {
	keys, shards, maxWaiters, maxInFlight int
	timeout                               int // in ticks; 0: no WithTimeout
	attempts, backoff                     int // WithRetry(attempts, backoff ticks); 0: no retry
	ttl, errTTL, refreshAhead             int // WithTTL, WithErrorTTL, WithRefreshAhead in ticks; 0: none
	stale                                 int // WithStaleIfError in ticks; 0: none
	failures, cooldown                    int // WithBreaker(failures, cooldown ticks); 0: none
}

// Answer kinds, shared by the model and the classification of real answers.
const (
	kValue      = "value"
	kError      = "error" // fn's own error (errBoom)
	kPanic      = "panic"
	kGoexit     = "goexit"
	kCanceled   = "canceled"
	kDeadline   = "deadline"
	kClosed     = "closed"
	kOverloaded = "overloaded"
	kNilFunc    = "nilfunc"
	kExited     = "goroutine ended" // Do ran fn on its own goroutine, and fn called runtime.Goexit
)

type answer struct {
	kind   string
	val    string // the value, or the panic value for kPanic
	shared bool
}

func (a answer) String() string { return fmt.Sprintf("%s(%q, shared=%v)", a.kind, a.val, a.shared) }

// outcome is how the test ends a running fn.
type outcome int

const (
	outValue outcome = iota
	outError
	outPanic
	outGoexit
)

var outcomeNames = []string{"value", "error", "panic", "goexit"}

var errBoom = errors.New("boom")

type callerIDKey struct{}

// ---- the model ----

type mCaller struct {
	id          int
	key         int
	chanAPI     bool // DoChan rather than Do
	cancellable bool
	honour      bool // its fn returns ctx.Err() as soon as its ctx is done

	flight   *mFlight
	answered bool
	ans      answer
	deferred *answer // the answer of a caller running its flight's fn, given when fn ends
}

type mFlight struct {
	key      int
	creator  *mCaller
	waiters  []*mCaller // attached and not answered
	joined   int
	seq      int // the how-manieth execution of its key, once started
	ctxErr   string
	deadline int // tick; -1: none

	started, finished, published, abandoned, timedOut bool
	// byCaller: the first attempt of fn runs on the creator's goroutine (a
	// Do caller whose ctx can never be done, no WithTimeout): the creator
	// sees its answer only when that attempt ends, and runtime.Goexit in it
	// ends the creator's goroutine.
	byCaller bool
	// refresh: a background refresh (WithRefreshAhead), which no caller
	// started; creator is the caller whose hit triggered it.
	refresh bool
	// WithRetry: attempts started; between two, inBackoff until the tick
	// backoffUntil, when it is due: its next attempt starts as soon as no
	// other fn of its key runs. A flight in backoff is not its key's exec
	// and not counted in InFlight.
	attempts     int
	inBackoff    bool
	due          bool
	backoffUntil int
}

// onCreator reports whether f's fn is running on its creator's goroutine
// now (its first attempt, byCaller).
func (f *mFlight) onCreator() bool {
	return f.byCaller && f.attempts == 1 && !f.inBackoff && !f.finished
}

type mKey struct {
	open, exec *mFlight
	parked     []*mFlight // forgotten flights in backoff
	seq        int
}

// mEntry is a retained result.
type mEntry struct {
	kind, val  string
	expires    int // tick at which it is dropped
	refreshAt  int // tick from which a hit refreshes it; 0: never
	refreshing bool
}

type model struct {
	cfg     modelConfig
	entries map[int]*mEntry // by key
	now     int
	closed  bool
	units   int // flights holding a WithMaxInFlight unit
	keys    []mKey
	st      flight.Stats
	flights []*mFlight // in creation order, for deadlines
	brk     map[int]*mBreaker
	bq      []mBevent // breaker deadlines in order
}

func (m *model) answer(c *mCaller, kind, val string, shared bool) {
	modelSeen.add(kind)
	if kind == kStale && !c.chanAPI {
		kind = kValue // Do returns a stale value with a nil error
	}
	c.answered, c.ans = true, answer{kind, val, shared}
}

// modelRetries counts the retries the model predicted (and the coordinator
// made: Stats.Retries is checked) over a whole TestModel.
var modelRetries, modelHits, modelRefreshes, modelExpired, modelHalfOpen atomic.Int64

// modelSeen counts the answers the model predicted (and the coordinator
// gave) over a whole TestModel, to show what the generated runs covered.
var modelSeen = &kindCounter{n: map[string]int{}}

type kindCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (k *kindCounter) add(kind string) {
	k.mu.Lock()
	k.n[kind]++
	k.mu.Unlock()
}

func (k *kindCounter) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var parts []string
	for _, kind := range []string{kValue, kStale, kOpen, kError, kPanic, kGoexit, kExited, kCanceled, kDeadline, kClosed, kOverloaded, kNilFunc} {
		parts = append(parts, fmt.Sprintf("%s=%d", kind, k.n[kind]))
	}
	return strings.Join(parts, " ")
}

func (m *model) call(c *mCaller, nilFn, preCancelled bool) {
	switch {
	case nilFn:
		m.answer(c, kNilFunc, "", false)
		return
	case preCancelled:
		m.answer(c, kCanceled, "", false)
		return
	case m.closed:
		m.answer(c, kClosed, "", false)
		return
	}
	if e := m.entries[c.key]; e != nil && m.now < e.expires {
		m.st.Hits++
		modelHits.Add(1)
		m.answer(c, e.kind, e.val, true)
		if e.refreshAt != 0 && m.now >= e.refreshAt && !e.refreshing {
			e.refreshing = true
			m.refresh(c)
		}
		return
	}
	if m.refused(c) {
		return
	}
	k := &m.keys[c.key]
	f := k.open
	if f != nil && f.refresh { // a miss never joins a refresh: it replaces it
		m.abandon(f)
		f = nil
	}
	if f == nil {
		if m.cfg.maxInFlight > 0 && m.units >= m.cfg.maxInFlight {
			m.st.Overloaded++
			m.answer(c, kOverloaded, "", false)
			return
		}
		m.units++
		f = &mFlight{key: c.key, creator: c, deadline: -1}
		if m.cfg.timeout > 0 {
			f.deadline = m.now + m.cfg.timeout
		}
		m.flights = append(m.flights, f)
		k.open = f
		if k.exec == nil {
			f.byCaller = !c.chanAPI && !c.cancellable && m.cfg.timeout == 0
			m.start(f)
		}
	} else {
		if m.cfg.maxWaiters > 0 && len(f.waiters) >= m.cfg.maxWaiters {
			m.st.Overloaded++
			m.answer(c, kOverloaded, "", false)
			return
		}
		m.st.Joins++
	}
	f.waiters = append(f.waiters, c)
	f.joined++
	m.st.Waiters++
	c.flight = f
	m.settle() // a refresh it replaced may return at once
}

func (m *model) start(f *mFlight) {
	k := &m.keys[f.key]
	f.started = true
	k.exec = f
	k.seq++
	f.seq = k.seq
	f.attempts = 1
	m.st.Flights++
	m.st.InFlight++
}

func (m *model) cancel(f *mFlight, why string) {
	if f.ctxErr == "" {
		f.ctxErr = why
	}
}

func (m *model) detach(f *mFlight) {
	k := &m.keys[f.key]
	if k.open == f {
		k.open = nil
	}
	m.cancel(f, kCanceled)
	if !f.started && !f.finished {
		f.finished = true
		m.units--
	}
	if f.inBackoff { // answered or abandoned between attempts: it ends now
		m.retire(f)
	}
}

func (m *model) abandon(f *mFlight) {
	f.abandoned = true
	m.st.Abandoned++
	m.detach(f)
}

// runNext starts what waits for key's exec once it is free: a parked flight
// that is due, else the open flight's first or next attempt.
func (m *model) runNext(key int) {
	k := &m.keys[key]
	if k.exec != nil || m.closed {
		return
	}
	for _, p := range k.parked {
		if p.due {
			m.attempt(p)
			return
		}
	}
	if f := k.open; f != nil {
		switch {
		case !f.started:
			m.start(f)
		case f.inBackoff && f.due:
			m.attempt(f)
		}
	}
}

func (m *model) attempt(f *mFlight) {
	k := &m.keys[f.key]
	f.inBackoff, f.due = false, false
	f.attempts++
	k.seq++
	f.seq = k.seq
	k.exec = f
	m.st.Flights++
	m.st.Retries++
	m.st.InFlight++
	modelRetries.Add(1)
}

func (m *model) publish(f *mFlight, kind, val string) {
	if f.published {
		return
	}
	f.published = true
	m.st.Waiters -= len(f.waiters)
	if kind == kStale {
		m.st.Stale += uint64(len(f.waiters))
	}
	for _, c := range f.waiters {
		if c == f.creator && f.onCreator() {
			c.deferred = &answer{kind, val, f.joined > 1}
			continue
		}
		m.answer(c, kind, val, f.joined > 1)
	}
	f.waiters = nil
}

// leave: caller c's ctx is cancelled.
func (m *model) leave(c *mCaller) {
	if c.answered {
		return
	}
	m.answer(c, kCanceled, "", false)
	f := c.flight
	f.waiters = slices.DeleteFunc(f.waiters, func(x *mCaller) bool { return x == c })
	m.st.Waiters--
	if len(f.waiters) == 0 {
		m.abandon(f)
	}
	m.settle()
}

// value is what an execution returns (or panics with): it names its key and
// its sequence number, so a value that crossed keys or executions shows.
func value(key, seq int) string { return fmt.Sprintf("k%d#%d", key, seq) }

// finish: f's fn returned with o (or, when ctxRet, returned ctx.Err()).
func (m *model) finish(f *mFlight, o outcome, ctxRet bool) {
	kind, val := kValue, value(f.key, f.seq)
	switch {
	case ctxRet:
		kind, val = f.ctxErr, ""
	case o == outError:
		kind = kError
	case o == outPanic:
		kind = kPanic
		m.st.Panics++
	case o == outGoexit:
		kind, val = kGoexit, ""
		m.st.Panics++
	}
	if o == outError && !ctxRet && f.attempts < m.cfg.attempts && !f.abandoned && !f.published &&
		!m.closed && f.ctxErr == "" {
		// WithRetry: the flight waits, keeping its callers, its place as
		// the key's execution and its ctx, and runs fn again later.
		f.inBackoff = true
		f.backoffUntil = m.now + m.cfg.backoff
		m.st.InFlight--
		k := &m.keys[f.key]
		if k.exec == f {
			k.exec = nil
		}
		if k.open != f && !slices.Contains(k.parked, f) { // forgotten while it ran
			k.parked = append(k.parked, f)
		}
		m.runNext(f.key)
		return
	}
	onCreator := f.onCreator()
	// WithBreaker, WithStaleIfError: an attached flight's outcome counts,
	// and a failed one may be answered with the stale value, never retained.
	if k := &m.keys[f.key]; k.open == f && !f.abandoned && !f.published && m.brk != nil {
		if e := m.verdict(f, kind); e != nil {
			kind, val = kStale, e.val
		}
	}
	if m.entries != nil && kind != kStale {
		m.retain(f, kind, val, ctxRet)
	}
	// A failed refresh answered with the stale value (its own, still fresh)
	// is a failed refresh like any other: its entry's claim stays.
	if !f.abandoned && !f.published {
		if kind != kValue && f.ctxErr == kDeadline {
			m.timeout(f)
		}
		m.publish(f, kind, val)
	}
	m.retire(f)
	if c := f.creator; onCreator {
		switch {
		case o == outGoexit && !ctxRet:
			m.answer(c, kExited, "", false) // its goroutine ended with fn
		case c.deferred != nil:
			m.answer(c, c.deferred.kind, c.deferred.val, c.deferred.shared)
		}
		c.deferred = nil
	}
}

func (m *model) retire(f *mFlight) {
	k := &m.keys[f.key]
	f.finished = true
	if f.inBackoff {
		f.inBackoff, f.due = false, false
	} else {
		m.st.InFlight--
	}
	m.units--
	if k.exec == f {
		k.exec = nil
	}
	if k.open == f {
		k.open = nil
	}
	k.parked = slices.DeleteFunc(k.parked, func(p *mFlight) bool { return p == f })
	m.cancel(f, kCanceled)
	m.runNext(f.key)
}

func (m *model) timeout(f *mFlight) {
	if !f.timedOut {
		f.timedOut = true
		m.st.Timeouts++
	}
}

// settle lets every running fn that honours its ctx, and whose ctx is
// cancelled, return ctx.Err().
func (m *model) settle() {
	for again := true; again; {
		again = false
		for i := range m.keys {
			if f := m.keys[i].exec; f != nil && !f.inBackoff && f.creator.honour && f.ctxErr != "" {
				m.finish(f, 0, true)
				again = true
			}
		}
	}
}

// refresh starts the background refresh c's hit asked for, unless the key
// has an open flight (whose result will be retained anyway).
func (m *model) refresh(c *mCaller) {
	k := &m.keys[c.key]
	if k.open != nil || (m.cfg.failures > 0 && m.isOpen(c.key)) {
		m.entries[c.key].refreshing = false
		return
	}
	m.units++
	f := &mFlight{key: c.key, creator: c, deadline: -1, refresh: true}
	m.st.Refreshes++
	modelRefreshes.Add(1)
	k.open = f
	m.runNext(c.key)
}

// retain is the end of an execution, before its waiters are answered:
// the result is kept if the flight was still attached and its kind may be
// kept; a refresh whose result is not kept lets the next hit try again.
func (m *model) retain(f *mFlight, kind, val string, ctxRet bool) {
	k := &m.keys[f.key]
	ttl := 0
	switch {
	case kind == kValue:
		ttl = m.cfg.ttl
	case kind == kError && !ctxRet:
		ttl = m.cfg.errTTL
	}
	if ttl > 0 && k.open == f && !f.abandoned && !f.published && !m.closed {
		e := &mEntry{kind: kind, val: val, expires: m.now + ttl}
		if kind == kValue && m.cfg.refreshAhead > 0 {
			e.refreshAt = m.now + m.cfg.refreshAhead
		}
		if m.entries[f.key] == nil {
			m.st.Entries++
		}
		m.entries[f.key] = e
	}
	// A refresh whose result is not kept leaves its entry's refresh claimed:
	// each retained result is refreshed at most once.
}

func (m *model) dropEntry(key int) {
	if m.entries[key] != nil {
		delete(m.entries, key)
		m.st.Entries--
	}
}

func (m *model) forget(key int) {
	if m.closed {
		return
	}
	m.dropEntry(key)
	m.dropBreaker(key)
	k := &m.keys[key]
	f := k.open
	if f == nil || (!f.started && !f.refresh) {
		return
	}
	k.open = nil
	m.st.Forgotten++
	switch {
	case len(f.waiters) == 0: // a refresh nobody waits for is abandoned
		m.abandon(f)
	case f.inBackoff: // parked: the next flight does not wait for its backoff
		k.parked = append(k.parked, f)
	}
	m.settle()
}

// advance moves the clock by one tick and fires the deadline that falls on it.
func (m *model) advance() {
	m.now++
	m.breakerTick()
	for key, e := range m.entries {
		if drop := e.expires + map[bool]int{true: m.cfg.stale}[e.kind == kValue]; drop <= m.now {
			m.dropEntry(key)
			modelExpired.Add(1)
		}
	}
	for i := range m.keys {
		k := &m.keys[i]
		for _, f := range append([]*mFlight{k.open}, k.parked...) {
			if f != nil && f.inBackoff && !f.due && f.backoffUntil == m.now {
				f.due = true
				m.runNext(i)
			}
		}
	}
	for _, f := range m.flights {
		if f.deadline != m.now || f.ctxErr != "" {
			continue
		}
		f.ctxErr = kDeadline
		if f.published || f.abandoned {
			continue
		}
		m.timeout(f)
		m.publish(f, kDeadline, "")
		m.detach(f)
		m.settle()
	}
	m.flights = slices.DeleteFunc(m.flights, func(f *mFlight) bool { return f.deadline <= m.now })
}

// closeAll is the first half of Close: refuse, answer, cancel. The test then
// ends the fns still running (finish), and Close returns.
func (m *model) closeAll() {
	if m.closed {
		return
	}
	m.closed = true
	for key := range m.entries {
		m.dropEntry(key)
	}
	for key := range m.brk {
		m.dropBreaker(key)
	}
	m.bq = nil
	for i := range m.keys {
		k := &m.keys[i]
		for _, f := range append([]*mFlight{k.exec, k.open}, k.parked...) {
			if f == nil || f.finished {
				continue
			}
			m.publish(f, kClosed, "")
			m.detach(f)
		}
	}
	m.settle()
}

func (m *model) keysLive() int {
	n := 0
	for _, k := range m.keys {
		if k.open != nil || k.exec != nil || len(k.parked) > 0 {
			n++
		}
	}
	return n
}

// ---- the real side ----

type rCaller struct {
	m    *mCaller
	stop context.CancelFunc
	ch   <-chan flight.Result[string] // DoChan

	mu      sync.Mutex // protects answers (a Do caller's goroutine writes it)
	answers []answer
}

type rExec struct {
	key, seq int
	caller   int // from fn's ctx values
	owner    int // whose fn this is
	ctx      context.Context
	release  chan outcome
}

type harness struct {
	rt    *rapid.T
	c     *flight.Coordinator[int, string]
	m     *model
	calls []*rCaller
	abort chan struct{} // closed on teardown: every fn returns

	mu       sync.Mutex // protects the fields below, written by fns
	running  map[int]*rExec
	seq      map[int]int
	started  int
	problems []string
}

func runModel(rt *rapid.T, cfg modelConfig) {
	opts := []flight.Option{flight.WithShards(cfg.shards)}
	if cfg.maxWaiters > 0 {
		opts = append(opts, flight.WithMaxWaiters(cfg.maxWaiters))
	}
	if cfg.maxInFlight > 0 {
		opts = append(opts, flight.WithMaxInFlight(cfg.maxInFlight))
	}
	if cfg.timeout > 0 {
		opts = append(opts, flight.WithTimeout(time.Duration(cfg.timeout)*tick))
	}
	if cfg.attempts > 0 {
		opts = append(opts, flight.WithRetry(cfg.attempts, func(int) time.Duration { return time.Duration(cfg.backoff) * tick }))
	}
	if cfg.ttl > 0 {
		opts = append(opts, flight.WithTTL(time.Duration(cfg.ttl)*tick))
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
	h := &harness{
		rt:      rt,
		c:       flight.New[int, string](opts...),
		m:       &model{cfg: cfg, keys: make([]mKey, cfg.keys)},
		abort:   make(chan struct{}),
		running: map[int]*rExec{},
		seq:     map[int]int{},
	}
	if cfg.ttl > 0 || cfg.errTTL > 0 {
		h.m.entries = map[int]*mEntry{}
	}
	if cfg.failures > 0 || cfg.stale > 0 {
		h.m.brk = map[int]*mBreaker{}
	}
	rt.Cleanup(h.teardown)

	rt.Repeat(map[string]func(*rapid.T){
		"":         func(rt *rapid.T) { h.check("") },
		"Do":       func(rt *rapid.T) { h.call(rt, false) },
		"DoChan":   func(rt *rapid.T) { h.call(rt, true) },
		"Cancel":   h.cancel,
		"Release":  h.release,
		"Release2": h.release, // fns end about as often as calls start
		"Release3": h.release,
		"Forget":   h.forget,
		"Wait":     h.wait,
		"Close":    h.closeStep,
	})
	// Every sequence ends with Close, whatever state it left.
	h.closeWith(rt)
	h.check("after the final Close")
	h.m.st.Keys, h.m.st.InFlight, h.m.st.Waiters = 0, 0, 0
	if st := h.c.Stats(); st.Keys != 0 || st.InFlight != 0 || st.Waiters != 0 {
		rt.Fatalf("gauges after Close: %+v", st)
	}
	for _, c := range h.calls {
		if !c.m.answered {
			rt.Fatalf("caller %d was never answered", c.m.id)
		}
	}
}

// step ends every step: one tick of the clock, with the model firing the
// deadline that falls on it, and the bubble settled.
func (h *harness) step() {
	synctest.Wait()
	time.Sleep(tick)
	synctest.Wait()
	h.m.advance()
}

func (h *harness) fnFor(mc *mCaller) flight.Func[string] {
	return func(ctx context.Context) (string, error) {
		e := &rExec{key: mc.key, owner: mc.id, ctx: ctx, release: make(chan outcome, 1)}
		e.caller, _ = ctx.Value(callerIDKey{}).(int)
		h.mu.Lock()
		if other := h.running[mc.key]; other != nil {
			h.problems = append(h.problems, fmt.Sprintf("key %d: execution #%d started while #%d runs", mc.key, h.seq[mc.key]+1, other.seq))
		}
		h.seq[mc.key]++
		e.seq = h.seq[mc.key]
		h.running[mc.key] = e
		h.started++
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			if h.running[mc.key] == e {
				delete(h.running, mc.key)
			}
			h.mu.Unlock()
		}()
		var o outcome
		if mc.honour {
			select {
			case o = <-e.release:
			case <-ctx.Done():
				return "", ctx.Err()
			case <-h.abort:
				return "", nil
			}
		} else {
			select {
			case o = <-e.release:
			case <-h.abort:
				return "", nil
			}
		}
		v := value(mc.key, e.seq)
		switch o {
		case outError:
			return v, errBoom
		case outPanic:
			panic(v)
		case outGoexit:
			runtime.Goexit()
		}
		return v, nil
	}
}

func (h *harness) call(rt *rapid.T, chanAPI bool) {
	m := h.m
	mc := &mCaller{
		id:          len(h.calls) + 1,
		key:         rapid.IntRange(0, m.cfg.keys-1).Draw(rt, "key"),
		chanAPI:     chanAPI,
		cancellable: rapid.IntRange(0, 4).Draw(rt, "notCancellable") != 4,
		honour:      rapid.Bool().Draw(rt, "honoursCtx"),
	}
	// rapid favours small draws, so the rare cases sit at the top of the range.
	special := rapid.IntRange(0, 19).Draw(rt, "special") // 19: nil fn, 18: ctx already done
	nilFn, preCancelled := special == 19, special == 18
	rc := &rCaller{m: mc, stop: func() {}}
	h.calls = append(h.calls, rc)

	ctx := context.WithValue(context.Background(), callerIDKey{}, mc.id)
	if mc.cancellable || preCancelled {
		ctx, rc.stop = context.WithCancel(ctx)
	}
	if preCancelled {
		rc.stop()
	}
	fn := h.fnFor(mc)
	if nilFn {
		fn = nil
	}
	rt.Logf("step: caller %d %s key %d (cancellable=%v honoursCtx=%v nilFn=%v ctxDone=%v)",
		mc.id, map[bool]string{false: "Do", true: "DoChan"}[chanAPI], mc.key, mc.cancellable, mc.honour, nilFn, preCancelled)
	if chanAPI {
		rc.ch = h.c.DoChan(ctx, mc.key, fn)
	} else {
		go func() {
			returned := false
			defer func() {
				if !returned { // runtime.Goexit in fn, run on this goroutine
					rc.record(answer{kExited, "", false})
				}
			}()
			v, shared, err := h.c.Do(ctx, mc.key, fn)
			returned = true
			rc.record(classify(v, shared, err))
		}()
	}
	m.call(mc, nilFn, preCancelled)
	h.step()
}

func (rc *rCaller) record(a answer) {
	rc.mu.Lock()
	rc.answers = append(rc.answers, a)
	rc.mu.Unlock()
}

func classify(v string, shared bool, err error) answer {
	var pe *flight.PanicError
	switch {
	case err == nil:
		return answer{kValue, v, shared}
	case errors.As(err, &pe):
		pv, _ := pe.Value.(string)
		return answer{kPanic, pv, shared}
	case errors.Is(err, errBoom):
		return answer{kError, v, shared}
	case errors.Is(err, flight.ErrGoexit):
		return answer{kGoexit, v, shared}
	case errors.Is(err, flight.ErrClosed):
		return answer{kClosed, v, shared}
	case errors.Is(err, flight.ErrOverloaded):
		return answer{kOverloaded, v, shared}
	case errors.Is(err, flight.ErrNilFunc):
		return answer{kNilFunc, v, shared}
	case errors.Is(err, flight.ErrOpen):
		return answer{kOpen, v, shared}
	case errors.Is(err, context.Canceled):
		return answer{kCanceled, v, shared}
	case errors.Is(err, context.DeadlineExceeded):
		return answer{kDeadline, v, shared}
	}
	return answer{"unexpected error " + err.Error(), v, shared}
}

func (h *harness) cancel(rt *rapid.T) {
	var cands []*rCaller
	for _, c := range h.calls {
		if c.m.cancellable && !c.m.answered {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		rt.Skip("no waiting caller can be cancelled")
	}
	c := rapid.SampledFrom(cands).Draw(rt, "cancel")
	rt.Logf("step: cancel caller %d", c.m.id)
	c.stop()
	h.m.leave(c.m)
	h.step()
}

func (h *harness) runningKeys() []int {
	var ks []int
	for i, k := range h.m.keys {
		if k.exec != nil && !k.exec.inBackoff {
			ks = append(ks, i)
		}
	}
	return ks
}

func (h *harness) release(rt *rapid.T) {
	ks := h.runningKeys()
	if len(ks) == 0 {
		rt.Skip("no fn running")
	}
	key := rapid.SampledFrom(ks).Draw(rt, "releaseKey")
	o := outcome(rapid.IntRange(0, 3).Draw(rt, "outcome"))
	h.releaseKey(rt, key, o)
	h.step()
}

func (h *harness) releaseKey(rt *rapid.T, key int, o outcome) {
	f := h.m.keys[key].exec
	rt.Logf("step: fn of key %d (execution #%d, caller %d) ends with %s", key, f.seq, f.creator.id, outcomeNames[o])
	h.mu.Lock()
	e := h.running[key]
	h.mu.Unlock()
	if e == nil {
		rt.Fatalf("the model has execution #%d of key %d running, the coordinator has none", f.seq, key)
	}
	e.release <- o
	h.m.finish(f, o, false)
}

func (h *harness) forget(rt *rapid.T) {
	key := rapid.IntRange(0, h.m.cfg.keys-1).Draw(rt, "forgetKey")
	rt.Logf("step: Forget(%d)", key)
	h.c.Forget(key)
	h.m.forget(key)
	h.step()
}

func (h *harness) wait(rt *rapid.T) {
	if h.m.cfg.timeout == 0 && h.m.cfg.attempts == 0 && h.m.cfg.ttl == 0 {
		rt.Skip("no WithTimeout, WithRetry or WithTTL: waiting changes nothing")
	}
	n := rapid.IntRange(1, max(h.m.cfg.timeout, h.m.cfg.backoff, h.m.cfg.ttl+h.m.cfg.stale, 2*h.m.cfg.cooldown)+1).Draw(rt, "ticks")
	rt.Logf("step: %d ticks pass", n)
	for range n - 1 {
		h.step()
		h.check(fmt.Sprintf("tick %d", h.m.now))
	}
	h.step()
}

func (h *harness) closeStep(rt *rapid.T) {
	if h.m.closed || rapid.IntRange(0, 15).Draw(rt, "closeNow") != 15 {
		rt.Skip("Close is drawn rarely, so that sequences do more than refuse")
	}
	h.closeWith(rt)
	h.step()
}

// closeWith runs Close on its own goroutine, checks that it answered every
// waiter and cancelled every running fn's ctx while it waits for them, ends
// those fns with drawn outcomes, and checks that Close then returns.
func (h *harness) closeWith(rt *rapid.T) {
	rt.Logf("step: Close")
	done := make(chan error, 1)
	go func() { done <- h.c.Close() }()
	h.m.closeAll()
	synctest.Wait()
	h.check("while Close waits for running fns")
	for _, key := range h.runningKeys() {
		if h.m.closed && h.m.keys[key].exec.ctxErr == "" {
			rt.Fatalf("model: Close left a ctx uncancelled")
		}
		h.releaseKey(rt, key, outcome(rapid.IntRange(0, 3).Draw(rt, "outcomeAtClose")))
		synctest.Wait()
	}
	synctest.Wait()
	select {
	case err := <-done:
		if err != nil {
			rt.Fatalf("Close: %v", err)
		}
	default:
		rt.Fatalf("Close did not return once every fn had returned")
	}
	if err := h.c.Close(); err != nil {
		rt.Fatalf("second Close: %v", err)
	}
}

// check compares the coordinator with the model.
func (h *harness) check(when string) {
	rt, m := h.rt, h.m
	var diffs []string
	for _, c := range h.calls {
		if c.ch != nil {
			select {
			case r := <-c.ch:
				c.record(classifyResult(r))
			default:
			}
		}
		c.mu.Lock()
		got := slices.Clone(c.answers)
		c.mu.Unlock()
		switch {
		case len(got) > 1:
			diffs = append(diffs, fmt.Sprintf("caller %d answered %d times: %v", c.m.id, len(got), got))
		case len(got) == 1 && !c.m.answered:
			diffs = append(diffs, fmt.Sprintf("caller %d got %v; the model has no answer yet", c.m.id, got[0]))
		case len(got) == 0 && c.m.answered:
			diffs = append(diffs, fmt.Sprintf("caller %d has no answer; the model says %v", c.m.id, c.m.ans))
		case len(got) == 1 && got[0] != c.m.ans:
			diffs = append(diffs, fmt.Sprintf("caller %d got %v; the model says %v", c.m.id, got[0], c.m.ans))
		}
	}
	want := m.st
	want.Keys = m.keysLive()
	if got := h.c.Stats(); got != want {
		diffs = append(diffs, fmt.Sprintf("Stats\n  got  %+v\n  want %+v", got, want))
	}
	h.mu.Lock()
	diffs = append(diffs, h.problems...)
	h.problems = nil
	if uint64(h.started) != m.st.Flights {
		diffs = append(diffs, fmt.Sprintf("%d executions started; the model has %d", h.started, m.st.Flights))
	}
	for i, k := range m.keys {
		e, f := h.running[i], k.exec
		switch {
		case e == nil && f != nil && f.inBackoff:
			// between two attempts: no fn runs
		case e == nil && f != nil:
			diffs = append(diffs, fmt.Sprintf("key %d: no fn runs; the model runs #%d of caller %d", i, f.seq, f.creator.id))
		case e != nil && f != nil && f.inBackoff:
			diffs = append(diffs, fmt.Sprintf("key %d: execution #%d runs; the model has the flight in its backoff", i, e.seq))
		case e != nil && f == nil:
			diffs = append(diffs, fmt.Sprintf("key %d: execution #%d of caller %d runs; the model has none", i, e.seq, e.owner))
		case e != nil:
			if e.seq != f.seq || e.owner != f.creator.id || e.caller != f.creator.id {
				diffs = append(diffs, fmt.Sprintf("key %d: execution #%d runs caller %d's fn with caller %d's ctx values; the model runs #%d of caller %d",
					i, e.seq, e.owner, e.caller, f.seq, f.creator.id))
			}
			if got := ctxKind(e.ctx.Err()); got != f.ctxErr {
				diffs = append(diffs, fmt.Sprintf("key %d: fn's ctx error is %q; the model says %q", i, got, f.ctxErr))
			}
		}
	}
	h.mu.Unlock()
	if len(diffs) > 0 {
		if when != "" {
			when = " (" + when + ")"
		}
		rt.Fatalf("the coordinator and the model differ%s:\n%s", when, strings.Join(diffs, "\n"))
	}
}

func ctxKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return kDeadline
	case errors.Is(err, context.Canceled):
		return kCanceled
	}
	return err.Error()
}

// teardown runs even when a check failed half-way: it lets every fn return
// and closes the coordinator, so that the bubble ends with no goroutine.
func (h *harness) teardown() {
	close(h.abort)
	for _, c := range h.calls {
		c.stop()
	}
	h.c.Close()
}
