package coordinator

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	fa "github.com/actorflight/flight/actor"
)

// Retained results (WithTTL, WithErrorTTL, WithRefreshAhead, WithMaxEntries).
//
// Each shard keeps the results its key actors chose to retain in a map that
// callers read concurrently and only the shard actor writes, under an
// RWMutex: a hit takes a read lock, looks the key up and checks the entry's
// deadline, and never waits for the shard's mailbox or allocates. Why not a
// cache library (otter v2 was weighed): the shard already serializes every
// write of a key, a library's expiry runs only when someone calls it or on a
// goroutine of its own (an idle coordinator must hold none), and its
// dependency would reach every consumer.
//
// Expiry: every result of one kind (a value, an error) lives for the same
// TTL, so entries expire in the order they were retained: each shard keeps
// one FIFO queue per kind (O(1) to add and to expire, no comparisons on the
// miss path) and one time.AfterFunc timer armed for the earliest deadline
// at the queues' heads; when it fires it posts a message, and the shard
// drops what has expired and arms the timer for the next. An entry removed
// early (replaced, forgotten, evicted) stays in its queue, marked, until it
// reaches the head. No goroutine exists between timer firings. A hit also checks the
// deadline itself, so a result is never served past its TTL even when the
// timer's message is late.
//
// Bound: the engine counts entries across shards; a shard that would go
// beyond WithMaxEntries evicts one of its own entries first, chosen by the
// CLOCK policy (second chance: a hit marks its entry, the hand clears marks
// and evicts the first unmarked entry), an approximation of least recently
// used that costs a hit one atomic load. A shard that holds no entry to
// evict does not retain the new result.

// RetainConfig is the configuration of retained results; the zero value
// retains nothing.
type RetainConfig struct {
	TTL          time.Duration // successful results; 0: not retained
	ErrorTTL     time.Duration // error results; 0: not retained
	RefreshAhead time.Duration // with TTL: refresh a result older than this on a hit; 0: never
	MaxEntries   int           // bound across shards; > 0 when TTL or ErrorTTL is set
	Stale        time.Duration // with TTL: keep a value this long past its TTL as stale (breaker.go); 0: not kept
}

func (r RetainConfig) enabled() bool { return r.TTL > 0 || r.ErrorTTL > 0 }

// entry is one retained result. It is immutable once published in the map,
// except for its two flags.
type entry[K comparable, V any] struct {
	key       K
	val       V
	err       error
	expires   time.Duration // since epoch
	refreshAt time.Duration // since epoch; 0: never refreshed ahead

	refreshing atomic.Bool // a refresh of it is running or posted (set by the hit that triggers it)
	used       atomic.Bool // CLOCK's reference mark, set by hits
	gone       bool        // removed from the map (owned by the shard)
}

// store is one shard's retained results.
type store[K comparable, V any] struct {
	mu      sync.RWMutex       // writers: the shard actor only
	entries map[K]*entry[K, V] // guarded by mu
	vals    fifo[K, V]         // values in deadline order, owned by the shard
	errs    fifo[K, V]         // errors in deadline order, owned by the shard
	clock   []*entry[K, V]     // CLOCK ring, owned by the shard
	hand    int                // CLOCK hand, owned by the shard
	timer   *time.Timer        // fires at the queues' earliest deadline; nil until first armed
	armedAt time.Duration      // deadline the timer is armed for, if armed
	armed   bool               // the timer is armed (owned by the shard)
	post    func(msg any)      // shard.postInternal
	count   *atomic.Int64      // the engine's entry count
	cfg     *RetainConfig
	stats   *fa.Stats // the shard's counters
	closed  bool      // set by the shard on Close
}

// expireMsg is what a store's timer posts to its shard.
type expireMsg struct{}

// refreshMsg is what a hit posts to start a refresh of e.
type refreshMsg[K comparable, V any] struct {
	e   *entry[K, V]
	ctx context.Context
	fn  func(context.Context) (V, error)
}

