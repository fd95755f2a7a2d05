package flight_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
)

// TestChaos: thousands of callers over a few dozen keys with random
// cancellation, timeouts, Forget, panics, Goexit and errors. Every caller
// gets exactly one answer, no caller ever gets another key's value, and two
// executions of one key never overlap.
func TestChaos(t *testing.T) {
	const (
		keys    = 32
		callers = 3000
	)
	c := flight.New[int, string](flight.WithTimeout(15*time.Millisecond), flight.WithShards(4))
	var (
		running    [keys]atomic.Int32
		overlaps   atomic.Int32
		executions atomic.Uint64
		execSeq    [keys]atomic.Uint64
		answers    atomic.Int64
		byKind     sync.Map // kind → *atomic.Int64
	)
	count := func(kind string) {
		v, _ := byKind.LoadOrStore(kind, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	errBoom := errors.New("boom")
	fnFor := func(key int, rng *rand.Rand) flight.Func[string] {
		mode := rng.IntN(20)
		work := time.Duration(rng.IntN(3000)) * time.Microsecond
		return func(ctx context.Context) (string, error) {
			if running[key].Add(1) != 1 {
				overlaps.Add(1)
			}
			defer running[key].Add(-1)
			executions.Add(1)
			n := execSeq[key].Add(1)
			val := fmt.Sprintf("%d:%d", key, n)
			switch mode {
			case 0:
				panic(val)
			case 1:
				runtime.Goexit()
			case 2:
				return val, errBoom
			case 3: // outlives the timeout, ignoring ctx
				time.Sleep(25 * time.Millisecond)
			case 4: // honours ctx
				select {
				case <-ctx.Done():
					return val, ctx.Err()
				case <-time.After(work):
				}
			default:
				time.Sleep(work)
			}
			return val, nil
		}
	}
	check := func(key int, v string, err error) {
		answers.Add(1)
		var pe *flight.PanicError
		switch {
		case err == nil:
			count("value")
		case errors.As(err, &pe):
			count("panic")
			v = pe.Value.(string) // the panic value carries the key too
		case errors.Is(err, flight.ErrGoexit):
			count("goexit")
			return
		case errors.Is(err, context.Canceled):
			count("canceled")
			return
		case errors.Is(err, context.DeadlineExceeded):
			count("timeout")
			return
		case errors.Is(err, errBoom):
			count("error")
		default:
			t.Errorf("unexpected error %v", err)
			return
		}
		k, _, ok := strings.Cut(v, ":")
		if !ok || k != strconv.Itoa(key) {
			t.Errorf("caller of key %d got %q: another key's value", key, v)
		}
	}

	var wg sync.WaitGroup
	var unread []<-chan flight.Result[string]
	var unreadMu sync.Mutex
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			key := rng.IntN(keys)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if rng.IntN(4) == 0 {
				time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
			}
			if rng.IntN(30) == 0 {
				c.Forget(key)
			}
			if rng.IntN(2) == 0 {
				v, _, err := c.Do(ctx, key, fnFor(key, rng))
				check(key, v, err)
				return
			}
			ch := c.DoChan(ctx, key, fnFor(key, rng))
			select {
			case r := <-ch:
				check(key, r.Val, r.Err)
				unreadMu.Lock()
				unread = append(unread, ch)
				unreadMu.Unlock()
			case <-time.After(hang):
				t.Errorf("DoChan caller of key %d never answered", key)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, c.Close())

	assert.Equal(t, int64(callers), answers.Load(), "every caller answered")
	assert.Zero(t, overlaps.Load(), "executions of one key overlapped")
	for _, ch := range unread {
		select {
		case r := <-ch:
			t.Fatalf("a DoChan channel got a second Result: %+v", r)
		default:
		}
	}
	st := c.Stats()
	assert.Equal(t, 0, st.Keys+st.InFlight+st.Waiters, "gauges after Close: %+v", st)
	assert.Equal(t, executions.Load(), st.Flights, "Flights counts executions")
	kinds := map[string]int64{}
	byKind.Range(func(k, v any) bool { kinds[k.(string)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("executions=%d joins=%d answers=%v stats=%+v", executions.Load(), st.Joins, kinds, st)
}
