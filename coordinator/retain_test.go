package coordinator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"
)

// The retained store's invariants, checked after every operation of a
// random sequence over three stores that share one policy (keeps of new
// and retained keys beyond the bound, so that CLOCK evicts across stores;
// hits that mark entries; removals; one store closed while the others go
// on): the count is the sum of the maps; every map entry names a slot that
// holds its key, in its store; the CLOCK ring holds exactly the entries;
// each queue holds exactly its store's entries of its kind, oldest first,
// with every link but the head's older link consistent; freed slots hold
// nothing. A store left with a freed slot on the ring or a broken queue
// fails here before any caller could see it.
func TestStoreInvariants(t *testing.T) {
	// 12: one chunk of 16 slots; 35: chunks of 16, 16 and 32 (see locate).
	// Either is below the 40 keys, so CLOCK evicts.
	for _, max := range []int{12, 35} {
		for seed := range uint64(20) {
			testStoreInvariants(t, max, seed)
		}
	}
}

func testStoreInvariants(t *testing.T, max int, seed uint64) {
	t.Run(fmt.Sprint("max=", max, "/seed=", seed), func(t *testing.T) {
		rng := rand.New(rand.NewPCG(seed, 1))
		cfg := &RetainConfig{TTL: time.Hour, ErrorTTL: 30 * time.Minute, MaxEntries: max}
		pol := newPolicy[int, int](max)
		sts := make([]*store[int, int], 3)
		for i := range sts {
			sts[i] = newStore[int, int](cfg, pol, func(any) {})
		}
		defer func() {
			for _, st := range sts {
				st.close()
			}
		}()
		closed := -1
		for op := range 600 {
			key := rng.IntN(40)
			st := sts[key%len(sts)]
			switch r := rng.IntN(10); {
			case r < 6:
				var err error
				if rng.IntN(4) == 0 {
					err = fmt.Errorf("e%d", key)
				}
				st.keep(key, key, err)
			case r < 8:
				st.find(key, false) // a hit marks its entry for CLOCK
			default:
				st.remove(key)
			}
			if op == 300 {
				closed = rng.IntN(len(sts))
				sts[closed].close()
			}
			checkStores(t, pol, sts, closed)
			if t.Failed() {
				t.Fatalf("after operation %d", op)
			}
		}
	})
}

func checkStores(t *testing.T, p *policy[int, int], sts []*store[int, int], closed int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	inMaps := map[int32]bool{}
	for si, st := range sts {
		total += len(st.entries)
		if si == closed && len(st.entries) != 0 {
			t.Errorf("closed store %d holds %d entries", si, len(st.entries))
		}
		for key, i := range st.entries {
			e := p.slot(i)
			if e.key != key || e.store != st.id {
				t.Errorf("store %d: key %d names slot %d holding key %d of store %d", si, key, i, e.key, e.store)
			}
			if _, isErr := st.errs[i]; isErr != e.isErr {
				t.Errorf("store %d: slot %d isErr %v, in errs %v", si, i, e.isErr, isErr)
			}
			inMaps[i] = true
		}
		if len(st.errs) > len(st.entries) {
			t.Errorf("store %d: %d errors for %d entries", si, len(st.errs), len(st.entries))
		}
		for _, isErr := range []bool{false, true} {
			q := st.queue(isErr)
			n := 0
			var last time.Duration
			for i, prev := q.head, int32(none); i != none; prev, i = i, p.slot(i).newer {
				e := p.slot(i)
				if e.store != st.id || e.isErr != isErr || !inMaps[i] {
					t.Errorf("store %d: queue (err %v) holds slot %d (store %d, err %v, in a map %v)", si, isErr, i, e.store, e.isErr, inMaps[i])
					return
				}
				if i != q.head && e.older != prev {
					t.Errorf("store %d: slot %d's older link is %d, want %d", si, i, e.older, prev)
				}
				if e.expires < last {
					t.Errorf("store %d: queue out of deadline order at slot %d", si, i)
				}
				last = e.expires
				if p.slot(i).newer == none && q.tail != i {
					t.Errorf("store %d: queue ends at %d, tail is %d", si, i, q.tail)
				}
				n++
				if n > int(p.max)+1 {
					t.Errorf("store %d: queue does not end", si)
					return
				}
			}
			if q.head == none && q.tail != none {
				t.Errorf("store %d: empty queue with tail %d", si, q.tail)
			}
		}
	}
	if got := int(p.count.Load()); got != total {
		t.Errorf("count %d, maps hold %d", got, total)
	}
	if total > int(p.max) {
		t.Errorf("%d entries, bound %d", total, p.max)
	}
	onRing := 0
	if p.hand != none {
		for i := p.hand; ; {
			e := p.slot(i)
			if !inMaps[i] {
				t.Errorf("the ring holds slot %d, in no map (store %d)", i, e.store)
				return
			}
			if p.slot(e.next).prev != i {
				t.Errorf("ring: slot %d's next %d does not link back", i, e.next)
			}
			onRing++
			if i = e.next; i == p.hand || onRing > total {
				break
			}
		}
	}
	if onRing != total {
		t.Errorf("the ring holds %d slots, the maps %d", onRing, total)
	}
	for _, i := range p.free {
		if e := p.slot(i); e.store != none || e.key != 0 || e.val != 0 || inMaps[i] {
			t.Errorf("free slot %d holds key %d of store %d", i, e.key, e.store)
		}
	}
}

