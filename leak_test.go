package flight_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/shared"
	"github.com/actorflight/flight/internal/wait"
)

// Every test of the package ends with no goroutine of ours left running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// An idle coordinator, never closed, holds no goroutine and no key after
// 10,000 distinct keys: key actors retire with their flight, and the warm
// workers exit a moment after their last task.
func TestIdleAfterManyKeysHoldsNothing(t *testing.T) {
	c := flight.New[int, int]()
	ctx := context.Background()
	for i := range 10000 {
		v, _, err := c.Do(ctx, i, func(context.Context) (int, error) { return i, nil })
		require.NoError(t, err)
		require.Equal(t, i, v)
	}
	wait.Until(t, "idle", idle(c))
	assert.Equal(t, 0, c.Stats().Keys)
	goleak.VerifyNone(t) // not closed: idle holds no goroutine by itself
	require.NoError(t, c.Close())
}

// Leaks after everything that can go wrong in a flight, then Close.
func TestNoLeakAfterFaults(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := flight.New[string, int](flight.WithTimeout(500 * time.Millisecond))
	ctx := context.Background()

	_, _, err := c.Do(ctx, "panic", func(context.Context) (int, error) { panic("x") })
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)

	_, _, err = c.Do(ctx, "goexit", func(context.Context) (int, error) { runtime.Goexit(); return 0, nil })
	require.ErrorIs(t, err, flight.ErrGoexit)

	_, _, err = c.Do(ctx, "timeout", func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
	require.ErrorIs(t, err, context.DeadlineExceeded)

	actx, cancel := context.WithCancel(ctx)
	started := make(chan struct{})
	abandoned := c.DoChan(actx, "abandon", func(ctx context.Context) (int, error) {
		close(started)
		<-ctx.Done()
		return 0, ctx.Err()
	})
	<-started
	cancel()
	require.ErrorIs(t, wait.Recv(t, abandoned).Err, context.Canceled)

	// Unread DoChan channels, one answered and one still waiting at Close.
	_ = c.DoChan(ctx, "unread", func(context.Context) (int, error) { return 1, nil })
	_ = c.DoChan(ctx, "unread-at-close", func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, errors.New("closed") })
	wait.Until(t, "flights", func() bool { return c.Stats().Flights >= 6 })
	require.NoError(t, c.Close())
	st := c.Stats()
	assert.Equal(t, 0, st.Keys+st.InFlight+st.Waiters, "%+v", st)
}

// Close with flights, waiters and DoChan callers in every state leaves no
// goroutine, even without the linger of idle workers.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := flight.New[string, int](flight.WithShards(3))
	for i := range 100 {
		key := fmt.Sprint(i % 10)
		_ = c.DoChan(context.Background(), key, func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
	}
	wait.Until(t, "ten flights", func() bool { return c.Stats().InFlight == 10 })
	require.NoError(t, c.Close())
}

// A coordinator dropped without Close is closed by the garbage collector:
// its shard actors leave the actor system's registry.
func TestDroppedCoordinatorIsClosed(t *testing.T) {
	before := settledActors(t)
	func() {
		c := flight.New[int, int](flight.WithShards(3))
		_, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 1, nil })
		require.NoError(t, err)
		require.Equal(t, before+3, liveActors())
	}()
	wait.Until(t, "the dropped coordinator's actors stopped", func() bool {
		runtime.GC()
		return liveActors() <= before
	})
}

// settledActors is liveActors once coordinators and batchers dropped by
// earlier tests have been collected and closed: the count no longer falls.
func settledActors(t *testing.T) int {
	t.Helper()
	prev, same := -1, 0
	wait.Until(t, "the actor count settled", func() bool {
		gc()
		time.Sleep(2 * time.Millisecond) // a collected one closes on a goroutine of its own
		n := liveActors()
		if n == prev {
			same++
		} else {
			prev, same = n, 0
		}
		return same == 5
	})
	return prev
}

// liveActors counts the processes registered in the shared actor system.
func liveActors() int {
	n := 0
	for _, m := range shared.System().ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}
