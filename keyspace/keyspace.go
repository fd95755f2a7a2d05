// Package keyspace maps keys to shards.
//
// A [Keyspace] hashes a comparable key with [maphash.Comparable] under a seed
// chosen when the Keyspace is made, and reduces the hash to a shard index in
// [0, N). The choice is stable for the life of the Keyspace (the same key
// always lands on the same shard, which is what lets a shard actor own its
// keys) and differs between Keyspaces, so an adversary who picks keys cannot
// aim them all at one shard of every process.
package keyspace

import (
	"fmt"
	"hash/maphash"
	"math/bits"
)

// MaxShards is the largest shard count a Keyspace accepts.
const MaxShards = 1 << 16

// Keyspace maps keys of type K to shard indexes in [0, N()).
//
// The zero value is not usable; call [New]. A Keyspace is immutable after New
// and safe for concurrent use. Shard costs one maphash.Comparable of the key
// (a few nanoseconds for an int, about 10–20 ns for a short string) and one
// multiplication; with one shard it does not hash at all.
type Keyspace[K comparable] struct {
	seed maphash.Seed
	n    uint64
}

// New returns a Keyspace of n shards with a fresh random seed. It returns an
// error when n is not in [1, MaxShards].
func New[K comparable](n int) (*Keyspace[K], error) {
	if n < 1 || n > MaxShards {
		return nil, fmt.Errorf("flight: shard count %d out of range [1, %d]", n, MaxShards)
	}
	return &Keyspace[K]{seed: maphash.MakeSeed(), n: uint64(n)}, nil
}

// N returns the number of shards.
func (ks *Keyspace[K]) N() int { return int(ks.n) }

// Shard returns the shard index of key, in [0, N()).
//
// Like a map insertion, it panics when K is an interface type and key holds a
// dynamic value that is not comparable.
func (ks *Keyspace[K]) Shard(key K) int {
	if ks.n == 1 {
		return 0
	}
	// Lemire's multiply-shift reduction: unbiased enough for shard choice and
	// cheaper than a modulo.
	hi, _ := bits.Mul64(maphash.Comparable(ks.seed, key), ks.n)
	return int(hi)
}