// A result whose deadline comes before the one the store's timer is armed
// for (an error with a shorter WithErrorTTL, retained after a value) arms
// the timer for its own: it is dropped at its TTL without any caller
// asking, not when the value's timer fires.
func TestStoreArmsForTheEarliestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := &RetainConfig{TTL: time.Hour, ErrorTTL: time.Second, MaxEntries: 10}
		msgs := make(chan any, 4)
		st := newStore[int, int](cfg, newPolicy[int, int](10), func(m any) { msgs <- m })
		defer st.close()
		st.keep(1, 1, nil)
		st.keep(2, 0, errors.New("down"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case m := <-msgs:
			if _, ok := m.(expireMsg); !ok {
				t.Fatalf("the timer posted %T", m)
			}
			st.expire()
		default:
			t.Fatal("no expiry at the error's TTL")
		}
		if _, ok := st.find(2, false); ok || len(st.entries) != 1 {
			t.Fatalf("the error is still retained (%d entries)", len(st.entries))
		}
		if _, ok := st.find(1, false); !ok {
			t.Fatal("the value was dropped with the error")
		}
	})
}

// With a key and a value free of pointers, a slot holds none, so the
// collector does not scan the slab (a chunk of slots is a noscan object)
// however many results are retained; and a slot of word-sized key and
// value fits one cache line, which a miss at the bound touches once for
// its victim. A field that adds a pointer, or grows the slot past 64
// bytes, fails here.
func TestSlotLayout(t *testing.T) {
	if n := unsafe.Sizeof(slot[uint64, int]{}); n > 64 {
		t.Errorf("a slot is %d bytes, want at most 64", n)
	}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		switch ty.Kind() {
		case reflect.Pointer, reflect.UnsafePointer, reflect.Map, reflect.Slice, reflect.String,
			reflect.Interface, reflect.Chan, reflect.Func:
			t.Errorf("%s is a %v: the collector would scan every slot", path, ty.Kind())
		case reflect.Struct:
			for i := range ty.NumField() {
				walk(ty.Field(i).Type, path+"."+ty.Field(i).Name)
			}
		case reflect.Array:
			walk(ty.Elem(), path+"[]")
		}
	}
	walk(reflect.TypeFor[slot[uint64, int]](), "slot")
}

// The slab's chunks: indexes 0, 1, 2, … fill chunk 0 from its start, then
// chunk 1, and so on, each chunk once, each place once; the first chunks
// grow from 16 slots to the chunk length, and a slab of a few results
// allocates a chunk of 16, not 1,024.
func TestSlabChunks(t *testing.T) {
	for _, max := range []int{1, 2, 16, 17, 33, 1000, 1024, 1025, 1 << 20} {
		p := newPolicy[int, int](max)
		wantC, wantOff := 0, uint32(0)
		for i := range int32(5000) {
			c, off := p.locate(i)
			if c != wantC || off != wantOff {
				t.Fatalf("max %d: index %d at chunk %d place %d; want chunk %d place %d", max, i, c, off, wantC, wantOff)
			}
			if wantOff++; int(wantOff) == p.chunkLen(c) {
				wantC, wantOff = wantC+1, 0
			}
		}
		if got, want := p.chunkLen(0), min(16, 1<<p.shift); got != want {
			t.Errorf("max %d: first chunk of %d slots, want %d", max, got, want)
		}
		if max >= 1024 && p.chunkLen(100) != 1024 {
			t.Errorf("max %d: chunk 100 has %d slots, want 1,024", max, p.chunkLen(100))
		}
		// alloc makes the chunks as it goes, and slot finds them.
		p.mu.Lock()
		for range 3000 {
			i := p.alloc()
			p.slot(i).key = int(i)
			if !p.holds(i) {
				t.Fatalf("max %d: slot %d allocated but not held", max, i)
			}
		}
		for i := range int32(3000) {
			if p.slot(i).key != int(i) {
				t.Fatalf("max %d: slot %d holds %d", max, i, p.slot(i).key)
			}
		}
		p.mu.Unlock()
	}
}
