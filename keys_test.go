package flight_test

// Keys: which key values the coordinator accepts, and that a key that
// cannot be hashed or is not equal to itself gets ErrInvalidKey on every
// path and leaves nothing behind.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// hostileKey is a generated key: the value handed to the coordinator and
// whether the coordinator must accept it.
type hostileKey struct {
	v     any
	valid bool
}

type pair struct {
	A any
	B float64
}

// hostileKeys generates arbitrary dynamic key values: comparable ones
// (numbers, huge and empty strings, structs, arrays, pointers, nil),
// values not equal to themselves (NaN, alone or inside a struct, array,
// complex or interface) and values that cannot be hashed (slices, maps and
// funcs, alone or inside a struct or array).
func hostileKeys() *rapid.Generator[hostileKey] {
	shared := &struct{ x int }{}
	return rapid.Custom(func(t *rapid.T) hostileKey {
		n := rapid.IntRange(0, 5).Draw(t, "n") // a small space, so keys repeat and share flights
		switch rapid.IntRange(0, 13).Draw(t, "kind") {
		case 0:
			return hostileKey{n, true}
		case 1:
			return hostileKey{fmt.Sprint("s", n), true}
		case 2:
			return hostileKey{"", true}
		case 3:
			return hostileKey{strings.Repeat("x", 1<<16) + fmt.Sprint(n), true}
		case 4:
			return hostileKey{float64(n) + 0.5, true}
		case 5:
			return hostileKey{pair{n, 1}, true}
		case 6:
			return hostileKey{[2]any{n, "a"}, true}
		case 7:
			return hostileKey{shared, true}
		case 8:
			return hostileKey{nil, true}
		case 9:
			return hostileKey{[]any{math.NaN(), float32(math.NaN()), complex(0, math.NaN())}[n%3], false}
		case 10:
			return hostileKey{[]any{pair{n, math.NaN()}, pair{math.NaN(), 0}, [1]any{math.NaN()}}[n%3], false}
		case 11:
			return hostileKey{[]any{[]int{n}, map[int]int{n: n}, func() {}}[n%3], false}
		case 12:
			return hostileKey{[]any{pair{[]byte("x"), 0}, [2]any{n, map[string]int{}}, pair{pair{[]int{}, 0}, 1}}[n%3], false}
		default:
			return hostileKey{[0]any{}, true}
		}
	})
}

// TestHostileKeys throws arbitrary key values at a coordinator together with
// random cancellation, Forget, retained results and Close, and checks: every call is answered
// exactly once and never hangs; an invalid key gets ErrInvalidKey and a valid
// one never does; no caller gets another key's value; the gauges are back to
// 0 after Close; and, over all runs, the heap does not keep what the runs
// made.
func TestHostileKeys(t *testing.T) {
	flight.New[int, int]().Close() // make the shared actor system before measuring
	base := settledHeap()
	rapid.Check(t, func(rt *rapid.T) {
		opts := []flight.Option{flight.WithShards(rapid.IntRange(1, 4).Draw(rt, "shards"))}
		if rapid.Bool().Draw(rt, "ttl") {
			opts = append(opts, flight.WithTTL(time.Minute), flight.WithMaxEntries(rapid.IntRange(1, 8).Draw(rt, "maxEntries")))
		}
		c := flight.New[any, int](opts...)
		release := make(chan struct{})
		type callRec struct {
			key    hostileKey
			cancel context.CancelFunc
			out    chan error // one answer per call; buffered for all
			got    int        // the value received, checked against key
			val    chan int
		}
		n := rapid.IntRange(1, 40).Draw(rt, "calls")
		calls := make([]*callRec, n)
		var wg sync.WaitGroup
		for i := range calls {
			k := hostileKeys().Draw(rt, fmt.Sprint("key", i))
			ctx, cancel := context.WithCancel(context.Background())
			if rapid.Bool().Draw(rt, fmt.Sprint("background", i)) {
				ctx = context.Background()
			}
			cr := &callRec{key: k, cancel: cancel, out: make(chan error, 2), val: make(chan int, 2)}
			calls[i] = cr
			// fn returns the index of the call that started its flight, so a
			// caller can check it shares only its own key's flight.
			fn := func(fctx context.Context) (int, error) {
				select {
				case <-release:
					return i, nil
				case <-fctx.Done():
					return i, fctx.Err()
				}
			}
			if rapid.Bool().Draw(rt, fmt.Sprint("chan", i)) {
				ch := c.DoChan(ctx, k.v, fn)
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := <-ch
					cr.val <- r.Val
					cr.out <- r.Err
					select {
					case <-ch:
						cr.out <- errors.New("DoChan delivered twice")
					default:
					}
				}()
			} else {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, _, err := c.Do(ctx, k.v, fn)
					cr.val <- v
					cr.out <- err
				}()
			}
			switch rapid.IntRange(0, 5).Draw(rt, fmt.Sprint("then", i)) {
			case 0:
				cancel()
			case 1:
				c.Forget(k.v)
			}
		}
		if rapid.Bool().Draw(rt, "release before close") {
			close(release)
		}
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(hang):
			rt.Fatalf("Close hung")
		}
		wait.Done(rt, &wg, hang, "every caller's answer")
		select {
		case <-release:
		default:
			close(release)
		}
		for i, cr := range calls {
			cr.cancel()
			err := <-cr.out
			v := <-cr.val
			if len(cr.out) != 0 {
				rt.Fatalf("call %d (%#v) answered twice: %v", i, cr.key.v, <-cr.out)
			}
			if !cr.key.valid {
				if !errors.Is(err, flight.ErrInvalidKey) {
					rt.Fatalf("call %d: invalid key %#v got %v, want ErrInvalidKey", i, cr.key.v, err)
				}
				continue
			}
			if errors.Is(err, flight.ErrInvalidKey) {
				rt.Fatalf("call %d: valid key %#v got ErrInvalidKey", i, cr.key.v)
			}
			if err == nil && calls[v].key.v != cr.key.v {
				rt.Fatalf("call %d (key %#v) got the value of call %d (key %#v)", i, cr.key.v, v, calls[v].key.v)
			}
		}
		st := c.Stats()
		if st.Keys != 0 || st.InFlight != 0 || st.Waiters != 0 || st.Entries != 0 {
			rt.Fatalf("gauges after Close: %+v", st)
		}
	})
	runtime.GC()
	if grown := int64(settledHeap()) - int64(base); grown > 8<<20 {
		t.Errorf("the heap grew by %.1f MiB over the runs", float64(grown)/(1<<20))
	}
}

