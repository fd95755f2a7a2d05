package coordinator

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Retained results (WithTTL, WithErrorTTL, WithRefreshAhead, WithMaxEntries).
//
// Each shard keeps the results its key actors chose to retain in a map that
// callers read concurrently under an RWMutex: a hit takes a read lock, looks
// the key up and checks the entry's deadline, and never waits for the
// shard's mailbox or allocates. Why not a cache library (otter v2 was
// weighed): the shard already serializes every write of a key, a library's
// expiry runs only when someone calls it or on a goroutine of its own (an
// idle coordinator must hold none), and its dependency would reach every
// consumer.
//
// Bound: WithMaxEntries is one bound across the coordinator, kept by one
// policy (a count, and a CLOCK ring over the entries of every shard, under
// one mutex that writers take and hits never do). A shard that would go
// beyond the bound evicts first the entry CLOCK chooses, whichever shard
// holds it (second chance: a hit marks its entry, the hand clears marks and
// evicts the first unmarked entry; an approximation of least recently used
// that costs a hit one atomic load). So the bound holds at every moment, and
// a new result is always retained, even on a shard that held none (with more
// shards than WithMaxEntries, a per-shard bound would leave some shards
// unable to keep anything). The cost is one uncontended-in-practice mutex
// per retained result, on the miss path, which already posts a message.
//
// Memory: an entry removed in any way (expired, replaced, forgotten, evicted,
// closed) is unlinked at once from the ring and from its expiry queue, so
// nothing of the store refers to it any more: the memory of retained results
// is bounded by WithMaxEntries, not by the keys seen within a TTL.
//
// Expiry: every result of one kind (a value, an error) lives for the same
// TTL, so entries expire in the order they were retained: each shard keeps
// one queue per kind (a doubly linked list: O(1) to add, to expire and to
// remove from the middle) and one time.AfterFunc timer armed for the
// earliest deadline at the queues' heads; when it fires it posts a message,
// and the shard drops what has expired and arms the timer for the next. No
// goroutine exists between timer firings. A hit also checks the deadline
// itself, so a result is never served past its TTL even when the timer's
// message is late.

// RetainConfig is the configuration of retained results; the zero value
// retains nothing.
type RetainConfig struct {
	TTL          time.Duration // successful results; 0: not retained
	ErrorTTL     time.Duration // error results; 0: not retained
	RefreshAhead time.Duration // with TTL: refresh a result older than this on a hit; 0: never
	MaxEntries   int           // bound across shards; > 0 when TTL or ErrorTTL is set
	// Retainable says which errors ErrorTTL may retain, beyond what the key
	// actor already refuses (see actor.Env.Retain); nil: every such error.
	Retainable func(error) bool
}

func (r RetainConfig) enabled() bool { return r.TTL > 0 || r.ErrorTTL > 0 }

// entry is one retained result. key, val, err and the deadlines are
// immutable once it is published in its store's map; the links belong to
// the policy's mutex; the three flags are atomics.
type entry[K comparable, V any] struct {
	key       K
	val       V
	err       error
	expires   time.Duration // since epoch
	refreshAt time.Duration // since epoch; 0: never refreshed ahead

	st           *store[K, V] // the store whose map holds it
	prev, next   *entry[K, V] // the policy's CLOCK ring
	older, newer *entry[K, V] // its store's expiry queue of its kind

	// refreshing is claimed by the hit that starts the entry's refresh and
	// never released once the refresh has run: each retained result is
	// refreshed at most once (a failed refresh is not retried on every hit;
	// the result is served until its TTL). It is released only when no
	// refresh started (see shard.refresh).
	refreshing atomic.Bool
	used       atomic.Bool // CLOCK's reference mark, set by hits
	gone       atomic.Bool // removed from its map (set under the policy's mutex)
}

// policy is what the stores of one coordinator share: the entry count, the
// CLOCK ring over all their entries, and the mutex that guards the ring,
// every store's expiry queues and every write to a store's map. A shard
// takes it to retain, remove or expire a result; a hit never does.
type policy[K comparable, V any] struct {
	mu    sync.Mutex
	hand  *entry[K, V] // the CLOCK hand, on the ring; nil: no entry
	count atomic.Int64 // entries across stores; written under mu, read by Stats
	max   int64        // WithMaxEntries
}

