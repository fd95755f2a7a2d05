package flight_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
)

// TestChaos: thousands of callers over a few dozen keys with random
// cancellation, timeouts, Forget, panics, Goexit and errors, in one short
// burst (TestSoak does the same for minutes, in epochs). It shares the
// soak's functions and checks: every caller gets exactly one answer, no
// caller ever gets another key's value, and two executions of one key never
// overlap.
func TestChaos(t *testing.T) {
	const (
		keys    = 32
		callers = 3000
	)
	c := flight.New[int, string](flight.WithTimeout(15*time.Millisecond), flight.WithShards(4))
	st := &soakState{running: make([]atomic.Int32, keys)}

	var wg sync.WaitGroup
	var unread []<-chan flight.Result[string]
	var unreadMu sync.Mutex
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			key := rng.IntN(keys)
			fn := st.fn(key, rng.IntN(20), time.Duration(rng.IntN(3000))*time.Microsecond)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if rng.IntN(4) == 0 {
				time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
			}
			if rng.IntN(30) == 0 {
				c.Forget(key)
			}
			st.calls.Add(1)
			if rng.IntN(2) == 0 {
				v, _, err := c.Do(ctx, key, fn)
				st.check(key, v, err)
				return
			}
			ch := c.DoChan(ctx, key, fn)
			select {
			case r := <-ch:
				st.check(key, r.Val, r.Err)
				unreadMu.Lock()
				unread = append(unread, ch)
				unreadMu.Unlock()
			case <-time.After(hang):
				st.fail("DoChan caller of key %d never answered", key)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, c.Close())

	if msg := st.firstErr.Load(); msg != nil {
		t.Error(*msg)
	}
	assert.Equal(t, uint64(callers), st.answers.Load(), "every caller answered")
	assert.Zero(t, st.overlaps.Load(), "executions of one key overlapped")
	assert.Zero(t, st.crossKey.Load(), "values that crossed keys")
	assert.Zero(t, st.unexpected.Load(), "unexpected errors")
	for _, ch := range unread {
		select {
		case r := <-ch:
			t.Fatalf("a DoChan channel got a second Result: %+v", r)
		default:
		}
	}
	s := c.Stats()
	assert.Equal(t, 0, s.Keys+s.InFlight+s.Waiters, "gauges after Close: %+v", s)
	assert.Equal(t, st.executions.Load(), s.Flights, "Flights counts executions")
	kinds := map[string]uint64{}
	for k := range st.kinds {
		kinds[soakKindNames[k]] = st.kinds[k].Load()
	}
	t.Logf("executions=%d joins=%d answers=%v stats=%+v", st.executions.Load(), s.Joins, kinds, s)
}
