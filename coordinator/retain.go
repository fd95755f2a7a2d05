package coordinator

import (
	"context"
	"math/bits"
	"runtime"
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
// closed) is unlinked at once from the ring and from its expiry queue, its
// slot cleared and freed for the next result, so
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
//
// Stale values (WithStaleIfError, RetainConfig.Stale): a value's slot is
// dropped Stale after its TTL rather than at it (dropAt): the value queue's
// deadline is TTL+Stale, the same for every value, so the queue stays in
// deadline order; a hit still checks the TTL, so a stale value is never a
// hit. Until it is dropped it is an entry like any other: it counts in
// Stats.Entries and against WithMaxEntries (CLOCK may evict it), and a
// success replaces it, Forget and Close drop it. Only a failed flight of
// its key reads it (staleOf, on the shard actor), and a call that the key's
// open breaker refuses (peek, on the caller's goroutine; see breaker.go).

// RetainConfig is the configuration of retained results; the zero value
// retains nothing.
type RetainConfig struct {
	TTL          time.Duration // successful results; 0: not retained
	ErrorTTL     time.Duration // error results; 0: not retained
	RefreshAhead time.Duration // with TTL: refresh a result older than this on a hit; 0: never
	MaxEntries   int           // bound across shards; > 0 when TTL or ErrorTTL is set
	Stale        time.Duration // with TTL: keep a value this long past its TTL as stale (WithStaleIfError); 0: not kept
	// Retainable says which errors ErrorTTL may retain, beyond what the key
	// actor already refuses (see actor.Env.Retain); nil: every such error.
	Retainable func(error) bool
}

func (r RetainConfig) enabled() bool { return r.TTL > 0 || r.ErrorTTL > 0 }

// A retained result lives in a slot of its store's slab: chunks of slots
// that double in size (16, 32, 64, ... slots), reused through a free list,
// linked by int32 indexes rather than pointers. With keys and values free
// of pointers (ints, say) the slab and the store's map (K to a slot index)
// hold no pointer at all, so the garbage collector does not scan the
// retained results, and a miss that retains a result allocates nothing for
// it: a live store of 100,000 results no longer makes every other
// allocation's collections longer. Errors, which are interfaces, live in a
// side map of their store.

// none is the index of no slot.
const none = -1

// slot is one retained result. Every field but flags is written under its
// store's write lock and read by hits under its read lock: a slot is reused
// only after its index left the map.
type slot[K comparable, V any] struct {
	key       K
	val       V
	expires   time.Duration // since epoch
	refreshAt time.Duration // since epoch; 0: never refreshed ahead

	prev, next   int32  // the store's CLOCK ring
	older, newer int32  // the store's expiry queue of its kind (older: not kept up to date at the queue's head)
	store        int32  // the store that holds it; none: free
	gen          uint32 // names the result the slot holds: unique across reuses within its store
	isErr        bool   // the result is an error, in its store's errs

	// flags holds CLOCK's reference mark (flagUsed, set by hits, cleared by
	// the hand) and the refresh claim (flagRefreshing), in one word so that
	// a new result resets both with one store. The claim is taken by the
	// hit that starts the slot's refresh and never released once the
	// refresh has run: each retained result is refreshed at most once (a
	// failed refresh is not retried on every hit; the result is served
	// until its TTL). It is released only when no refresh started (see
	// shard.refresh).
	flags atomic.Uint32
}

const (
	flagUsed       = 1 << iota // CLOCK's reference mark
	flagRefreshing             // the result's refresh is claimed
)

// mark sets e's CLOCK reference mark, unless it is set already (a load
// then, not a write: hits on a hot result do not bounce its cache line).
func (e *slot[K, V]) mark() {
	if e.flags.Load()&flagUsed == 0 {
		e.flags.Or(flagUsed)
	}
}

// claim takes e's refresh claim; false if it is taken already.
func (e *slot[K, V]) claim() bool {
	for {
		f := e.flags.Load()
		if f&flagRefreshing != 0 {
			return false
		}
		if e.flags.CompareAndSwap(f, f|flagRefreshing) {
			return true
		}
	}
}

// policy is what the stores of one coordinator share: the bound and the
// entry count. Everything else (slab, ring, queues, map) is its store's.
type policy[K comparable, V any] struct {
	// count is the number of results retained across stores, plus the
	// places that keeps in progress have taken and not filled yet: it
	// grows only below max (CAS, reserve), an eviction leaves it as it is
	// (the new result takes the evicted one's place), and a removal
	// lowers it. Read by Stats.
	count  atomic.Int64
	max    int64
	mu     sync.Mutex     // guards appends to stores (construction)
	stores []*store[K, V] // by index; not changed once the coordinator runs
}

func newPolicy[K comparable, V any](max int) *policy[K, V] {
	max = min(max, 1<<31-2) // slot indexes are int32 (2^31 results would not fit in memory anyway)
	return &policy[K, V]{max: int64(max)}
}

// reserve takes a place for a new result if the count is below the bound.
func (p *policy[K, V]) reserve() bool {
	for {
		n := p.count.Load()
		if n >= p.max {
			return false
		}
		if p.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// local reports whether a store at the bound evicts one of its own results
// (CLOCK over its own ring) rather than the oldest of every store's CLOCK
// candidates: when the bound gives each store at least localMin results, so
// that hashing spreads them evenly enough for one store's oldest to be
// about as old as any. Below it, a store may hold none or one, and its
// own would often be far from the oldest.
func (p *policy[K, V]) local() bool { return p.max >= localMin*int64(len(p.stores)) }

// localMin is the share of the bound per store from which eviction is local.
const localMin = 64

// evictOldest evicts the oldest of the stores' CLOCK candidates (each
// store's hand gives its marked entries their second chance first), so that
// a new result takes its place. It takes one store's lock at a time (the
// caller holds none), and reports false if no store held a result, which
// happens only while other keeps hold places they have not filled yet.
func (p *policy[K, V]) evictOldest() bool {
	var best *store[K, V]
	var bestAt time.Duration
	for _, st := range p.stores {
		if st.n.Load() == 0 {
			continue
		}
		st.mu.Lock()
		if v := st.victim(); v != none {
			if at := st.retainedAt(st.slot(v)); best == nil || at < bestAt {
				best, bestAt = st, at
			}
		}
		st.mu.Unlock()
	}
	if best == nil {
		return false
	}
	best.mu.Lock()
	v := best.victim()
	if v != none {
		best.evict(v)
	}
	best.mu.Unlock()
	return v != none
}

// retainedAt is when the result in e was retained (or last replaced).
func (st *store[K, V]) retainedAt(e *slot[K, V]) time.Duration {
	if e.isErr {
		return e.expires - st.cfg.ErrorTTL
	}
	return e.expires - st.cfg.TTL
}

// minShift is log2 of the first chunk's length.
const minShift = 4

// slot returns slot i (the caller holds the store's lock, read or write).
func (st *store[K, V]) slot(i int32) *slot[K, V] {
	j := uint32(i) + 1<<minShift
	c := bits.Len32(j) - 1 - minShift
	return &st.chunks[c][j-1<<(c+minShift)]
}

// holds reports whether slot i exists (the slab may have been dropped since
// a refresh message named it). The caller holds the store's lock.
func (st *store[K, V]) holds(i int32) bool { return i >= 0 && i < st.made }

// alloc returns a free slot's index (the caller holds the write lock).
func (st *store[K, V]) alloc() int32 {
	if n := len(st.free); n > 0 {
		i := st.free[n-1]
		st.free = st.free[:n-1]
		return i
	}
	i := st.made
	j := uint32(i) + 1<<minShift
	if c := bits.Len32(j) - 1 - minShift; st.chunks[c] == nil {
		st.chunks[c] = make([]slot[K, V], 1<<(c+minShift))
	}
	st.made++
	return i
}

// link puts slot i on the ring just behind the hand, so that it is the last
// entry the hand reaches.
func (st *store[K, V]) link(i int32) {
	e := st.slot(i)
	if st.hand == none {
		e.prev, e.next, st.hand = i, i, i
		return
	}
	h := st.slot(st.hand)
	e.next, e.prev = st.hand, h.prev
	st.slot(h.prev).next = i
	h.prev = i
}

func (st *store[K, V]) unlink(i int32) {
	e := st.slot(i)
	if e.next == i {
		st.hand = none
	} else {
		if st.hand == i {
			st.hand = e.next
		}
		st.slot(e.prev).next, st.slot(e.next).prev = e.next, e.prev
	}
	e.prev, e.next = none, none
}

// victim returns the slot CLOCK evicts, none if the store holds none: the
// hand gives a marked entry a second chance (clearing its mark) and stops
// at the first unmarked one. It is O(1) amortized: each mark it clears was
// set by a hit. After two turns (hits racing with it may re-mark entries)
// it takes the entry under the hand. The caller holds the write lock.
func (st *store[K, V]) victim() int32 {
	for range 2*len(st.entries) + 1 {
		if st.hand == none {
			return none
		}
		e := st.slot(st.hand)
		if e.flags.Load()&flagUsed == 0 {
			return st.hand
		}
		e.flags.And(^uint32(flagUsed))
		st.hand = e.next
	}
	return st.hand
}

// evict takes slot i out of the map, the ring and its queue, and frees it,
// leaving the count as it is: for a result that takes its place. The
// caller holds the write lock.
func (st *store[K, V]) evict(i int32) {
	e := st.slot(i)
	delete(st.entries, e.key)
	if e.isErr {
		delete(st.errs, i)
	}
	st.unlink(i)
	st.unqueue(st.queue(e.isErr), i)
	st.clear(e)
	st.free = append(st.free, i)
	st.n.Add(-1)
}

// clear empties a slot that leaves the store: a slot never keeps what its
// key and value pointed to.
func (st *store[K, V]) clear(e *slot[K, V]) {
	var zk K
	var zv V
	e.key, e.val, e.store, e.isErr = zk, zv, none, false
}

// removeSlot takes slot i out of the store and the count (the caller holds
// the write lock). When the store is left empty, its slab is dropped: memory
// returns once every result has expired (an idle coordinator holds no
// per-key memory).
func (st *store[K, V]) removeSlot(i int32) {
	st.evict(i)
	st.pol.count.Add(-1)
	if len(st.entries) == 0 {
		st.drop()
	}
}

// drop releases the slab of a store that holds no result (write lock).
func (st *store[K, V]) drop() {
	st.chunks = [len(st.chunks)][]slot[K, V]{}
	st.made, st.free, st.hand = 0, nil, none
	st.vals, st.errq = queue{none, none}, queue{none, none}
}

// store is one shard's retained results, with its own slab, CLOCK ring and
// expiry queues: its shard writes them under the write lock, hits read
// under the read lock. The only writer from outside is another store's
// keep that evicts one of its results (evictOther), under the same lock.
type store[K comparable, V any] struct {
	pol *policy[K, V]
	id  int32
	// mu guards every field up to n, and the slots' contents.
	mu      sync.RWMutex
	entries map[K]int32     // slot of each key
	errs    map[int32]error // error of each error slot
	chunks  [32 - minShift][]slot[K, V]
	made    int32        // slots made so far (the next fresh index)
	free    []int32      // freed slots
	gen     uint32       // the generation the next slot filled gets
	hand    int32        // the CLOCK hand; none: no entry
	vals    queue        // value slots in deadline order
	errq    queue        // error slots in deadline order
	n       atomic.Int32 // len(entries), for evictOther to skip empty stores without locking

	timer   *time.Timer   // fires at the queues' earliest deadline; nil until first armed
	armedAt time.Duration // deadline the timer is armed for, if armed
	armed   bool          // the timer is armed (owned by the shard)
	post    func(msg any) // shard.postInternal
	cfg     *RetainConfig
	closed  bool // set by the shard on Close (owned by the shard)
}

// expireMsg is what a store's timer posts to its shard.
type expireMsg struct{}

// refreshMsg is what a hit posts to start a refresh of the result in slot
// i, generation gen (a slot reused since names another result).
type refreshMsg[K comparable, V any] struct {
	i   int32
	gen uint32
	ctx context.Context
	fn  func(context.Context) (V, error)
}

func newStore[K comparable, V any](cfg *RetainConfig, pol *policy[K, V], post func(any)) *store[K, V] {
	st := &store[K, V]{entries: make(map[K]int32), errs: make(map[int32]error), cfg: cfg, pol: pol, post: post,
		hand: none, vals: queue{none, none}, errq: queue{none, none}}
	pol.mu.Lock()
	st.id = int32(len(pol.stores))
	pol.stores = append(pol.stores, st)
	pol.mu.Unlock()
	return st
}

func (st *store[K, V]) queue(isErr bool) *queue {
	if isErr {
		return &st.errq
	}
	return &st.vals
}

// hitResult is what a look-up found: a copy, taken under the store's read
// lock (the slot may be reused once the lock is released).
type hitResult[V any] struct {
	val     V
	err     error
	refresh bool // the hit claimed the result's refresh (WithRefreshAhead)
	i       int32
	gen     uint32
}

// find returns key's result if it holds one still valid now, and, if claim
// is set, claims its refresh if it is due (at most one refresh of a result,
// ever). It reads the clock only when key has an entry: a miss costs the
// read lock and the map look-up alone. Any goroutine may call it.
func (st *store[K, V]) find(key K, claim bool) (h hitResult[V], ok bool) {
	st.mu.RLock()
	i, found := st.entries[key]
	if found {
		e := st.slot(i)
		now := since()
		if ok = now < e.expires; ok {
			h.val, h.i, h.gen = e.val, i, e.gen
			if e.isErr {
				h.err = st.errs[i]
			}
			e.mark()
			h.refresh = claim && e.refreshAt != 0 && now >= e.refreshAt && e.claim()
		}
	}
	st.mu.RUnlock()
	return h, ok
}

// unclaim releases a refresh claim that started no refresh (shard actor
// only), unless the slot holds another result by now.
func (st *store[K, V]) unclaim(i int32, gen uint32) {
	st.mu.RLock()
	if st.holds(i) {
		if e := st.slot(i); e.gen == gen && e.store == st.id {
			e.flags.And(^uint32(flagRefreshing))
		}
	}
	st.mu.RUnlock()
}

// current reports whether slot i still holds the result of generation gen
// (shard actor only), and its key.
func (st *store[K, V]) current(i int32, gen uint32) (key K, ok bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if !st.holds(i) {
		return key, false
	}
	e := st.slot(i)
	return e.key, e.gen == gen && e.store == st.id
}

// held names one retained result: its slot's index and generation, packed
// into one word so that a breaker state can keep it in an atomic (0:
// none). A slot reused for another result has another generation, so a
// name never matches a result it was not made for.
type held uint64

func nameOf(i int32, gen uint32) held { return held(uint64(i+1)<<32 | uint64(gen)) }

// dropAt is when the result in e leaves the store: at its TTL, or for a
// value with WithStaleIfError, Stale after it.
func (st *store[K, V]) dropAt(e *slot[K, V]) time.Duration {
	if !e.isErr && st.cfg.Stale > 0 {
		return addSat(e.expires, st.cfg.Stale)
	}
	return e.expires
}

// name returns the name of key's retained result (fresh, or a value in its
// stale window), 0 if the store holds none. Any goroutine (the read lock:
// another shard's eviction may write this store's map).
func (st *store[K, V]) name(key K) held {
	st.mu.RLock()
	defer st.mu.RUnlock()
	i, ok := st.entries[key]
	if !ok {
		return 0
	}
	return nameOf(i, st.slot(i).gen)
}

// staleOf returns key's retained value while the store holds it, within its
// TTL (fresh) or in its stale window, for a failed flight of key to answer
// with (WithStaleIfError); a retained error is no stale value. Any
// goroutine (read lock); it returns a copy.
func (st *store[K, V]) staleOf(key K, now time.Duration) (val V, fresh, ok bool) {
	st.mu.RLock()
	if i, found := st.entries[key]; found {
		if e := st.slot(i); !e.isErr && now < st.dropAt(e) {
			val, fresh, ok = e.val, now < e.expires, true
		}
	}
	st.mu.RUnlock()
	return val, fresh, ok
}

// peek returns the result h names, for a call that key's open breaker
// refuses, if key's entry still holds that result at now: fresh (within its
// TTL: a hit, marked for CLOCK as a hit is) or stale (a value in its stale
// window). Any goroutine. It reads the slot under the read lock and only
// while key's map entry names it with h's generation: never a slot freed or
// reused for another result since the breaker named it.
func (st *store[K, V]) peek(key K, h held, now time.Duration) (val V, err error, fresh, stale bool) {
	st.mu.RLock()
	if i, found := st.entries[key]; found {
		if e := st.slot(i); nameOf(i, e.gen) == h {
			switch {
			case now < e.expires:
				val, fresh = e.val, true
				if e.isErr {
					err = st.errs[i]
				}
				e.mark()
			case !e.isErr && now < st.dropAt(e):
				val, stale = e.val, true
			}
		}
	}
	st.mu.RUnlock()
	return val, err, fresh, stale
}

// keep retains val/err for key (shard actor only). It returns the name of
// the retained result, 0 if it was not retained: it always is, when its
// kind has a TTL and the store is open (at WithMaxEntries, CLOCK evicts
// another result first: one of this store's, or another store's when this
// one holds none).
func (st *store[K, V]) keep(key K, val V, err error) held {
	if st.closed {
		return 0
	}
	ttl := st.cfg.TTL
	if err != nil {
		ttl = st.cfg.ErrorTTL
	}
	if ttl <= 0 {
		return 0
	}
	now := since()
	p := st.pol
	st.mu.Lock()
	old, replace := st.entries[key]
	if !replace && !p.reserve() {
		v := int32(none)
		if p.local() {
			v = st.victim()
		}
		if v != none {
			st.evict(v) // the new result takes its place in the count
		} else {
			// Take the place of the oldest result of any store. Only this
			// shard adds to this store, so key is still absent after.
			st.mu.Unlock()
			for !p.evictOldest() && !p.reserve() {
				runtime.Gosched() // the places are all taken by keeps about to fill them
			}
			st.mu.Lock()
		}
	}
	i := st.alloc()
	e := st.slot(i)
	e.gen = st.gen
	st.gen++
	e.key, e.val, e.expires, e.refreshAt = key, val, addSat(now, ttl), 0
	if err == nil && st.cfg.RefreshAhead > 0 {
		e.refreshAt = addSat(now, st.cfg.RefreshAhead)
	}
	e.store, e.isErr = st.id, err != nil
	e.flags.Store(0)
	st.entries[key] = i
	if replace {
		o := st.slot(old)
		if o.isErr {
			delete(st.errs, old)
		}
		st.unlink(old)
		st.unqueue(st.queue(o.isErr), old)
		st.clear(o)
		st.free = append(st.free, old)
	} else {
		st.n.Add(1)
	}
	if err != nil {
		st.errs[i] = err
	}
	st.link(i)
	st.push(st.queue(e.isErr), i)
	h := nameOf(i, e.gen)
	d := st.dropAt(e)
	st.mu.Unlock()
	st.armFor(d)
	return h
}

// remove drops key's entry, if any (Forget; shard actor only).
func (st *store[K, V]) remove(key K) {
	st.mu.Lock()
	if i, ok := st.entries[key]; ok {
		st.removeSlot(i)
	}
	st.mu.Unlock()
}

// expire drops every entry whose deadline has passed and re-arms the timer
// (shard actor only).
func (st *store[K, V]) expire() {
	st.armed = false
	now := since()
	st.mu.Lock()
	for _, q := range [...]*queue{&st.vals, &st.errq} {
		for i := q.head; i != none && st.dropAt(st.slot(i)) <= now; i = q.head {
			st.removeSlot(i)
		}
	}
	st.arm()
	st.mu.Unlock()
}

// arm makes the timer fire at the earliest deadline, if it is not armed for
// it already. The caller holds the lock (the queues' heads).
func (st *store[K, V]) arm() {
	if st.closed {
		return
	}
	var next time.Duration
	found := false
	for _, q := range [...]*queue{&st.vals, &st.errq} {
		if q.head != none {
			if d := st.dropAt(st.slot(q.head)); !found || d < next {
				next, found = d, true
			}
		}
	}
	if found {
		st.armFor(next)
	}
}

// armFor makes the timer fire at next at the latest (shard actor only). A
// new result needs no more: the queues' heads are no later than it within
// its kind, and a head that has left since the timer was armed only makes
// it fire early, when expire arms it again. So keep reads no other slot
// than its own (an expiry queue's head is the coldest slot of its store).
func (st *store[K, V]) armFor(next time.Duration) {
	if st.closed || (st.armed && st.armedAt <= next) {
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

// close drops every entry, the slab with them, and stops the timer (shard
// actor only).
func (st *store[K, V]) close() {
	st.closed = true
	if st.timer != nil {
		st.timer.Stop()
	}
	st.mu.Lock()
	n := int64(len(st.entries))
	clear(st.entries)
	clear(st.errs)
	st.drop()
	st.n.Store(0)
	st.mu.Unlock()
	st.pol.count.Add(-n)
}

// queue is a store's slots of one kind in the order they were retained,
// which is their deadline order: a doubly linked list through the slots.
type queue struct{ head, tail int32 }

// push appends slot i to q (the caller holds the write lock).
func (st *store[K, V]) push(q *queue, i int32) {
	e := st.slot(i)
	e.older, e.newer = q.tail, none
	if q.tail != none {
		st.slot(q.tail).newer = i
	} else {
		q.head = i
	}
	q.tail = i
}

// unqueue takes slot i out of q (the caller holds the write lock). Taking out the
// head, which is what expiry and CLOCK's eviction of the oldest result do,
// touches no other slot: the head's older link is never read, so it is
// left pointing at the slot taken out before it. Every other slot's older
// link is valid, since a slot once at the head stays there until it leaves.
func (st *store[K, V]) unqueue(q *queue, i int32) {
	e := st.slot(i)
	if q.head == i {
		q.head = e.newer
		if e.newer == none {
			q.tail = none
		}
	} else {
		st.slot(e.older).newer = e.newer
		if e.newer != none {
			st.slot(e.newer).older = e.older
		} else {
			q.tail = e.older
		}
	}
	e.older, e.newer = none, none
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