type nanHolder struct {
	Name string
	F    float64
}

// Keys that cannot be hashed, or that are not equal to themselves, get
// ErrInvalidKey on every path, never reach a shard and leave nothing behind;
// Forget of such a key does nothing. The coordinator goes on serving.
func TestInvalidKeys(t *testing.T) {
	for _, shards := range []int{1, 4} {
		c := flight.New[any, int](flight.WithShards(shards))
		fn := func(context.Context) (int, error) { return 1, nil }
		bad := []any{
			[]int{1}, map[string]int{}, func() {},
			math.NaN(), float32(math.NaN()), complex(math.NaN(), 0),
			nanHolder{"x", math.NaN()}, [2]float64{1, math.NaN()},
			struct{ A any }{[]int{1}}, [1]any{map[int]int{}},
		}
		for _, k := range bad {
			for range 11 {
				c.Forget(k) // must not fault the shard
			}
			_, _, err := c.Do(context.Background(), k, fn)
			require.ErrorIs(t, err, flight.ErrInvalidKey, "Do(%#v), %d shards", k, shards)
			r := wait.Recv(t, c.DoChan(context.Background(), k, fn))
			require.ErrorIs(t, r.Err, flight.ErrInvalidKey, "DoChan(%#v)", k)
		}
		st := c.Stats()
		assert.Zero(t, st.Keys+st.InFlight+st.Waiters, "%+v", st)
		assert.Zero(t, st.Flights, "no invalid key ran fn")
		// Valid keys of the same types still work.
		for _, k := range []any{1.5, "s", nanHolder{"x", 1}, [2]float64{1, 2}, struct{ A any }{1}} {
			v, _, err := c.Do(context.Background(), k, fn)
			require.NoError(t, err, "%#v", k)
			require.Equal(t, 1, v)
		}
		require.NoError(t, c.Close())
	}
}

// A float key that is NaN can never be shared: 200,000 calls leave no key
// actor behind.
func TestNaNKeysLeaveNothing(t *testing.T) {
	c := flight.New[float64, int]()
	defer c.Close()
	for range 200_000 {
		_, _, err := c.Do(context.Background(), math.NaN(), func(context.Context) (int, error) { return 1, nil })
		require.ErrorIs(t, err, flight.ErrInvalidKey)
	}
	st := c.Stats()
	assert.Zero(t, st.Keys, "%+v", st)
	assert.Zero(t, st.Flights, "%+v", st)
}
