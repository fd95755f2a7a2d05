package batch

import "context"

// A load made from inside fn, with fn's ctx (or one derived from it), for a
// key of fn's own batch would join that key, which is answered only when fn
// returns: fn would wait for itself until Close. The engine refuses such a
// load at once (Errors.Recursive), on the caller's goroutine, without a
// message, as the Coordinator's key actor refuses a Do from inside its own
// fn (see package actor's callsFrom).
//
// A batch's ctx gives its batch for batchKey. Since a batch's ctx carries
// the values of its first caller, whose ctx may itself be another batch's
// (fn of batch A loads b with its ctx; b's batch loads a with its own), the
// check walks the chain of batches ctx descends from, through any
// Coordinator flight contexts between them (they pass unknown keys on to the
// caller's values).

// batchKey is the context key under which a batch's ctx gives its batch.
type batchKey struct{}

// ctxBatch is what a batch's ctx gives for batchKey, whatever the engine's
// type parameters.
type ctxBatch interface {
	parent() context.Context // the first caller's values
}

func (b *batch[K, V, R]) parent() context.Context { return b.ctx.values }

// recursive reports whether a load of key with ctx comes from inside the
// running fn of a batch of e that holds key.
func (e *Engine[K, V, R]) recursive(ctx context.Context, key K) bool {
	for {
		cb, _ := ctx.Value(batchKey{}).(ctxBatch)
		if cb == nil {
			return false
		}
		if b, ok := cb.(*batch[K, V, R]); ok && b.c.e == e && !b.returned.Load() && b.holds(key) {
			return true
		}
		ctx = cb.parent()
	}
}

// smallBatch is the size up to which holds scans the keys rather than
// building a set.
const smallBatch = 16

// holds reports whether key is one of the batch's keys. It runs only for a
// load whose ctx is this batch's, from fn or a goroutine fn started: keys
// was written before fn was handed its ctx, and is never written again.
func (b *batch[K, V, R]) holds(key K) bool {
	if len(b.keys) <= smallBatch {
		for _, k := range b.keys {
			if k == key {
				return true
			}
		}
		return false
	}
	b.keySetOnce.Do(func() {
		b.keySet = make(map[K]struct{}, len(b.keys))
		for _, k := range b.keys {
			b.keySet[k] = struct{}{}
		}
	})
	_, ok := b.keySet[key]
	return ok
}
