package coordinator

import (
	"context"
	"math/bits"
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
// A miss's cost: the caller's look-up (the read lock and one probe of the
// map; the clock is read only when the key has an entry), the shard's
// second look-up when the join arrives (the result may have been retained
// since), and keep: the policy's mutex, a probe for a result to replace,
// the insert under the store's write lock and, at the bound, the victim's
// delete from its store's map, the one access to memory the miss has not
// touched already. keep reads no other slot than the victim's (the slot it
// reuses), its ring neighbours and its store's queue tail: taking a queue's
// head out leaves the next slot alone, and the timer is armed from the new
// slot's own deadline. A policy per store (its own slab, ring and lock, an
// atomic count across stores) was measured against the one mutex and gave
// no clear gain on two cores; the shared mutex is held for well under a
// microsecond per retained result.
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

// A retained result lives in a slot of its coordinator's slab: chunks of
// slots (policy.locate gives their lengths), reused through a free list,
// linked by int32 indexes rather than pointers. With keys and values free
// of pointers (ints, say) the slab and the stores' maps (K to a slot
// index) hold no pointer at all, so the garbage collector does not scan
// the retained results, and a miss that retains a result allocates nothing
// for it: a live store of 100,000 results no longer makes every other
// allocation's collections longer. Errors, which are interfaces, live in a
// side map of their store.

// none is the index of no slot.
const none = -1

// slot is one retained result. key, val, the deadlines and the links are
// written under the policy's mutex before the slot's index is published in
// a store's map (under that store's write lock) and read by hits under the
// store's read lock: a slot is reused only after its index left the map.
type slot[K comparable, V any] struct {
	key       K
	val       V
	expires   time.Duration // since epoch
	refreshAt time.Duration // since epoch; 0: never refreshed ahead

	prev, next   int32  // the policy's CLOCK ring
	older, newer int32  // its store's expiry queue of its kind (older: not kept up to date at the queue's head)
	store        int32  // the store whose map holds it; none: free
	gen          uint32 // names the result the slot holds: unique across reuses
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

// policy is what the stores of one coordinator share: the slab, the entry
// count, the CLOCK ring over all their entries, and the mutex that guards
// the slab's allocation, the ring, every store's expiry queues and every
// write to a store's map. A shard takes it to retain, remove or expire a
// result; a hit never does.
type policy[K comparable, V any] struct {
	mu sync.Mutex
	// dir is the slab's chunk directory: written under mu (a new chunk is
	// made before any of its indexes is published in a map; a full
	// directory is copied into a longer one), read by hits with one atomic
	// load. A directory once published never changes in the entries that
	// hits may read.
	dir    atomic.Pointer[[]*[]slot[K, V]]
	shift  uint           // log2 of the chunk length
	grown  int            // chunks that grow to it (see locate); 0: none
	fixed  uint32         // the first index in a chunk of the chunk length
	made   int32          // slots made so far (the next fresh index)
	gen    uint32         // the generation the next allocated slot gets
	free   []int32        // freed slots
	hand   int32          // the CLOCK hand; none: no entry
	count  atomic.Int64   // entries across stores; written under mu, read by Stats
	max    int64          // WithMaxEntries
	stores []*store[K, V] // by index
}

func newPolicy[K comparable, V any](max int) *policy[K, V] {
	p := new(policy[K, V])
	p.init(max)
	return p
}

// init makes p a policy of at most max entries, with no store.
func (p *policy[K, V]) init(max int) {
	max = min(max, 1<<31-2) // slot indexes are int32 (2^31 results would not fit in memory anyway)
	shift := uint(0)
	for 1<<shift < max && shift < 10 { // chunks of up to 1,024 slots
		shift++
	}
	p.max, p.shift, p.hand = int64(max), shift, none
	if shift > firstChunkShift {
		p.grown, p.fixed = int(shift-firstChunkShift)+1, 1<<shift
	}
}

// firstChunkShift is log2 of the first chunk's length.
const firstChunkShift = 4

// locate returns the chunk of slot i and i's place in it. The first chunks
// grow to the chunk length (1<<shift): 16 slots, then 16, 32, 64, … so
// that indexes below 1<<shift fill chunks of 16·2^(c−1) for c ≥ 1; from
// index fixed on, every chunk has the chunk length. A Batcher made for one
// request with WithTTL keeps a few dozen results: with one chunk of 1,024
// slots from the first result on, that chunk (about 100 KiB for a
// two-string value) was most of what the request allocated.
func (p *policy[K, V]) locate(i int32) (c int, off uint32) {
	u := uint32(i)
	if u >= p.fixed {
		u -= p.fixed
		return p.grown + int(u>>p.shift), u & (1<<p.shift - 1)
	}
	if c = bits.Len32(u >> firstChunkShift); c == 0 {
		return 0, u
	}
	return c, u - 1<<(firstChunkShift+c-1)
}

// chunkLen is the length of chunk c.
func (p *policy[K, V]) chunkLen(c int) int {
	switch {
	case c >= p.grown:
		return 1 << p.shift
	case c == 0:
		return 1 << firstChunkShift
	}
	return 1 << (firstChunkShift + c - 1)
}

func (p *policy[K, V]) slot(i int32) *slot[K, V] {
	c, off := p.locate(i)
	return &(*(*p.dir.Load())[c])[off]
}

// holds reports whether slot i exists (the slab may have been dropped since
// a refresh message named it). The caller holds mu.
func (p *policy[K, V]) holds(i int32) bool {
	d := p.dir.Load()
	c, _ := p.locate(i)
	return d != nil && c < len(*d) && (*d)[c] != nil
}

// alloc returns a free slot's index (the caller holds mu; at most max+1
// slots are in use: a replaced result's slot is freed only after its
// successor's is filled, since hits may be reading the old one).
func (p *policy[K, V]) alloc() int32 {
	if n := len(p.free); n > 0 {
		i := p.free[n-1]
		p.free = p.free[:n-1]
		return i
	}
	i := p.made
	c, _ := p.locate(i)
	d := p.dir.Load()
	if d == nil || c >= len(*d) {
		grown := make([]*[]slot[K, V], max(4, 2*c))
		if d != nil {
			copy(grown, *d)
		}
		p.dir.Store(&grown)
		d = &grown
	}
	if (*d)[c] == nil {
		chunk := make([]slot[K, V], p.chunkLen(c))
		(*d)[c] = &chunk
	}
	p.made++
	return i
}

// link puts slot i on the ring just behind the hand, so that it is the last
// entry the hand reaches.
func (p *policy[K, V]) link(i int32) {
	e := p.slot(i)
	if p.hand == none {
		e.prev, e.next, p.hand = i, i, i
		return
	}
	h := p.slot(p.hand)
	e.next, e.prev = p.hand, h.prev
	p.slot(h.prev).next = i
	h.prev = i
}

func (p *policy[K, V]) unlink(i int32) {
	e := p.slot(i)
	if e.next == i {
		p.hand = none
	} else {
		if p.hand == i {
			p.hand = e.next
		}
		p.slot(e.prev).next, p.slot(e.next).prev = e.next, e.prev
	}
	e.prev, e.next = none, none
}

// victim returns the slot CLOCK evicts, none if there is none: the hand
// gives a marked entry a second chance (clearing its mark) and stops at the
// first unmarked one. It is O(1) amortized: each mark it clears was set by a
// hit. After two turns (hits racing with it may re-mark entries) it takes
// the entry under the hand.
func (p *policy[K, V]) victim() int32 {
	for range 2*p.count.Load() + 1 {
		if p.hand == none {
			return none
		}
		e := p.slot(p.hand)
		if e.flags.Load()&flagUsed == 0 {
			return p.hand
		}
		e.flags.And(^uint32(flagUsed))
		p.hand = e.next
	}
	return p.hand
}

// evict takes slot i out of its store's map, the ring and its queue, and
// frees it, leaving the count as it is: for a result that takes its place.
// The caller holds p.mu.
func (p *policy[K, V]) evict(i int32) {
	e := p.slot(i)
	st := p.stores[e.store]
	st.mu.Lock()
	delete(st.entries, e.key)
	if e.isErr {
		delete(st.errs, i)
	}
	st.mu.Unlock()
	p.release(i)
}

// remove takes slot i out of its store's map, the ring, its queue and the
// count, and frees it. The caller holds p.mu.
func (p *policy[K, V]) remove(i int32) {
	p.evict(i)
	if p.count.Add(-1) == 0 {
		// No entry left: drop the slab, so that memory returns once every
		// result has expired (an idle coordinator holds no per-key memory).
		p.dir.Store(nil)
		p.made, p.free = 0, nil
	}
}

// release unlinks slot i from the ring and its queue and frees it; the
// caller holds p.mu and has taken it out of its map (or replaced it there).
// Its key and value are cleared, so that a slot never keeps what they
// point to. When no entry is left, the slab itself is dropped: memory
// returns once every result has expired.
func (p *policy[K, V]) release(i int32) {
	e := p.slot(i)
	p.unlink(i)
	p.unqueue(p.stores[e.store].queue(e.isErr), i)
	var zk K
	var zv V
	e.key, e.val, e.store, e.isErr = zk, zv, none, false
	p.free = append(p.free, i)
}

// store is one shard's retained results.
type store[K comparable, V any] struct {
	pol     *policy[K, V]
	id      int32
	mu      sync.RWMutex    // guards entries and errs; writers also hold pol.mu
	entries map[K]int32     // slot of each key
	errs    map[int32]error // error of each error slot
	vals    queue           // value slots in deadline order, under pol.mu
	errq    queue           // error slots in deadline order, under pol.mu
	timer   *time.Timer     // fires at the queues' earliest deadline; nil until first armed
	armedAt time.Duration   // deadline the timer is armed for, if armed
	armed   bool            // the timer is armed (owned by the shard)
	shard   int             // the shard it belongs to, for postTo
	postTo  func(int, any)  // posts to a shard's actor (the shard's internal post)
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

// newStore returns a store of pol whose timer's messages go to post.
func newStore[K comparable, V any](cfg *RetainConfig, pol *policy[K, V], post func(any)) *store[K, V] {
	st := new(store[K, V])
	st.init(cfg, pol, 0, func(_ int, msg any) { post(msg) })
	return st
}

// init makes st a store of pol for shard, whose timer's messages go to
// post(shard, msg). Its maps are made by its first keep: a store that
// never retains anything (a Batcher made for a request that loads no
// key twice) costs no allocation of its own.
func (st *store[K, V]) init(cfg *RetainConfig, pol *policy[K, V], shard int, post func(int, any)) {
	st.cfg, st.pol, st.shard, st.postTo = cfg, pol, shard, post
	st.vals, st.errq = queue{none, none}, queue{none, none}
	pol.mu.Lock()
	st.id = int32(len(pol.stores))
	pol.stores = append(pol.stores, st)
	pol.mu.Unlock()
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
		e := st.pol.slot(i)
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
	p := st.pol
	p.mu.Lock()
	if p.holds(i) {
		if e := p.slot(i); e.gen == gen && e.store == st.id {
			e.flags.And(^uint32(flagRefreshing))
		}
	}
	p.mu.Unlock()
}

// current reports whether slot i still holds the result of generation gen
// in this store (shard actor only), and its key.
func (st *store[K, V]) current(i int32, gen uint32) (key K, ok bool) {
	p := st.pol
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.holds(i) {
		return key, false
	}
	e := p.slot(i)
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
	return nameOf(i, st.pol.slot(i).gen)
}

// staleOf returns key's retained value while the store holds it, within its
// TTL (fresh) or in its stale window, for a failed flight of key to answer
// with (WithStaleIfError); a retained error is no stale value. Any
// goroutine (read lock); it returns a copy.
func (st *store[K, V]) staleOf(key K, now time.Duration) (val V, fresh, ok bool) {
	st.mu.RLock()
	if i, found := st.entries[key]; found {
		if e := st.pol.slot(i); !e.isErr && now < st.dropAt(e) {
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
		if e := st.pol.slot(i); nameOf(i, e.gen) == h {
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
// kind has a TTL and the store is open (beyond WithMaxEntries, CLOCK evicts
// another result first).
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
	p.mu.Lock()
	old, replace := st.entries[key] // every writer of the map holds p.mu
	evicted := false
	if !replace && p.count.Load() >= p.max {
		if v := p.victim(); v != none {
			p.evict(v) // the new result takes its place in the count
			evicted = true
		}
	}
	i := p.alloc()
	e := p.slot(i)
	e.gen = p.gen
	p.gen++
	e.key, e.val, e.expires, e.refreshAt = key, val, addSat(now, ttl), 0
	if err == nil && st.cfg.RefreshAhead > 0 {
		e.refreshAt = addSat(now, st.cfg.RefreshAhead)
	}
	e.store, e.isErr = st.id, err != nil
	if e.flags.Load() != 0 { // a load, not a write, for the usual unmarked victim's slot
		e.flags.Store(0)
	}
	st.mu.Lock()
	if st.entries == nil {
		st.entries = make(map[K]int32)
	}
	st.entries[key] = i
	if replace && p.slot(old).isErr {
		delete(st.errs, old)
	}
	if err != nil {
		if st.errs == nil {
			st.errs = make(map[int32]error)
		}
		st.errs[i] = err
	}
	st.mu.Unlock()
	if replace {
		p.release(old)
	} else if !evicted {
		p.count.Add(1)
	}
	p.link(i)
	p.push(st.queue(e.isErr), i)
	st.armFor(st.dropAt(e))
	h := nameOf(i, e.gen)
	p.mu.Unlock()
	return h
}

// remove drops key's entry, if any (Forget; shard actor only).
func (st *store[K, V]) remove(key K) {
	p := st.pol
	p.mu.Lock()
	if i, ok := st.entries[key]; ok {
		p.remove(i)
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
	for _, q := range [...]*queue{&st.vals, &st.errq} {
		for i := q.head; i != none && st.dropAt(p.slot(i)) <= now; i = q.head {
			p.remove(i)
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
	p := st.pol
	var next time.Duration
	found := false
	for _, q := range [...]*queue{&st.vals, &st.errq} {
		if q.head != none {
			if d := st.dropAt(p.slot(q.head)); !found || d < next {
				next, found = d, true
			}
		}
	}
	if found {
		st.armFor(next)
	}
}

// armFor makes the timer fire at d at the latest (the caller holds the
// policy's mutex). A new result needs no more: the queues' heads are no
// later than it within its kind, and a head that has left since the timer
// was armed only makes it fire early, when expire arms it again. So keep
// reads no other slot than its own (an expiry queue's head is the coldest
// slot of its store).
func (st *store[K, V]) armFor(next time.Duration) {
	if st.closed || (st.armed && st.armedAt <= next) {
		return
	}
	st.armed = true
	st.armedAt = next
	d := next - since()
	if st.timer == nil {
		post, shard := st.postTo, st.shard
		st.timer = time.AfterFunc(d, func() { post(shard, expireMsg{}) })
		return
	}
	st.timer.Reset(d)
}

// close drops every entry and stops the timer (shard actor only). It
// clears the store's map and queues at once rather than removing entry by
// entry: each slot is only unlinked from the ring, cleared and freed.
func (st *store[K, V]) close() {
	st.closed = true
	if st.timer != nil {
		st.timer.Stop()
	}
	p := st.pol
	p.mu.Lock()
	st.mu.Lock()
	n := int64(len(st.entries))
	for _, i := range st.entries {
		p.unlink(i)
		e := p.slot(i)
		var zk K
		var zv V
		e.key, e.val, e.store, e.isErr = zk, zv, none, false
		e.older, e.newer = none, none
		p.free = append(p.free, i)
	}
	clear(st.entries)
	clear(st.errs)
	st.vals, st.errq = queue{none, none}, queue{none, none}
	st.mu.Unlock()
	if n > 0 && p.count.Add(-n) == 0 {
		p.dir.Store(nil) // as in remove: memory returns with the last result
		p.made, p.free = 0, nil
	}
	p.mu.Unlock()
}

// queue is a store's slots of one kind in the order they were retained,
// which is their deadline order: a doubly linked list through the slots.
type queue struct{ head, tail int32 }

// push appends slot i to q (the caller holds p.mu).
func (p *policy[K, V]) push(q *queue, i int32) {
	e := p.slot(i)
	e.older, e.newer = q.tail, none
	if q.tail != none {
		p.slot(q.tail).newer = i
	} else {
		q.head = i
	}
	q.tail = i
}

// unqueue takes slot i out of q (the caller holds p.mu). Taking out the
// head, which is what expiry and CLOCK's eviction of the oldest result do,
// touches no other slot: the head's older link is never read, so it is
// left pointing at the slot taken out before it. Every other slot's older
// link is valid, since a slot once at the head stays there until it leaves.
func (p *policy[K, V]) unqueue(q *queue, i int32) {
	e := p.slot(i)
	if q.head == i {
		q.head = e.newer
		if e.newer == none {
			q.tail = none
		}
	} else {
		p.slot(e.older).newer = e.newer
		if e.newer != none {
			p.slot(e.newer).older = e.older
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
