package coordinator

import (
	"iter"

	fa "github.com/actorflight/flight/actor"
)

// owners is a shard's table of key actors, keyed by each key's hash under
// the coordinator's keyspace (keyspace.Locate, which Do computes anyway to
// choose the shard) rather than by the key: every operation of a flight on
// it (the look-up and insert of its join, the check and delete of its
// retirement) then hashes one word instead of the key. Measured on its own
// (a look-up, an insert, a check and a delete, plus the key's hash): 38 ns
// against 28 for a string key, 90 against 40 for compat's struct key.
//
// Two keys with one hash (a 64-bit collision under a random seed: rare, and
// not to be aimed at) are both kept: the first in byHash, any other in
// clash, keyed by the key itself. A look-up that finds another key in
// byHash, or none, looks in clash only while clash holds any key.
//
// The zero value is an empty table; it belongs to its shard actor.
type owners[K comparable, V any] struct {
	byHash map[uint64]*fa.Owner[K, V]
	clash  map[K]*fa.Owner[K, V] // nil until the first collision
}

// get returns key's owner, or nil; h is key's hash.
func (t *owners[K, V]) get(h uint64, key K) *fa.Owner[K, V] {
	if k := t.byHash[h]; k != nil && k.Key == key {
		return k
	}
	if len(t.clash) > 0 {
		return t.clash[key]
	}
	return nil
}

// put adds k, whose key get does not find and whose Hash is set.
func (t *owners[K, V]) put(k *fa.Owner[K, V]) {
	if t.byHash == nil {
		t.byHash = make(map[uint64]*fa.Owner[K, V])
	}
	if t.byHash[k.Hash] == nil {
		t.byHash[k.Hash] = k
		return
	}
	if t.clash == nil {
		t.clash = make(map[K]*fa.Owner[K, V])
	}
	t.clash[k.Key] = k
}

// remove takes k out if it is its key's owner in the table, and reports
// whether it was.
func (t *owners[K, V]) remove(k *fa.Owner[K, V]) bool {
	if t.byHash[k.Hash] == k {
		delete(t.byHash, k.Hash)
		return true
	}
	if len(t.clash) > 0 && t.clash[k.Key] == k {
		delete(t.clash, k.Key)
		return true
	}
	return false
}

// len returns the number of keys in the table.
func (t *owners[K, V]) len() int { return len(t.byHash) + len(t.clash) }

// all yields every owner; the loop's body may remove the one it is given.
func (t *owners[K, V]) all() iter.Seq[*fa.Owner[K, V]] {
	return func(yield func(*fa.Owner[K, V]) bool) {
		for _, k := range t.byHash {
			if !yield(k) {
				return
			}
		}
		for _, k := range t.clash {
			if !yield(k) {
				return
			}
		}
	}
}
