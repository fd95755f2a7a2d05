package flight_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// Keys with a behaviour of their own in TestBatcherProperties' fn.
const (
	keyMissing = "missing" // fn leaves it out of its map: ErrNotFound
	keyBad     = "bad"     // fn names it in a KeyErrors: errBadKey
	keyRec     = "rec"     // fn loads it again with its own ctx: must get ErrRecursiveCall
)

var errBadKey = errors.New("bad key")

// tagged is a value fn returns: the key, and the tenant of the batch's ctx
// when the Batcher is scoped (nil otherwise).
type tagged struct{ tenant, key any }

// batchKeys draws a key: one of hostileKeys (valid or not), or one of the
// special keys.
func batchKeys() *rapid.Generator[hostileKey] {
	return rapid.Custom(func(t *rapid.T) hostileKey {
		switch rapid.IntRange(0, 9).Draw(t, "special") {
		case 0:
			return hostileKey{keyMissing, true}
		case 1:
			return hostileKey{keyBad, true}
		case 2:
			return hostileKey{keyRec, true}
		}
		return hostileKeys().Draw(t, "key")
	})
}

// TestBatcherProperties throws random sequences of Load, LoadChan and
// LoadMany (keys valid and invalid, repeated, special), callers leaving,
// recursive loads from fn, WithScope with two tenants and Close at a random
// point at a Batcher, and
// checks: every caller is answered exactly once and never hangs; a valid
// key never gets ErrInvalidKey and an invalid one always does; a caller
// never gets another key's value (nor one read with another tenant's ctx,
// when scoped); each error is one its key can get; fn
// never sees a key twice, an invalid key or more than WithMaxBatch keys; a
// load of its own key from fn gets ErrRecursiveCall at once; the gauges are
// back to 0 after Close; no goroutine is left.
func TestBatcherProperties(t *testing.T) {
	defer goleak.VerifyNone(t)
	rapid.Check(t, func(rt *rapid.T) {
		maxBatch := rapid.IntRange(1, 5).Draw(rt, "maxBatch")
		opts := []flight.Option{
			flight.WithShards(rapid.IntRange(1, 4).Draw(rt, "shards")),
			flight.WithMaxBatch(maxBatch),
			flight.WithMaxWait(time.Duration(rapid.IntRange(0, 2).Draw(rt, "maxWaitMs")) * time.Millisecond),
		}
		if rapid.Bool().Draw(rt, "bounded") {
			opts = append(opts, flight.WithMaxConcurrentBatches(rapid.IntRange(1, 3).Draw(rt, "slots")))
		}
		// With WithScope, each call has one of two tenants, and a value read
		// with another tenant's ctx (a batch mixing scopes) is caught.
		scoped := rapid.Bool().Draw(rt, "scoped")
		if scoped {
			opts = append(opts, flight.WithScope(tenantOf))
		}
		// With retained results (WithTTL and the rest), hits, refreshes, expiry and
		// eviction race with everything else; every check below still
		// holds, and Entries stays within WithMaxEntries.
		retain := rapid.Bool().Draw(rt, "retain")
		maxEntries := rapid.IntRange(1, 5).Draw(rt, "maxEntries")
		if retain {
			ttl := rapid.SampledFrom([]time.Duration{time.Millisecond, time.Hour}).Draw(rt, "ttl")
			opts = append(opts, flight.WithTTL(ttl), flight.WithMaxEntries(maxEntries))
			if rapid.Bool().Draw(rt, "errorTTL") {
				opts = append(opts, flight.WithErrorTTL(ttl))
			}
			if rapid.Bool().Draw(rt, "refreshAhead") {
				opts = append(opts, flight.WithRefreshAhead(ttl/2))
			}
			if rapid.Bool().Draw(rt, "staleIfError") {
				opts = append(opts, flight.WithStaleIfError(ttl))
			}
		}
		tag := func(tenant, key any) tagged {
			if !scoped {
				tenant = nil
			}
			return tagged{tenant, key}
		}
		release := make(chan struct{})
		var mu sync.Mutex
		var violations []string // what fn saw wrong; guarded by mu
		violate := func(format string, args ...any) {
			mu.Lock()
			violations = append(violations, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		var b *flight.Batcher[any, any]
		b = flight.NewBatcher(func(ctx context.Context, keys []any) (map[any]any, error) {
			if n := b.Stats().Entries; retain && n > maxEntries {
				violate("Entries %d above WithMaxEntries %d", n, maxEntries)
			}
			if len(keys) == 0 || len(keys) > maxBatch {
				violate("fn got %d keys (WithMaxBatch %d)", len(keys), maxBatch)
			}
			seen := map[any]bool{}
			for _, k := range keys {
				if seen[k] {
					violate("fn got %#v twice in one batch", k)
				}
				seen[k] = true
				if k == keyRec {
					rec := make(chan error, 1)
					go func() { _, err := b.Load(ctx, keyRec); rec <- err }()
					select {
					case err := <-rec:
						// A refresh of a retained key may run while the key is
						// retained: the load is then a hit, which waits for nothing.
						if !errors.Is(err, flight.ErrRecursiveCall) && ctx.Err() == nil && !(retain && err == nil) {
							violate("a load of its own key from fn got %v, want ErrRecursiveCall", err)
						}
					case <-time.After(hang):
						violate("a load of its own key from fn hung")
					}
				}
			}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			m := make(map[any]any, len(keys))
			ke := flight.KeyErrors[any]{}
			for _, k := range keys {
				switch k {
				case keyMissing:
				case keyBad:
					ke[k] = errBadKey
				default:
					m[k] = tag(tenantOf(ctx), k)
				}
			}
			if len(ke) > 0 {
				return m, ke
			}
			return m, nil
		}, opts...)

		type rec struct {
			kind   string // "Load", "LoadChan" or "LoadMany"
			keys   []hostileKey
			ctx    context.Context
			cancel context.CancelFunc
			closed bool          // made after Close had returned
			tenant string        // the tenant in ctx
			vals   map[any]any   // LoadMany
			val    any           // Load, LoadChan
			err    error         // the answer
			twice  chan struct{} // closed if a LoadChan delivered twice
		}
		n := rapid.IntRange(1, 30).Draw(rt, "calls")
		closeAt := rapid.IntRange(0, n).Draw(rt, "closeAt") // n: after every call
		var closeOnce sync.Once
		closeNow := func() {
			closeOnce.Do(func() {
				done := make(chan struct{})
				go func() { b.Close(); close(done) }()
				select {
				case <-done:
				case <-time.After(hang):
					rt.Fatalf("Close hung")
				}
			})
		}
		recs := make([]*rec, n)
		var wg sync.WaitGroup
		closedNow := false
		for i := range recs {
			if i == closeAt {
				close(release) // let fn return, so that Close need not wait long
				closeNow()
				closedNow = true
			}
			r := &rec{twice: make(chan struct{})}
			recs[i] = r
			r.tenant = rapid.SampledFrom([]string{"t0", "t1"}).Draw(rt, fmt.Sprint("tenant", i))
			base := withTenant(r.tenant) // never done, like context.Background()
			r.ctx, r.cancel = context.WithCancel(base)
			if rapid.Bool().Draw(rt, fmt.Sprint("background", i)) {
				r.ctx = base
			}
			r.closed = closedNow
			switch rapid.IntRange(0, 2).Draw(rt, fmt.Sprint("kind", i)) {
			case 0:
				r.kind = "Load"
				r.keys = []hostileKey{batchKeys().Draw(rt, fmt.Sprint("key", i))}
				wg.Add(1)
				go func() { defer wg.Done(); r.val, r.err = b.Load(r.ctx, r.keys[0].v) }()
			case 1:
				r.kind = "LoadChan"
				r.keys = []hostileKey{batchKeys().Draw(rt, fmt.Sprint("key", i))}
				ch := b.LoadChan(r.ctx, r.keys[0].v)
				wg.Add(1)
				go func() {
					defer wg.Done()
					res := <-ch
					r.val, r.err = res.Val, res.Err
					select {
					case <-ch:
						close(r.twice)
					default:
					}
				}()
			case 2:
				r.kind = "LoadMany"
				r.keys = rapid.SliceOfN(batchKeys(), 0, 5).Draw(rt, fmt.Sprint("keys", i))
				keys := make([]any, len(r.keys))
				for j, k := range r.keys {
					keys[j] = k.v
				}
				wg.Add(1)
				go func() { defer wg.Done(); r.vals, r.err = b.LoadMany(r.ctx, keys) }()
			}
			if rapid.IntRange(0, 4).Draw(rt, fmt.Sprint("leave", i)) == 0 {
				r.cancel()
			}
		}
		if !closedNow {
			if rapid.Bool().Draw(rt, "release before close") {
				close(release)
				closeNow()
			} else {
				closeNow()
				close(release)
			}
		}
		wait.Done(rt, &wg, hang, "every caller's answer")

		mu.Lock()
		for _, v := range violations {
			rt.Error(v)
		}
		mu.Unlock()
		for i, r := range recs {
			left := r.ctx.Err() != nil
			r.cancel()
			select {
			case <-r.twice:
				rt.Fatalf("call %d (%s %#v) answered twice", i, r.kind, r.keys[0].v)
			default:
			}
			if r.kind == "LoadMany" {
				checkLoadMany(rt, i, r.keys, r.vals, r.err, left, r.closed, func(k any) any { return tag(r.tenant, k) })
				continue
			}
			k := r.keys[0]
			if err := keyAnswer(k, r.val, r.err, left, r.closed, tag(r.tenant, k.v)); err != nil {
				rt.Fatalf("call %d (%s %#v): %v", i, r.kind, k.v, err)
			}
		}
		st := b.Stats()
		if st.Keys != 0 || st.Waiters != 0 || st.Pending != 0 || st.Running != 0 || st.Entries != 0 {
			rt.Fatalf("gauges after Close: %+v", st)
		}
		if !retain && (st.Hits != 0 || st.Refreshes != 0) {
			rt.Fatalf("hits or refreshes without retained results: %+v", st)
		}
	})
}

// keyAnswer checks one key's answer: nil if it is one the key can get.
// want is the value a successful answer must be.
func keyAnswer(k hostileKey, val any, err error, left, closed bool, want any) error {
	switch {
	case !k.valid:
		if !errors.Is(err, flight.ErrInvalidKey) {
			return fmt.Errorf("invalid key got %v, want ErrInvalidKey", err)
		}
		return nil
	case errors.Is(err, flight.ErrInvalidKey):
		return fmt.Errorf("a valid key got ErrInvalidKey")
	case left && errors.Is(err, context.Canceled):
		return nil // a caller whose ctx is done may get ctx.Err() at any point
	case closed:
		if !errors.Is(err, flight.ErrClosed) {
			return fmt.Errorf("a load after Close got %v, %v", val, err)
		}
		return nil
	case err == nil:
		if k.v == keyMissing || k.v == keyBad {
			return fmt.Errorf("got value %#v, want an error", val)
		}
		if val != want {
			return fmt.Errorf("got the value %#v, want %#v", val, want)
		}
		return nil
	case errors.Is(err, flight.ErrClosed):
		return nil
	case left && errors.Is(err, context.Canceled):
		return nil
	case k.v == keyMissing && errors.Is(err, flight.ErrNotFound):
		return nil
	case k.v == keyBad && errors.Is(err, errBadKey):
		return nil
	}
	return fmt.Errorf("unexpected error %v (left %v)", err, left)
}

func checkLoadMany(rt *rapid.T, i int, keys []hostileKey, vals map[any]any, err error, left, closed bool, want func(k any) any) {
	if closed && !(left && errors.Is(err, context.Canceled)) {
		if !errors.Is(err, flight.ErrClosed) {
			rt.Fatalf("call %d (LoadMany) after Close: %v", i, err)
		}
		return
	}
	if err == flight.ErrClosed {
		return // refused as a whole: Close began before it posted (it runs on a goroutine of its own)
	}
	if left && errors.Is(err, context.Canceled) {
		for k, v := range vals {
			if v != want(k) {
				rt.Fatalf("call %d (LoadMany): key %#v got %#v", i, k, v)
			}
		}
		return
	}
	var ke flight.KeyErrors[any]
	errors.As(err, &ke)
	for _, k := range keys {
		if !k.valid {
			if !errors.Is(err, flight.ErrInvalidKey) {
				rt.Fatalf("call %d (LoadMany): invalid key %#v, error %v", i, k.v, err)
			}
			if hashable(k.v) && ke == nil {
				rt.Fatalf("call %d (LoadMany): invalid key %#v can be a map key but no KeyErrors names it", i, k.v)
			}
			continue
		}
		v, got := vals[k.v]
		kerr := ke[k.v]
		if got && kerr != nil {
			rt.Fatalf("call %d (LoadMany): key %#v has a value and an error", i, k.v)
		}
		if !got && kerr == nil {
			rt.Fatalf("call %d (LoadMany): key %#v has neither a value nor an error (%v)", i, k.v, err)
		}
		if e := keyAnswer(k, v, kerr, left, false, want(k.v)); e != nil {
			rt.Fatalf("call %d (LoadMany %#v): %v", i, k.v, e)
		}
	}
	if err == nil && len(vals) == 0 && len(keys) > 0 {
		for _, k := range keys {
			if k.valid {
				rt.Fatalf("call %d (LoadMany): no values and no error", i)
			}
		}
	}
}

// hashable reports whether v can be a map key.
func hashable(v any) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_ = map[any]bool{v: true}
	return true
}
