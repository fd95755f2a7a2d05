package coordinator

// Retained is the retained-results store of this file's sibling retain.go
// (one slab, one count and one CLOCK ring across shards, one store and one
// expiry timer per shard) for an engine other than the Coordinator: the
// Batcher keeps its results in it (WithTTL on NewBatcher). Its behaviour is
// the Coordinator's: a hit reads under its shard's read lock on the caller's
// goroutine and never allocates; Keep, Expire and Close are its shard
// actor's, one message at a time.
type Retained[K comparable, V any] struct {
	pol    policy[K, V]
	stores []store[K, V]
}

// NewRetained returns the store of shards shards under cfg (TTL or
// ErrorTTL set, MaxEntries ≥ 1). post(i, msg) must hand msg to shard i's
// actor, which must then call Expire(i) when IsExpire(msg): it is what a
// store's timer posts. No goroutine is started.
func NewRetained[K comparable, V any](cfg *RetainConfig, shards int, post func(shard int, msg any)) *Retained[K, V] {
	// Three allocations, whatever the shard count: r with its policy, the
	// stores, the policy's list of them.
	r := &Retained[K, V]{stores: make([]store[K, V], shards)}
	r.pol.init(cfg.MaxEntries)
	r.pol.stores = make([]*store[K, V], 0, shards)
	for i := range r.stores {
		r.stores[i].init(cfg, &r.pol, i, post)
	}
	return r
}

// IsExpire reports whether msg is a store's expiry message.
func IsExpire(msg any) bool { _, ok := msg.(expireMsg); return ok }

// Hit returns key's retained result if shard holds one within its TTL, and
// claims its refresh-ahead if one is due (at most one per retained
// result): refresh then asks the caller to start it. Any goroutine.
func (r *Retained[K, V]) Hit(shard int, key K) (val V, err error, refresh, ok bool) {
	h, ok := r.stores[shard].find(key, true)
	return h.val, h.err, h.refresh, ok
}

// Stale returns key's retained value, within its TTL or in its
// WithStaleIfError window (a retained error is no stale value). Any
// goroutine.
func (r *Retained[K, V]) Stale(shard int, key K) (V, bool) {
	v, _, ok := r.stores[shard].staleOf(key, since())
	return v, ok
}

// Keep retains val (err nil) or err for key, as its kind's TTL says; an
// error only if cfg.Retainable allows it. Shard actor only.
func (r *Retained[K, V]) Keep(shard int, key K, val V, err error) {
	st := &r.stores[shard]
	if err != nil && st.cfg.Retainable != nil && !st.cfg.Retainable(err) {
		return
	}
	st.keep(key, val, err)
}

// Expire drops shard's expired results and re-arms its timer. Shard actor
// only, on the message IsExpire names.
func (r *Retained[K, V]) Expire(shard int) { r.stores[shard].expire() }

// Close drops shard's results and stops its timer; it keeps nothing after.
// Shard actor only.
func (r *Retained[K, V]) Close(shard int) { r.stores[shard].close() }

// Entries is the number of results retained now, across shards.
func (r *Retained[K, V]) Entries() int { return int(r.pol.count.Load()) }
