// Package keyspace maps keys to shards and refuses keys that cannot be
// shared.
//
// It is part of flight's engine: the root package flight is the API, and
// this package carries no compatibility promise.
//
// A [Keyspace] hashes a comparable key with [maphash.Comparable] under a seed
// chosen when the Keyspace is made, and reduces the hash to a shard index.
// The choice is stable for the life of the Keyspace (the same key always
// lands on the same shard, which is what lets a shard actor own its keys) and
// differs between Keyspaces, so an adversary who picks keys cannot aim them
// all at one shard of every process.
//
// A key is refused when it holds a dynamic value that cannot be compared (a
// slice, map or func inside an interface: comparing or hashing it panics) or
// when it is not equal to itself (a NaN, or a struct, array or interface
// holding one): no later call could ever find such a key again, so it could
// never be shared, and a map keyed by it would only grow.
package keyspace

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"reflect"
)

// MaxShards is the largest shard count a Keyspace accepts.
const MaxShards = 1 << 16

// Keyspace maps keys of type K to shard indexes.
//
// The zero value is not usable; call [New]. A Keyspace is immutable after New
// and safe for concurrent use. Shard costs one maphash.Comparable of the key
// (a few nanoseconds for an int, about 10–20 ns for a short string) and one
// multiplication; with one shard it does not hash at all. Keys whose type
// holds no float, complex or interface are valid by construction and are not
// checked.
type Keyspace[K comparable] struct {
	seed  maphash.Seed
	n     uint64
	check check
}

// check is how a key of a type must be checked before it is used.
type check uint8

const (
	checkNone check = iota // always valid (no float, complex or interface inside)
	checkSelf              // valid iff key == key (floats or complexes inside)
	checkSafe              // key == key, which may panic (interfaces inside)
)

// New returns a Keyspace of n shards with a fresh random seed. It returns an
// error when n is not in [1, MaxShards].
func New[K comparable](n int) (*Keyspace[K], error) {
	ks, err := Make[K](n)
	if err != nil {
		return nil, err
	}
	return &ks, nil
}

// Make is New for a holder that keeps its Keyspace by value: it allocates
// nothing.
func Make[K comparable](n int) (Keyspace[K], error) {
	if n < 1 || n > MaxShards {
		return Keyspace[K]{}, fmt.Errorf("flight: shard count %d out of range [1, %d]", n, MaxShards)
	}
	return Keyspace[K]{seed: maphash.MakeSeed(), n: uint64(n), check: checkOf(reflect.TypeFor[K]())}, nil
}

// checkOf says how keys of type t must be checked.
func checkOf(t reflect.Type) check {
	switch t.Kind() {
	case reflect.Interface:
		return checkSafe
	case reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return checkSelf
	case reflect.Array:
		if t.Len() == 0 {
			return checkNone
		}
		return checkOf(t.Elem())
	case reflect.Struct:
		c := checkNone
		for i := range t.NumField() {
			c = max(c, checkOf(t.Field(i).Type))
		}
		return c
	}
	return checkNone
}

// Shard returns the shard index of key, in [0, n), and true; or false when
// key cannot be shared (see the package doc). It never panics.
func (ks *Keyspace[K]) Shard(key K) (shard int, ok bool) {
	switch ks.check {
	case checkSelf:
		if key != key {
			return 0, false
		}
	case checkSafe:
		if !selfEqual(key) {
			return 0, false
		}
	}
	if ks.n == 1 {
		return 0, true
	}
	// Lemire's multiply-shift reduction: unbiased enough for shard choice and
	// cheaper than a modulo.
	hi, _ := bits.Mul64(maphash.Comparable(ks.seed, key), ks.n)
	return int(hi), true
}

// Locate is Shard that also returns the key's hash (maphash.Comparable
// under the Keyspace's seed), for a holder that keys its own table by it:
// a shard's table of key actors is keyed by the hash, so each operation on
// it hashes a word instead of the key (see the coordinator's owners). It
// hashes even with one shard; ok is false exactly when Shard's is.
func (ks *Keyspace[K]) Locate(key K) (shard int, hash uint64, ok bool) {
	switch ks.check {
	case checkSelf:
		if key != key {
			return 0, 0, false
		}
	case checkSafe:
		if !selfEqual(key) {
			return 0, 0, false
		}
	}
	hash = maphash.Comparable(ks.seed, key)
	hi, _ := bits.Mul64(hash, ks.n) // with one shard, always 0
	return int(hi), hash, true
}

// Hash returns key's hash as Locate does, for a key known to be valid
// (Locate accepted it once).
func (ks *Keyspace[K]) Hash(key K) uint64 { return maphash.Comparable(ks.seed, key) }

// selfEqual reports whether key == key, and false when the comparison
// panics (a dynamic value that is not comparable). maphash.Comparable
// panics on exactly the keys that comparison panics on.
func selfEqual[K comparable](key K) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return key == key
}
