package flight_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// TestCloseUnderLoad closes a coordinator while thousands of calls are in
// flight and new ones keep arriving (some start only once Close has begun).
// Close must return (no hang) and, by the time it does, no fn may still be
// running and every DoChan channel must hold its answer; every caller gets
// exactly one answer, which is the flight's value for its key, its own ctx's
// error (and that ctx is done), or ErrClosed; nothing is left running
// (goleak). Several rounds vary the shard count and the moment of Close.
func TestCloseUnderLoad(t *testing.T) {
	rounds, callers := 4, 3000
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			closeUnderLoad(t, uint64(round), callers, []int{1, 4, 16, 64}[round%4])
		})
	}
}

type closeLoad struct {
	fnsRunning atomic.Int64
	fnsStarted atomic.Uint64
	calls      atomic.Int64
	answers    atomic.Int64
	byKind     [4]atomic.Int64 // value, ctx error, ErrClosed, after-Close ErrClosed
	firstErr   atomic.Pointer[string]

	mu      sync.Mutex
	unread  []<-chan flight.Result[int] // DoChan channels nobody reads before Close returns
	unreadK []int
}

func (l *closeLoad) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.firstErr.CompareAndSwap(nil, &msg)
}

func (l *closeLoad) fn(key int, mode int, work time.Duration) flight.Func[int] {
	return func(ctx context.Context) (int, error) {
		l.fnsStarted.Add(1)
		l.fnsRunning.Add(1)
		defer l.fnsRunning.Add(-1)
		switch mode {
		case 0: // honours ctx, else runs long
			t := time.NewTimer(50 * time.Millisecond)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-t.C:
			}
		case 1: // ignores ctx
			time.Sleep(work)
		}
		return key * 10, nil
	}
}

// check classifies an answer of a caller of key whose ctx is ctx.
func (l *closeLoad) check(ctx context.Context, key, v int, err error) (closed bool) {
	l.answers.Add(1)
	switch {
	case err == nil:
		if v != key*10 {
			l.fail("caller of key %d got %d", key, v)
		}
		l.byKind[0].Add(1)
	case errors.Is(err, flight.ErrClosed):
		l.byKind[2].Add(1)
		return true
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// No WithTimeout here: a ctx error is the caller's own, and only
		// once its ctx is done.
		if ctx.Err() == nil {
			l.fail("caller of key %d got %v while its ctx is live", key, err)
		}
		l.byKind[1].Add(1)
	default:
		l.fail("caller of key %d got unexpected error %v", key, err)
	}
	return false
}