func newPolicy[K comparable, V any](max int) *policy[K, V] { return &policy[K, V]{max: int64(max)} }

// link puts e on the ring just behind the hand, so that it is the last
// entry the hand reaches.
func (p *policy[K, V]) link(e *entry[K, V]) {
	h := p.hand
	if h == nil {
		e.prev, e.next, p.hand = e, e, e
		return
	}
	e.next, e.prev = h, h.prev
	h.prev.next = e
	h.prev = e
}

func (p *policy[K, V]) unlink(e *entry[K, V]) {
	if e.next == e {
		p.hand = nil
	} else {
		if p.hand == e {
			p.hand = e.next
		}
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.prev, e.next = nil, nil
}

// victim returns the entry CLOCK evicts, nil if there is none: the hand
// gives a marked entry a second chance (clearing its mark) and stops at the
// first unmarked one. It is O(1) amortized: each mark it clears was set by a
// hit. After two turns (hits racing with it may re-mark entries) it takes
// the entry under the hand.
func (p *policy[K, V]) victim() *entry[K, V] {
	for range 2*p.count.Load() + 1 {
		e := p.hand
		if e == nil || !e.used.Load() {
			return e
		}
		e.used.Store(false)
		p.hand = e.next
	}
	return p.hand
}

// remove takes e out of its store's map, the ring, its queue and the count.
// The caller holds p.mu.
func (p *policy[K, V]) remove(e *entry[K, V]) {
	st := e.st
	st.mu.Lock()
	delete(st.entries, e.key)
	st.mu.Unlock()
	p.drop(e)
	p.count.Add(-1)
}

// drop unlinks e from the ring and its queue and marks it gone; the caller
// holds p.mu and has taken it out of the map (or replaced it there).
func (p *policy[K, V]) drop(e *entry[K, V]) {
	e.gone.Store(true)
	p.unlink(e)
	e.st.queue(e).remove(e)
}

// store is one shard's retained results.
type store[K comparable, V any] struct {
	pol     *policy[K, V]
	mu      sync.RWMutex       // guards entries; writers also hold pol.mu
	entries map[K]*entry[K, V] // read by callers under mu, written under pol.mu and mu
	vals    queue[K, V]        // values in deadline order, under pol.mu
	errs    queue[K, V]        // errors in deadline order, under pol.mu
	timer   *time.Timer        // fires at the queues' earliest deadline; nil until first armed
	armedAt time.Duration      // deadline the timer is armed for, if armed
	armed   bool               // the timer is armed (owned by the shard)
	post    func(msg any)      // shard.postInternal
	cfg     *RetainConfig
	closed  bool // set by the shard on Close (owned by the shard)
}

// expireMsg is what a store's timer posts to its shard.
type expireMsg struct{}

// refreshMsg is what a hit posts to start a refresh of e.
type refreshMsg[K comparable, V any] struct {
	e   *entry[K, V]
	ctx context.Context
	fn  func(context.Context) (V, error)
}

func newStore[K comparable, V any](cfg *RetainConfig, pol *policy[K, V], post func(any)) *store[K, V] {
	return &store[K, V]{entries: make(map[K]*entry[K, V]), cfg: cfg, pol: pol, post: post}
}

func (st *store[K, V]) queue(e *entry[K, V]) *queue[K, V] {
	if e.err == nil {
		return &st.vals
	}
	return &st.errs
}

// lookup returns key's entry if it holds a result that is still valid at
// now. Any goroutine may call it.
func (st *store[K, V]) lookup(key K, now time.Duration) *entry[K, V] {
	st.mu.RLock()
	e := st.entries[key]
	st.mu.RUnlock()
	if e == nil || now >= e.expires {
		return nil
	}
	if !e.used.Load() {
		e.used.Store(true)
	}
	return e
}

// own is lookup for the shard actor, on a miss that reached it: the clock
// is read only when the key has an entry. It takes the read lock, since
// another shard may evict from this store.
func (st *store[K, V]) own(key K) *entry[K, V] {
	st.mu.RLock()
	e := st.entries[key]
	st.mu.RUnlock()
	if e == nil || since() >= e.expires {
		return nil
	}
	e.used.Store(true)
	return e
}

// wantsRefresh reports whether a hit at now on e should start its refresh,
// and claims it (at most one refresh of an entry, ever).
func (e *entry[K, V]) wantsRefresh(now time.Duration) bool {
	return e.refreshAt != 0 && now >= e.refreshAt && !e.refreshing.Load() && e.refreshing.CompareAndSwap(false, true)
}

// keep retains val/err for key (shard actor only). It reports whether the
// result was retained: always, when its kind has a TTL and the store is
// open (beyond WithMaxEntries, CLOCK evicts another result first).
func (st *store[K, V]) keep(key K, val V, err error) bool {
	if st.closed {
		return false
	}
	ttl := st.cfg.TTL
	if err != nil {
		ttl = st.cfg.ErrorTTL
	}
	if ttl <= 0 {
		return false
	}
	now := since()
	e := &entry[K, V]{key: key, val: val, err: err, expires: addSat(now, ttl), st: st}
	if err == nil && st.cfg.RefreshAhead > 0 {
		e.refreshAt = addSat(now, st.cfg.RefreshAhead)
	}
	p := st.pol
	p.mu.Lock()
	old := st.entries[key] // every writer of the map holds p.mu
	if old == nil && p.count.Load() >= p.max {
		if v := p.victim(); v != nil {
			p.remove(v)
		}
	}
	st.mu.Lock()
	st.entries[key] = e
	st.mu.Unlock()
	if old != nil {
		p.drop(old)
	} else {
		p.count.Add(1)
	}
	p.link(e)
	st.queue(e).push(e)
	st.arm()
	p.mu.Unlock()
	return true
}

// remove drops key's entry, if any (Forget; shard actor only).
func (st *store[K, V]) remove(key K) {
	p := st.pol
	p.mu.Lock()
	if e := st.entries[key]; e != nil {
		p.remove(e)
	}
	p.mu.Unlock()
}

// expire drops every entry whose deadline has passed and re-arms the timer
// (shard actor only).
func (st *store[K, V]) expire() {
	st.armed = false
	now := since()
	p := st.pol
	p.mu.Lock()
	for _, q := range [...]*queue[K, V]{&st.vals, &st.errs} {
		for e := q.head; e != nil && e.expires <= now; e = q.head {
			p.remove(e)
		}
	}
	st.arm()
	p.mu.Unlock()
}

// arm makes the timer fire at the earliest deadline, if it is not armed for
// it already. The caller holds the policy's mutex (the queues' heads).
func (st *store[K, V]) arm() {
	if st.closed {
		return
	}
	var next time.Duration
	found := false
	for _, q := range [...]*queue[K, V]{&st.vals, &st.errs} {
		if e := q.head; e != nil && (!found || e.expires < next) {
			next, found = e.expires, true
		}
	}
	if !found || (st.armed && st.armedAt <= next) {
		return
	}
	st.armed = true
	st.armedAt = next
	d := next - since()
	if st.timer == nil {
		post := st.post
		st.timer = time.AfterFunc(d, func() { post(expireMsg{}) })
		return
	}
	st.timer.Reset(d)
}

// close drops every entry and stops the timer (shard actor only).
func (st *store[K, V]) close() {
	st.closed = true
	if st.timer != nil {
		st.timer.Stop()
	}
	p := st.pol
	p.mu.Lock()
	for _, e := range st.entries {
		p.remove(e)
	}
	p.mu.Unlock()
}

// queue is a store's entries of one kind in the order they were retained,
// which is their deadline order: a doubly linked list through the entries.
type queue[K comparable, V any] struct{ head, tail *entry[K, V] }

func (q *queue[K, V]) push(e *entry[K, V]) {
	e.older, e.newer = q.tail, nil
	if q.tail != nil {
		q.tail.newer = e
	} else {
		q.head = e
	}
	q.tail = e
}

func (q *queue[K, V]) remove(e *entry[K, V]) {
	if e.older != nil {
		e.older.newer = e.newer
	} else {
		q.head = e.newer
	}
	if e.newer != nil {
		e.newer.older = e.older
	} else {
		q.tail = e.older
	}
	e.older, e.newer = nil, nil
}

// since is the monotonic time since the package's epoch.
func since() time.Duration { return time.Since(epoch) }

var epoch = time.Now()

// addSat returns a+b, saturating instead of overflowing.
func addSat(a, b time.Duration) time.Duration {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}
