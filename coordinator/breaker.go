package coordinator

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	fa "github.com/actorflight/flight/actor"
)

// The per-key breaker (WithBreaker) and the stale values it and
// WithStaleIfError serve.
//
// Each shard keeps the breaker state of its keys that failed recently in a
// map that callers read under a read lock and only the shard actor writes,
// as it does its retained results. The state outlives the key's actor (an
// idle key has none) and is dropped by a timer message, so that a key that
// failed once and is never asked for again holds nothing for long:
//
//   - closed (fewer than Failures consecutive failed flights): dropped
//     Cooldown after its last failure; the count starts again from zero;
//   - open (Failures reached): every call is refused at once, on the
//     caller's goroutine, until Cooldown after the last failure; then it is
//     half-open;
//   - half-open: the next call starts one flight (the trial), which every
//     caller arriving meanwhile joins as usual; its success drops the state
//     (the breaker closes), its failure opens it for another Cooldown. A
//     half-open state no call has tried is dropped Cooldown after it became
//     half-open, 2·Cooldown after the last failure, and while a flight of
//     the key runs it is kept until that flight ends. Why not drop it at the
//     end of the cooldown, as a closed state is: the trial would then count
//     from zero, and an upstream that is still down would get Failures more
//     flights instead of one.
//
// A successful flight drops the key's state; Forget drops it too; Close
// drops every state. Every deadline is Cooldown after an event the shard
// handles, so they come in the order they were set: one FIFO queue and one
// time.AfterFunc timer armed for its head, as the store's expiry does; no
// goroutine exists between timer firings, and none once the queue is empty.
//
// The stale values live in the store of retained results (retain.go: a
// value's slot is dropped RetainConfig.Stale after its TTL); a breaker
// state holds none. It names the result its key held when a flight failed
// (a slot index and the slot's generation) and a refused call reads that
// result from the store, under the store's read lock, only while the key's
// map entry still names that slot with that generation: a slot freed or
// reused for another result (eviction by any shard, the slab being the
// coordinator's) is never read for this key.
//
// The cost when nothing fails: a call and a flight's end each load one
// atomic counter (the shard's number of states, Env.Tracked) and do
// nothing more while it is zero.

// BreakerConfig configures the per-key breaker; the zero value has none.
type BreakerConfig struct {
	Failures int           // consecutive failed flights that open a key's breaker; 0: no breaker
	Cooldown time.Duration // how long it stays open; > 0 with Failures
}

// notOpen is a state's openUntil while it is closed.
const notOpen = math.MinInt64

// bstate is one key's breaker state.
type bstate[K comparable, V any] struct {
	key       K
	openUntil atomic.Int64 // since epoch; notOpen while closed (written by the shard, read by callers)
	fails     int          // consecutive failed flights (owned by the shard)
	gen       uint64       // bumped by each failure; an older event is stale (owned by the shard)
	open      bool         // counted in Stats.Open: not yet half-open (owned by the shard)
	// held names the key's retained result as the breaker last saw it (its
	// slot's index and generation, see store.peek): the stale value
	// (WithStaleIfError) or the error retained (WithErrorTTL) when a
	// flight failed; 0: none. Written by the shard, read by callers. A call
	// refused by the open breaker answers from the store's entry for the
	// key only while that entry is still this very result: while the
	// breaker is open no flight of the key runs, so the entry changes only
	// by time (its deadlines, checked by the caller), Forget and Close
	// (which drop this state too), or eviction (WithMaxEntries: the slot
	// may then hold another key's result, which the generation and the
	// key's map entry tell apart; the call gets ErrOpen). The state holds
	// no copy of the value: the store's bound on memory holds.
	held atomic.Uint64
	gone bool // removed from the map (owned by the shard)
}

// bevent is a deadline of one state: Cooldown after a failure, or after the
// state became half-open.
type bevent[K comparable, V any] struct {
	st  *bstate[K, V]
	gen uint64
	at  time.Duration
}