func closeUnderLoad(t *testing.T, seed uint64, callers, shards int) {
	defer goleak.VerifyNone(t)
	c := flight.New[int, int](flight.WithShards(shards))
	l := &closeLoad{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	caller := func(rng *rand.Rand, afterClose int) {
		defer wg.Done()
		for {
			key := rng.IntN(300)
			mode := rng.IntN(3)
			work := time.Duration(rng.IntN(3000)) * time.Microsecond
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			switch rng.IntN(4) {
			case 0:
				ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(5000))*time.Microsecond)
			case 1:
				ctx, cancel = context.WithCancel(ctx)
			}
			l.calls.Add(1)
			var closed bool
			switch n := rng.IntN(20); {
			case n < 10:
				v, _, err := c.Do(ctx, key, l.fn(key, mode, work))
				closed = l.check(ctx, key, v, err)
			case n < 19:
				ch := c.DoChan(ctx, key, l.fn(key, mode, work))
				select {
				case r := <-ch:
					closed = l.check(ctx, key, r.Val, r.Err)
				case <-time.After(hang):
					l.fail("a DoChan caller of key %d was never answered", key)
				}
			default: // never read before Close returns; checked after
				ch := c.DoChan(ctx, key, l.fn(key, mode, work))
				l.mu.Lock()
				l.unread = append(l.unread, ch)
				l.unreadK = append(l.unreadK, key)
				l.mu.Unlock()
				time.Sleep(work) // pace: this caller did not wait for an answer
			}
			cancel()
			if closed {
				// New calls keep arriving after Close: a few more from
				// this caller, paced, each refused at once.
				if afterClose == 0 {
					<-stop
					return
				}
				afterClose--
				time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}
	for i := range callers {
		wg.Add(1)
		go caller(rand.New(rand.NewPCG(seed, uint64(i))), i%4)
	}
	wait.Until(t, "load: 1,000 waiters", func() bool { return c.Stats().Waiters >= 1000 })
	before := c.Stats()

	closed := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		if err := c.Close(); err != nil {
			l.fail("Close: %v", err)
		}
		closed <- time.Since(start)
	}()
	// Callers that arrive only once Close has begun.
	for i := range 500 {
		wg.Add(1)
		go caller(rand.New(rand.NewPCG(seed, uint64(callers+i))), 1)
	}
	var took time.Duration
	select {
	case took = <-closed:
	case <-time.After(hang):
		dumpGoroutines(t)
		t.Fatalf("Close hangs under load; Stats %+v", c.Stats())
	}
	if n := l.fnsRunning.Load(); n != 0 {
		t.Fatalf("Close returned while %d fns still run", n)
	}
	// Every DoChan channel that entered before Close returned holds its
	// answer now, exactly one.
	l.mu.Lock()
	unread, keys := l.unread, l.unreadK
	l.mu.Unlock()
	for i, ch := range unread {
		select {
		case r := <-ch:
			l.answers.Add(1)
			if !errors.Is(r.Err, flight.ErrClosed) && !errors.Is(r.Err, context.Canceled) &&
				!errors.Is(r.Err, context.DeadlineExceeded) && (r.Err != nil || r.Val != keys[i]*10) {
				t.Errorf("an unread DoChan caller of key %d got %+v", keys[i], r)
			}
		default:
			t.Fatalf("Close returned before a DoChan caller of key %d had its answer", keys[i])
		}
	}
	close(stop)
	wait.Done(t, &wg, hang, "callers to return")
	l.mu.Lock()
	late := l.unread[len(unread):] // DoChan calls recorded after Close returned
	lateK := l.unreadK[len(unread):]
	l.mu.Unlock()
	for i, ch := range late {
		select {
		case r := <-ch:
			l.answers.Add(1)
			if !errors.Is(r.Err, flight.ErrClosed) && !errors.Is(r.Err, context.Canceled) &&
				!errors.Is(r.Err, context.DeadlineExceeded) && (r.Err != nil || r.Val != lateK[i]*10) {
				t.Errorf("a DoChan call of key %d made as Close returned got %+v", lateK[i], r)
			}
		default:
			t.Errorf("a DoChan call of key %d after Close has no answer", lateK[i])
		}
	}
	for _, ch := range l.unread {
		select {
		case r := <-ch:
			t.Fatalf("a DoChan channel gave a second result: %+v", r)
		default:
		}
	}
	if p := l.firstErr.Load(); p != nil {
		t.Fatal(*p)
	}
	if got, want := l.answers.Load(), l.calls.Load(); got != want {
		t.Fatalf("%d calls, %d answers", want, got)
	}
	st := c.Stats()
	if st.Keys+st.InFlight+st.Waiters != 0 {
		t.Fatalf("gauges after Close: %+v", st)
	}
	if st.Flights != l.fnsStarted.Load() {
		t.Fatalf("Stats.Flights=%d, fns started %d", st.Flights, l.fnsStarted.Load())
	}
	t.Logf("shards=%d: at Close %d waiters, %d flights running; Close took %v; calls=%d: value=%d ctx-error=%d closed=%d; executions=%d",
		shards, before.Waiters, before.InFlight, took.Round(time.Microsecond), l.calls.Load(),
		l.byKind[0].Load(), l.byKind[1].Load(), l.byKind[2].Load(), st.Flights)
}
