package keyspace

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewRejectsBadCounts(t *testing.T) {
	for _, n := range []int{-1, 0, MaxShards + 1} {
		_, err := New[string](n)
		require.Error(t, err, "n=%d", n)
		require.Contains(t, err.Error(), "flight: ")
	}
	ks, err := New[string](MaxShards)
	require.NoError(t, err)
	require.Equal(t, MaxShards, ks.N())
}

func TestShardSpreadsKeys(t *testing.T) {
	ks, err := New[int](8)
	require.NoError(t, err)
	counts := make([]int, 8)
	for i := range 80000 {
		counts[ks.Shard(i)]++
	}
	for s, c := range counts {
		// 10,000 expected per shard; a fair hash stays well within ±10%.
		require.InDelta(t, 10000, c, 1000, "shard %d", s)
	}
}

func TestOneShardIsZero(t *testing.T) {
	ks, err := New[string](1)
	require.NoError(t, err)
	require.Equal(t, 0, ks.Shard("anything"))
}

type structKey struct {
	Tenant string
	ID     int64
	Flag   bool
}

// FuzzShardString checks that shard choice for arbitrary strings is in range
// and stable (the same key, asked twice, lands on the same shard).
func FuzzShardString(f *testing.F) {
	for _, s := range []string{"", "a", "user:42", "\x00\xff", "ключ"} {
		f.Add(s, uint16(7))
	}
	f.Fuzz(func(t *testing.T, key string, n uint16) {
		shards := int(n)%MaxShards + 1
		ks, err := New[string](shards)
		if err != nil {
			t.Fatal(err)
		}
		s := ks.Shard(key)
		if s < 0 || s >= shards {
			t.Fatalf("Shard(%q) = %d, out of [0,%d)", key, s, shards)
		}
		if again := ks.Shard(string([]byte(key))); again != s {
			t.Fatalf("Shard(%q) unstable: %d then %d", key, s, again)
		}
	})
}

// FuzzShardStruct does the same for struct keys, the other common key shape.
func FuzzShardStruct(f *testing.F) {
	f.Add("acme", int64(42), true, uint16(16))
	f.Add("", int64(-1), false, uint16(1))
	f.Fuzz(func(t *testing.T, tenant string, id int64, flag bool, n uint16) {
		shards := int(n)%MaxShards + 1
		ks, err := New[structKey](shards)
		if err != nil {
			t.Fatal(err)
		}
		k := structKey{Tenant: tenant, ID: id, Flag: flag}
		s := ks.Shard(k)
		if s < 0 || s >= shards {
			t.Fatalf("Shard(%+v) = %d, out of [0,%d)", k, s, shards)
		}
		k2 := structKey{Tenant: string([]byte(tenant)), ID: id, Flag: flag}
		if again := ks.Shard(k2); again != s {
			t.Fatalf("Shard(%+v) unstable: %d then %d", k, s, again)
		}
	})
}
