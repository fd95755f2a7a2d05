package coordinator

import (
	"container/heap"
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
// Expiry: each shard keeps its entries in a heap by deadline and one
// time.AfterFunc timer armed for the earliest; when it fires it posts a
// message, and the shard drops what has expired and arms the timer for the
// next. No goroutine exists between timer firings. A hit also checks the
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
	hidx       int         // index in the shard's heap (owned by the shard)
}

// store is one shard's retained results.
type store[K comparable, V any] struct {
	mu      sync.RWMutex       // writers: the shard actor only
	entries map[K]*entry[K, V] // guarded by mu
	byTime  entryHeap[K, V]    // owned by the shard
	clock   []*entry[K, V]     // CLOCK ring, owned by the shard
	hand    int                // CLOCK hand, owned by the shard
	timer   *time.Timer        // fires at byTime's earliest deadline; nil until first armed
	armedAt time.Duration      // deadline the timer is armed for; 0: not armed
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
	if old == nil && st.count.Load() >= int64(st.cfg.MaxEntries) && !st.evictOne() {
		return false
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
	heap.Push(&st.byTime, e)
	st.clock = append(st.clock, e)
	st.arm()
	return true
}

// remove drops key's entry, if any (Forget; shard actor only).
func (st *store[K, V]) remove(key K) {
	if e := st.entries[key]; e != nil {
		st.unmap(e)
	}
}

// unmap takes e out of the map and the count; its heap and ring places are
// dropped lazily.
func (st *store[K, V]) unmap(e *entry[K, V]) {
	st.mu.Lock()
	delete(st.entries, e.key)
	st.mu.Unlock()
	st.drop(e)
	st.count.Add(-1)
	st.stats.Entries.Add(-1)
}

// drop marks e removed and takes it off the heap.
func (st *store[K, V]) drop(e *entry[K, V]) {
	e.gone = true
	if e.hidx >= 0 && e.hidx < len(st.byTime) && st.byTime[e.hidx] == e {
		heap.Remove(&st.byTime, e.hidx)
	}
}

// evictOne evicts one entry of this shard by CLOCK and reports whether it
// did.
func (st *store[K, V]) evictOne() bool {
	for range 2*len(st.clock) + 1 {
		if len(st.clock) == 0 {
			return false
		}
		if st.hand >= len(st.clock) {
			st.hand = 0
		}
		e := st.clock[st.hand]
		if e.gone { // removed otherwise: close the gap
			last := len(st.clock) - 1
			st.clock[st.hand] = st.clock[last]
			st.clock[last] = nil
			st.clock = st.clock[:last]
			continue
		}
		if e.used.Load() {
			e.used.Store(false)
			st.hand++
			continue
		}
		st.unmap(e)
		return true
	}
	return false
}

// expire drops every entry whose deadline has passed and re-arms the timer
// (shard actor only).
func (st *store[K, V]) expire() {
	st.armedAt = 0
	now := since()
	for len(st.byTime) > 0 && st.byTime[0].expires <= now {
		e := st.byTime[0]
		if st.entries[e.key] == e {
			st.unmap(e) // takes it off the heap too
		} else {
			heap.Pop(&st.byTime)
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
	if st.closed || len(st.byTime) == 0 {
		return
	}
	next := st.byTime[0].expires
	if st.armedAt != 0 && st.armedAt <= next {
		return
	}
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
	st.byTime, st.clock = nil, nil
}

// entryHeap orders entries by deadline.
type entryHeap[K comparable, V any] []*entry[K, V]

func (h entryHeap[K, V]) Len() int           { return len(h) }
func (h entryHeap[K, V]) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h entryHeap[K, V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *entryHeap[K, V]) Push(x any) {
	e := x.(*entry[K, V])
	e.hidx = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap[K, V]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.hidx = -1
	*h = old[:len(old)-1]
	return e
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
