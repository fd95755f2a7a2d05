package flight_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

var (
	errChaosBatch = errors.New("chaos: batch failed")
	errChaosKey   = errors.New("chaos: key failed")
)

// TestBatchChaos mixes Load, LoadChan and LoadMany with callers that leave
// (before and after dispatch), batches that panic, call runtime.Goexit,
// fail whole, fail some keys, miss keys, outlive WithTimeout, and a Close
// in the middle of it all. Every caller must be answered exactly once with
// an answer it could get, and no batch may hold a key twice.
func TestBatchChaos(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	var closedAnswers atomic.Int64
	var dup atomic.Value // a description of a key sent twice to one batch
	var batchesRun atomic.Int64
	fn := func(ctx context.Context, keys []int) (map[int]string, error) {
		batchesRun.Add(1)
		seen := make(map[int]bool, len(keys))
		for _, k := range keys {
			if seen[k] {
				dup.Store(fmt.Sprintf("key %d twice in %v", k, keys))
			}
			seen[k] = true
		}
		r := rand.New(rand.NewPCG(seed, uint64(keys[0])*31+uint64(len(keys))))
		switch r.IntN(20) {
		case 0:
			panic("chaos")
		case 1:
			return nil, errChaosBatch
		case 4:
			runtime.Goexit()
		case 2:
			<-ctx.Done() // outlives WithTimeout unless cancelled first
			return nil, ctx.Err()
		case 3:
			if r.IntN(4) == 0 {
				var never chan struct{}
				select {
				case <-never:
				case <-ctx.Done():
				}
				return nil, ctx.Err()
			}
		}
		m := make(map[int]string, len(keys))
		ke := flight.KeyErrors[int]{}
		for _, k := range keys {
			switch {
			case k%11 == 0: // missing
			case k%7 == 0:
				ke[k] = errChaosKey
			case k%5 == 0:
				ke[k] = nil // no error
				m[k] = fmt.Sprint("v", k)
			default:
				m[k] = fmt.Sprint("v", k)
			}
		}
		if len(ke) > 0 {
			return m, ke
		}
		return m, nil
	}
	b := flight.NewBatcher(fn, flight.WithMaxBatch(4), flight.WithMaxWait(50*time.Microsecond),
		flight.WithMaxConcurrentBatches(3), flight.WithTimeout(20*time.Millisecond), flight.WithShards(3))

	// check reports what is wrong with one answer for key, or "".
	check := func(key int, v string, err error) string {
		if err == nil {
			if v != fmt.Sprint("v", key) {
				return fmt.Sprintf("key %d: value %q", key, v)
			}
			return ""
		}
		var pe *flight.PanicError
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
			errors.Is(err, errChaosBatch), errors.Is(err, flight.ErrGoexit), errors.As(err, &pe):
			return ""
		case errors.Is(err, flight.ErrClosed):
			closedAnswers.Add(1)
			return ""
		case errors.Is(err, flight.ErrNotFound) && key%11 == 0, errors.Is(err, errChaosKey) && key%7 == 0:
			return ""
		}
		return fmt.Sprintf("key %d: unexpected error %v", key, err)
	}
	var problems sync.Map
	report := func(p string) {
		if p != "" {
			problems.Store(p, true)
		}
	}
	var calls, answers atomic.Int64
	var chans sync.Map // LoadChan channels, checked for a second result at the end
	ctxFor := func(r *rand.Rand) (context.Context, context.CancelFunc) {
		switch r.IntN(4) {
		case 0:
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(time.Duration(r.IntN(300))*time.Microsecond, cancel)
			return ctx, cancel
		case 1:
			ctx, cancel := context.WithCancel(context.Background())
			if r.IntN(4) == 0 {
				cancel()
			}
			return ctx, cancel
		}
		return context.Background(), func() {}
	}
	closeAfter := int64(1500)
	var closeOnce sync.Once
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for range 200 {
				if calls.Load() >= closeAfter {
					closeOnce.Do(func() { go func() { assert.NoError(t, b.Close()) }() })
				}
				ctx, cancel := ctxFor(r)
				key := r.IntN(40)
				switch r.IntN(3) {
				case 0:
					calls.Add(1)
					v, err := b.Load(ctx, key)
					answers.Add(1)
					report(check(key, v, err))
				case 1:
					calls.Add(1)
					ch := b.LoadChan(ctx, key)
					chans.Store(ch, key)
					res := wait.Recv(t, ch)
					answers.Add(1)
					report(check(key, res.Val, res.Err))
				case 2:
					keys := []int{key, r.IntN(40), r.IntN(40)}
					calls.Add(1)
					vals, err := b.LoadMany(ctx, keys)
					answers.Add(1)
					var ke flight.KeyErrors[int]
					switch {
					case err == nil:
						for _, k := range keys {
							report(check(k, vals[k], nil))
						}
					case errors.As(err, &ke):
						for _, k := range keys {
							if e, failed := ke[k]; failed {
								report(check(k, "", e))
							} else {
								report(check(k, vals[k], nil))
							}
						}
					default:
						report(check(key, "", err))
						for k, v := range vals {
							report(check(k, v, nil))
						}
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	require.NoError(t, b.Close())
	assert.Equal(t, calls.Load(), answers.Load(), "every call answered once")
	chans.Range(func(ch, key any) bool {
		select {
		case r := <-ch.(<-chan flight.Result[string]):
			t.Errorf("LoadChan(%v) got a second result: %+v", key, r)
		default:
		}
		return true
	})
	problems.Range(func(p, _ any) bool { t.Error(p); return true })
	if d := dup.Load(); d != nil {
		t.Error(d)
	}
	assert.NotZero(t, closedAnswers.Load(), "Close came in the middle")
	st := b.Stats()
	assert.Zero(t, st.Keys+st.Waiters+st.Pending+st.Running, "%+v", st)
	assert.Equal(t, uint64(batchesRun.Load()), st.Batches)
	t.Logf("calls %d (%d answered ErrClosed), batches %d, keys per batch %.1f, panics %d, timeouts %d, dropped %d, abandoned %d",
		calls.Load(), closedAnswers.Load(), st.Batches, float64(st.BatchedKeys)/float64(max(1, st.Batches)), st.Panics, st.Timeouts, st.Dropped, st.Abandoned)
}