// breakers is one shard's breaker states.
type breakers[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]*bstate[K, V] // guarded by mu; written by the shard actor only
	n  atomic.Int64        // len(m): a call skips the lock while it is 0

	// Owned by the shard actor.
	q       []bevent[K, V] // deadlines in order (a slice used as a queue)
	first   int            // index of q's head
	timer   *time.Timer
	armedAt time.Duration
	armed   bool
	closed  bool
	cfg     BreakerConfig
	post    func(msg any)
	stats   *fa.Stats
}

// breakerMsg is what the breakers' timer posts to its shard.
type breakerMsg struct{}

func newBreakers[K comparable, V any](cfg BreakerConfig, stats *fa.Stats, post func(any)) *breakers[K, V] {
	return &breakers[K, V]{m: make(map[K]*bstate[K, V]), cfg: cfg, stats: stats, post: post}
}

// openState returns key's state if its breaker refuses a call at now. Any
// goroutine may call it.
func (b *breakers[K, V]) openState(key K, now time.Duration) *bstate[K, V] {
	b.mu.RLock()
	st := b.m[key]
	b.mu.RUnlock()
	if st == nil || int64(now) >= st.openUntil.Load() {
		return nil
	}
	return st
}

// ownOpen is isOpen for the shard actor, the map's only writer: no lock.
func (b *breakers[K, V]) ownOpen(key K) bool {
	st := b.m[key]
	return st != nil && int64(since()) < st.openUntil.Load()
}

// fail counts a failed flight of key, opening its breaker at the
// Failures'th in a row (shard actor only).
func (b *breakers[K, V]) fail(key K) *bstate[K, V] {
	if b.closed {
		return nil
	}
	st := b.m[key]
	if st == nil {
		st = &bstate[K, V]{key: key}
		st.openUntil.Store(notOpen)
		b.mu.Lock()
		b.m[key] = st
		b.mu.Unlock()
		b.n.Add(1)
	}
	now := since()
	st.fails++
	st.gen++
	if st.fails >= b.cfg.Failures {
		st.openUntil.Store(int64(addSat(now, b.cfg.Cooldown)))
		if !st.open {
			st.open = true
			b.stats.Open.Add(1)
		}
	}
	b.push(st, now)
	return st
}

// succeed closes key's breaker after a successful flight (shard actor only).
func (b *breakers[K, V]) succeed(key K) {
	if len(b.m) == 0 {
		return // the common case: nothing failed lately
	}
	if st := b.m[key]; st != nil {
		b.drop(st)
	}
}

// remove drops key's state (Forget; shard actor only).
func (b *breakers[K, V]) remove(key K) { b.succeed(key) }

func (b *breakers[K, V]) drop(st *bstate[K, V]) {
	b.mu.Lock()
	delete(b.m, st.key)
	b.mu.Unlock()
	b.n.Add(-1)
	st.gone = true
	if st.open {
		st.open = false
		b.stats.Open.Add(-1)
	}
}

func (b *breakers[K, V]) push(st *bstate[K, V], now time.Duration) {
	if b.first > 0 && b.first == len(b.q) {
		b.q, b.first = b.q[:0], 0
	}
	b.q = append(b.q, bevent[K, V]{st: st, gen: st.gen, at: addSat(now, b.cfg.Cooldown)})
	b.arm()
}

// expire handles the deadlines that have passed (shard actor only): an
// open state becomes half-open, a closed one or an untried half-open one
// is dropped. live reports whether key has a flight now.
func (b *breakers[K, V]) expire(live func(K) bool) {
	b.armed = false
	now := since()
	for b.first < len(b.q) && b.q[b.first].at <= now {
		ev := b.q[b.first]
		b.q[b.first] = bevent[K, V]{}
		b.first++
		st := ev.st
		if st.gone || ev.gen != st.gen {
			continue // dropped, or failed again since: a later event is queued
		}
		switch {
		case st.open:
			st.open = false
			b.stats.Open.Add(-1)
			b.push(st, now) // half-open: the drop if no trial comes
		case st.fails >= b.cfg.Failures && live(st.key):
			b.push(st, now) // half-open and a flight (the trial) runs: keep it
		default:
			b.drop(st)
		}
	}
	if b.first == len(b.q) {
		clear(b.q)
		b.q, b.first = b.q[:0], 0
	} else if b.first > 64 && b.first > len(b.q)/2 {
		n := copy(b.q, b.q[b.first:])
		clear(b.q[n:])
		b.q, b.first = b.q[:n], 0
	}
	b.arm()
}