func newStore[K comparable, V any](cfg *RetainConfig, count *atomic.Int64, stats *fa.Stats, post func(any)) *store[K, V] {
	return &store[K, V]{entries: make(map[K]*entry[K, V]), cfg: cfg, count: count, stats: stats, post: post}
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

// own is lookup for the shard actor, the map's only writer: no lock, and
// the clock is read only when the key has an entry.
func (st *store[K, V]) own(key K) *entry[K, V] {
	e := st.entries[key]
	if e == nil || since() >= e.expires {
		return nil
	}
	e.used.Store(true)
	return e
}

// wantsRefresh reports whether a hit at now on e should start its refresh,
// and claims it (at most one refresh of an entry at a time).
func (e *entry[K, V]) wantsRefresh(now time.Duration) bool {
	return e.refreshAt != 0 && now >= e.refreshAt && e.refreshing.CompareAndSwap(false, true)
}

// keep retains val/err for key (shard actor only). It reports whether the
// result was retained.
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
	old := st.entries[key]
	slot := -1 // the CLOCK slot the new entry takes; -1: a new one at the end
	if old == nil && st.count.Load() >= int64(st.cfg.MaxEntries) {
		if slot = st.victim(); slot < 0 {
			return false
		}
	}
	e := &entry[K, V]{key: key, val: val, err: err, expires: addSat(now, ttl)}
	if err == nil && st.cfg.RefreshAhead > 0 {
		e.refreshAt = addSat(now, st.cfg.RefreshAhead)
	}
	st.mu.Lock()
	st.entries[key] = e
	st.mu.Unlock()
	if old != nil {
		st.drop(old)
	} else {
		st.count.Add(1)
		st.stats.Entries.Add(1)
	}
	if err == nil {
		st.vals.push(e)
	} else {
		st.errs.push(e)
	}
	switch {
	case old != nil:
		// The replaced entry's slot goes with it; the new one takes a new
		// slot, so that CLOCK sees it as recent.
		st.clock = append(st.clock, e)
	case slot >= 0:
		st.clock[slot] = e
		st.hand = slot + 1
	default:
		st.clock = append(st.clock, e)
	}
	st.arm()
	return true
}

// remove drops key's entry, if any (Forget; shard actor only).
func (st *store[K, V]) remove(key K) {
	if e := st.entries[key]; e != nil {
		st.unmap(e)
	}
}

// unmap takes e out of the map and the count; its queue and ring places
// are dropped lazily.
func (st *store[K, V]) unmap(e *entry[K, V]) {
	st.mu.Lock()
	delete(st.entries, e.key)
	st.mu.Unlock()
	st.drop(e)
	st.count.Add(-1)
	st.stats.Entries.Add(-1)
}

// drop marks e removed; its queue and ring places go lazily.
func (st *store[K, V]) drop(e *entry[K, V]) { e.gone = true }

// victim frees a CLOCK slot for a new entry and returns its index, or -1
// when the shard has no entry: the hand moves over the ring, reusing the
// slot of an entry removed otherwise, giving a marked entry a second chance
// (clearing its mark), and evicting the first unmarked one. It is O(1)
// amortized: each mark it clears was set by a hit.
func (st *store[K, V]) victim() int {
	for range 2*len(st.clock) + 1 {
		if len(st.clock) == 0 {
			return -1
		}
		if st.hand >= len(st.clock) {
			st.hand = 0
		}
		i := st.hand
		e := st.clock[i]
		if e.gone {
			return i
		}
		if e.used.Load() {
			e.used.Store(false)
			st.hand++
			continue
		}
		st.unmap(e)
		return i
	}
	return -1
}

// expire drops every entry whose deadline has passed and re-arms the timer
// (shard actor only).
func (st *store[K, V]) expire() {
	st.armed = false
	now := since()
	for _, q := range []*fifo[K, V]{&st.vals, &st.errs} {
		for e := q.head(); e != nil && (e.gone || st.dropAt(e) <= now); e = q.head() {
			q.pop()
			if !e.gone {
				st.unmap(e)
			}
		}
	}
	// Drop the ring's removed entries now and then, so that it does not
	// grow with churn between evictions.
	if len(st.clock) > 2*len(st.entries)+64 {
		live := st.clock[:0]
		for _, e := range st.clock {
			if !e.gone {
				live = append(live, e)
			}
		}
		clear(st.clock[len(live):])
		st.clock = live
		st.hand = 0
	}
	st.arm()
}

// arm makes the timer fire at the earliest deadline, if it is not armed for
// it already.
func (st *store[K, V]) arm() {
	if st.closed {
		return
	}
	var next time.Duration
	found := false
	for _, q := range []*fifo[K, V]{&st.vals, &st.errs} {
		if e := q.head(); e != nil && (!found || st.dropAt(e) < next) {
			next, found = st.dropAt(e), true
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
	for _, e := range st.entries {
		st.unmap(e)
	}
	st.vals, st.errs, st.clock = fifo[K, V]{}, fifo[K, V]{}, nil
}

// fifo is a queue of entries in the order they were retained (a ring that
// grows by doubling).
type fifo[K comparable, V any] struct {
	buf        []*entry[K, V]
	first, len int
}

func (q *fifo[K, V]) push(e *entry[K, V]) {
	if q.len == len(q.buf) {
		buf := make([]*entry[K, V], max(16, 2*len(q.buf)))
		for i := range q.len {
			buf[i] = q.buf[(q.first+i)%len(q.buf)]
		}
		q.buf, q.first = buf, 0
	}
	q.buf[(q.first+q.len)%len(q.buf)] = e
	q.len++
}

// head returns the oldest entry, nil if none.
func (q *fifo[K, V]) head() *entry[K, V] {
	if q.len == 0 {
		return nil
	}
	return q.buf[q.first]
}

func (q *fifo[K, V]) pop() {
	q.buf[q.first] = nil
	q.first = (q.first + 1) % len(q.buf)
	q.len--
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
