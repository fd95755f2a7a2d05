package batch

import "context"

// Retained results (WithTTL, WithErrorTTL, WithRefreshAhead, WithMaxEntries,
// WithStaleIfError on NewBatcher): the Coordinator's slot store
// (coordinator.Retained: one slab, one CLOCK ring and one count across
// shards, one store and one expiry timer per shard), with one store per key
// shard of the Batcher.
//
// A hit is read on the caller's goroutine before anything is posted: a key
// with a retained result is answered at once, without a message to its
// shard and without joining a batch. A shard retains a key's outcome when
// it answers its callers (result), so only an entry still attached then —
// not one whose every caller left — is retained, and the store is written
// by its shard actor only, as the Coordinator's is. What is retained:
//
//   - a value, with TTL;
//   - a per-key error (a KeyErrors entry, or ErrNotFound: negative caching
//     of a key the source lacks), with ErrorTTL, unless Retainable refuses
//     it (ctx errors, the WithTimeout expiry, *PanicError, ErrGoexit,
//     ErrClosed, ...);
//   - never a batch-wide error (fn's other errors, a panic, Goexit, the
//     timeout): it says nothing about any one key.
//
// Stale-if-error: a failed key (its KeyErrors entry, or a batch-wide error)
// whose value the store still holds in its stale window is answered with
// that value and Errors.Stale, and nothing is retained for it. ErrNotFound
// is an answer, not a failure: it is never answered with a stale value.
//
// Refresh-ahead: a hit that claims its result's refresh posts a load of the
// key like any other (a call nobody waits for, with the hit's ctx values and
// none of its cancellation), so refreshes are collected into batches with
// every other load: 50 stale keys hit together make one call of fn (at most
// WithMaxBatch keys each). A key has at most one refresh at a time (the
// store's claim, and a refresh joins the key's entry if it has one); it
// counts in Stats.Loads as a load of its key. A failed refresh retains
// nothing: the old result is served until its TTL ends.

// hit answers a load of key from a retained result, if one is held and
// the engine is not closing; it starts the result's refresh if the hit
// claimed it. Any goroutine.
func (e *Engine[K, V, R]) hit(ctx context.Context, key K) (v V, err error, ok bool) {
	if e.ret == nil || e.closed.Load() || ctx.Err() != nil {
		return v, nil, false
	}
	i, valid := e.ks.Shard(key)
	if !valid {
		return v, nil, false
	}
	v, err, refresh, ok := e.ret.Hit(i, key)
	if !ok {
		return v, nil, false
	}
	e.stats.Hits.Add(1)
	if refresh {
		e.refresh(ctx, i, key)
	}
	return v, err, true
}

// refresh posts a refresh-ahead load of key to shard i: a call with a
// channel nobody reads.
func (e *Engine[K, V, R]) refresh(ctx context.Context, i int, key K) {
	if !e.started() {
		return
	}
	s := e.shards[i]
	if !s.api.Enter() {
		return
	}
	e.stats.Refreshes.Add(1)
	s.send(&call[K, V, R]{key: key, ctx: context.WithoutCancel(ctx), ch: make(chan R, 1), refresh: true})
	s.api.Exit()
}

// retain keeps en's outcome in the store and returns what its callers get:
// v and err, or the key's stale value and Errors.Stale (see above). Shard
// actor only.
func (s *shard[K, V, R]) retain(en *entry[K, V, R], b *batch[K, V, R], v V, err error) (V, error) {
	r, i := s.e.ret, int(s.idx)
	if err == nil {
		r.Keep(i, en.key, v, nil)
		return v, nil
	}
	perKey := b.rerr == nil
	if (!perKey || err != s.e.cfg.Errors.NotFound) && s.e.cfg.Retain.Stale > 0 {
		if sv, ok := r.Stale(i, en.key); ok {
			return sv, s.e.cfg.Errors.Stale
		}
	}
	if perKey && !en.refresh {
		r.Keep(i, en.key, v, err)
	}
	return v, err
}

// Entries is the number of results retained now (0 without WithTTL or
// WithErrorTTL).
func (e *Engine[K, V, R]) Entries() int {
	if e.ret == nil {
		return 0
	}
	return e.ret.Entries()
}