// arm makes the timer fire at the head's deadline, if it is not armed for
// it already.
func (b *breakers[K, V]) arm() {
	if b.closed || b.first == len(b.q) {
		return
	}
	next := b.q[b.first].at
	if b.armed && b.armedAt <= next {
		return
	}
	b.armed, b.armedAt = true, next
	d := next - since()
	if b.timer == nil {
		post := b.post
		b.timer = time.AfterFunc(d, func() { post(breakerMsg{}) })
		return
	}
	b.timer.Reset(d)
}

// close drops every state and stops the timer (shard actor only).
func (b *breakers[K, V]) close() {
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	for _, st := range b.m {
		b.drop(st)
	}
	b.q, b.first = nil, 0
}

// outcome is the key actors' Env.Outcome: it counts a flight's outcome in
// the key's breaker and, for a failed one, returns the key's stale value
// to answer with, if it holds one.
func (s *shard[K, V, R]) outcome(key K, failed bool) (v V, ok bool) {
	if s.brk != nil {
		if failed {
			st := s.brk.fail(key)
			if s.store != nil && st != nil {
				// The key's stale value, if any: what a refused call gets.
				// An error this flight retains replaces it (shard.retain).
				st.held.Store(uint64(s.store.name(key)))
			}
		} else {
			s.brk.succeed(key)
		}
	}
	if failed && s.store != nil && s.c.cfg.Retain.Stale > 0 {
		if v, _, ok := s.store.staleOf(key, since()); ok {
			return v, true
		}
	}
	return v, false
}

// refused answers a call for a key whose breaker is open, on the caller's
// goroutine, before the look-up for a hit: it reports false when the
// breaker lets the call through (or the coordinator is closed: the call
// goes on to be refused), else the answer: the key's retained result the
// state names (bstate.held), read from the store (store.peek), if it is
// still fresh (a hit, as it would have been without the breaker) or a
// stale value (WithStaleIfError, with err the stale marker); else ErrOpen.
// An ErrOpen refusal costs what a hit does, one read lock and one map
// look-up (the breakers'); one the store answers adds the store's; and
// while nothing failed lately, a call pays one atomic load.
func (s *shard[K, V, R]) refused(ctx context.Context, key K) (v V, err error, shared, ok bool) {
	b := s.brk
	if b.n.Load() == 0 {
		return v, nil, false, false // nothing failed lately: no clock reading
	}
	now := since()
	st := b.openState(key, now)
	if st == nil || s.api.Closed() {
		return v, nil, false, false
	}
	if h := held(st.held.Load()); h != 0 {
		val, herr, fresh, stale := s.store.peek(key, h, now)
		switch {
		case fresh:
			s.stats.Hits.Add(1)                // a fresh result is still a hit
			if t := s.c.cfg.Tracer; t != nil { // tracing hook
				t.Hit(ctx)
			}
			return val, herr, true, true
		case stale:
			s.stats.Stale.Add(1)
			return val, s.c.cfg.Errors.Stale, true, true
		}
	}
	s.stats.Rejected.Add(1)
	return v, s.c.cfg.ErrOpen, false, true
}

// retained tells key's breaker, if it has a state, of the result the key
// retained (shard actor only; see bstate.held).
func (b *breakers[K, V]) retained(key K, h held) {
	if st := b.m[key]; st != nil {
		st.held.Store(uint64(h))
	}
}

// ownRefused is refused for the shard actor, as it handles a join: the
// breaker may have opened since the caller looked.
func (s *shard[K, V, R]) ownRefused(cl *call[K, V, R]) bool {
	if !s.brk.ownOpen(cl.key) {
		return false
	}
	if s.store != nil && s.c.cfg.Retain.Stale > 0 {
		if v, fresh, ok := s.store.staleOf(cl.key, since()); ok && !fresh {
			s.stats.Stale.Add(1)
			cl.answer(v, s.c.cfg.Errors.Stale, true)
			return true
		}
	}
	s.stats.Rejected.Add(1)
	var zero V
	cl.answer(zero, s.c.cfg.ErrOpen, false)
	return true
}
