package keyspace

import (
	"math"
	"reflect"
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
	require.Equal(t, uint64(MaxShards), ks.n)
}

func TestShardSpreadsKeys(t *testing.T) {
	ks, err := New[int](8)
	require.NoError(t, err)
	counts := make([]int, 8)
	for i := range 80000 {
		s, ok := ks.Shard(i)
		require.True(t, ok)
		counts[s]++
	}
	for s, c := range counts {
		// 10,000 expected per shard; a fair hash stays well within ±10%.
		require.InDelta(t, 10000, c, 1000, "shard %d", s)
	}
}

func TestOneShardIsZero(t *testing.T) {
	ks, err := New[string](1)
	require.NoError(t, err)
	s, ok := ks.Shard("anything")
	require.True(t, ok)
	require.Equal(t, 0, s)
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
		s, ok := ks.Shard(key)
		if !ok || s < 0 || s >= shards {
			t.Fatalf("Shard(%q) = %d, out of [0,%d)", key, s, shards)
		}
		if again, _ := ks.Shard(string([]byte(key))); again != s {
			t.Fatalf("Shard(%q) unstable: %d then %d", key, s, again)
		}
		ls, h, ok := ks.Locate(string([]byte(key)))
		if !ok || ls != s || h != ks.Hash(key) {
			t.Fatalf("Locate(%q) = %d, %#x, %v; Shard %d, Hash %#x", key, ls, h, ok, s, ks.Hash(key))
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
		s, ok := ks.Shard(k)
		if !ok || s < 0 || s >= shards {
			t.Fatalf("Shard(%+v) = %d, out of [0,%d)", k, s, shards)
		}
		k2 := structKey{Tenant: string([]byte(tenant)), ID: id, Flag: flag}
		if again, _ := ks.Shard(k2); again != s {
			t.Fatalf("Shard(%+v) unstable: %d then %d", k, s, again)
		}
	})
}

type floatKey struct {
	Name string
	F    float64
}

type anyKey struct {
	Name string
	V    any
}

// Keys that cannot be hashed or are not equal to themselves are refused,
// for any shard count, without a panic; valid keys of the same types pass.
func TestShardRefusesInvalidKeys(t *testing.T) {
	nan := math.NaN()
	for _, n := range []int{1, 7} {
		ksAny, _ := New[any](n)
		for _, k := range []any{[]int{1}, map[string]int{}, func() {}, nan, float32(nan),
			complex(nan, 1), floatKey{"a", nan}, [2]float64{0, nan}, anyKey{"a", []byte("x")},
			[1]any{map[int]int{}}, anyKey{"a", floatKey{"b", nan}}} {
			_, ok := ksAny.Shard(k)
			require.False(t, ok, "%#v with %d shards", k, n)
		}
		for _, k := range []any{nil, 1, "s", 1.5, floatKey{"a", 1}, anyKey{"a", 2}, [2]float64{1, 2}, &struct{}{}} {
			_, ok := ksAny.Shard(k)
			require.True(t, ok, "%#v with %d shards", k, n)
		}
		ksF, _ := New[float64](n)
		_, ok := ksF.Shard(nan)
		require.False(t, ok)
		_, ok = ksF.Shard(math.Inf(1))
		require.True(t, ok)
		ksS, _ := New[floatKey](n)
		_, ok = ksS.Shard(floatKey{"x", nan})
		require.False(t, ok)
		ksA, _ := New[anyKey](n)
		_, ok = ksA.Shard(anyKey{"x", []int{}})
		require.False(t, ok)
	}
}

func TestCheckOf(t *testing.T) {
	require.Equal(t, checkNone, checkOf(reflect.TypeFor[string]()))
	require.Equal(t, checkNone, checkOf(reflect.TypeFor[structKey]()))
	require.Equal(t, checkNone, checkOf(reflect.TypeFor[*floatKey]()))
	require.Equal(t, checkNone, checkOf(reflect.TypeFor[[0]float64]()))
	require.Equal(t, checkSelf, checkOf(reflect.TypeFor[floatKey]()))
	require.Equal(t, checkSelf, checkOf(reflect.TypeFor[[3]complex64]()))
	require.Equal(t, checkSafe, checkOf(reflect.TypeFor[anyKey]()))
	require.Equal(t, checkSafe, checkOf(reflect.TypeFor[error]()))
}

// FuzzShardAny throws keys of random dynamic types at a Keyspace[any]:
// it never panics, and a key is refused exactly when it is not equal to
// itself or cannot be compared.
func FuzzShardAny(f *testing.F) {
	f.Add(uint8(0), int64(1), 1.5, "a", uint16(3))
	f.Add(uint8(3), int64(0), math.NaN(), "", uint16(1))
	f.Fuzz(func(t *testing.T, kind uint8, i int64, x float64, s string, n uint16) {
		ks, err := New[any](int(n)%64 + 1)
		if err != nil {
			t.Fatal(err)
		}
		var key any
		valid := true
		switch kind % 8 {
		case 0:
			key = i
		case 1:
			key, valid = x, x == x
		case 2:
			key = s
		case 3:
			key, valid = floatKey{s, x}, x == x
		case 4:
			key, valid = anyKey{s, x}, x == x
		case 5:
			key, valid = []byte(s), false
		case 6:
			key, valid = anyKey{s, map[string]int64{s: i}}, false
		case 7:
			key, valid = [2]any{i, complex(x, 0)}, x == x
		}
		shard, ok := ks.Shard(key)
		if ok != valid {
			t.Fatalf("Shard(%#v) ok=%v, want %v", key, ok, valid)
		}
		if ok {
			if again, _ := ks.Shard(key); again != shard {
				t.Fatalf("Shard(%#v) unstable", key)
			}
		}
	})
}

// Locate refuses exactly the keys Shard refuses, and hashes with one shard.
func TestLocateRefusesAsShard(t *testing.T) {
	ks, err := New[any](1)
	require.NoError(t, err)
	for _, key := range []any{math.NaN(), []int{1}, struct{ F any }{map[int]int{}}, "ok", 1.5} {
		_, want := ks.Shard(key)
		s, h, ok := ks.Locate(key)
		require.Equal(t, want, ok, "%#v", key)
		if ok {
			require.Equal(t, 0, s)
			require.Equal(t, ks.Hash(key), h)
		}
	}
	_, h1, _ := ks.Locate("a")
	_, h2, _ := ks.Locate("b")
	require.NotEqual(t, h1, h2, "one shard: the hash is still the key's")
}
