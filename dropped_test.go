package flight_test

// A coordinator dropped without Close: the garbage collector closes it
// only when no call is in progress, and closing it removes its log route
// and its metrics registration.

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// gc runs the garbage collector enough times for cleanups to be queued and
// run (a cleanup runs on its own goroutine after the cycle that found its
// object unreachable).
func gc() {
	for range 5 {
		runtime.GC()
		runtime.Gosched()
	}
}

// A DoChan call on a coordinator nobody references any more is still
// answered with fn's result: the call in progress keeps the coordinator
// alive, so the garbage collector does not close it.
func TestDroppedCoordinatorAnswersDoChanInProgress(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	var fnErr error
	ch := func() <-chan flight.Result[int] {
		return flight.New[string, int]().DoChan(context.Background(), "k", func(ctx context.Context) (int, error) {
			close(started)
			select {
			case <-release:
				return 42, nil
			case <-ctx.Done():
				fnErr = ctx.Err()
				return 0, ctx.Err()
			}
		})
	}()
	<-started
	gc()
	close(release)
	r := wait.Recv(t, ch)
	require.NoError(t, r.Err, "fn's ctx: %v", fnErr)
	assert.Equal(t, 42, r.Val)
}

// The same with 100 goroutines blocked in Do on a local coordinator whose
// variable is dead once the last of them has called Do.
func TestDroppedCoordinatorAnswersDoInProgress(t *testing.T) {
	release := make(chan struct{})
	errs := make([]error, 100)
	var wg sync.WaitGroup
	func() {
		c := flight.New[string, int]()
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, errs[i] = c.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
					select {
					case <-release:
						return 1, nil
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				})
			}()
		}
		wait.Until(t, "100 waiters", waitersOf(c, len(errs)))
	}()
	gc()
	close(release)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "caller %d", i)
	}
}

// A coordinator dropped idle with WithLogger is closed by the garbage
// collector, and its route for protoactor's log lines goes with it.
func TestDroppedCoordinatorRemovesLogRoute(t *testing.T) {
	before := flight.LogRoutes()
	func() {
		c := flight.New[int, int](flight.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		_, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 1, nil })
		require.NoError(t, err)
		require.Equal(t, before+1, flight.LogRoutes())
	}()
	wait.Until(t, "the dropped coordinator's log route removed", func() bool {
		gc()
		return flight.LogRoutes() == before
	})
}

// A coordinator dropped idle with WithMeterProvider is collected too (the
// metrics callback does not hold it), and its metrics are unregistered.
func TestDroppedCoordinatorUnregistersMetrics(t *testing.T) {
	m := newMeters(t)
	attr := attribute.String("flight.name", "dropped")
	func() {
		c := flight.New[int, int](flight.WithMeterProvider(m.provider), flight.WithMetricAttributes(attr))
		_, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 1, nil })
		require.NoError(t, err)
		v, ok := m.collect(t).sum(t, "flight.flights", attr)
		require.True(t, ok)
		require.Equal(t, int64(1), v)
	}()
	wait.Until(t, "the dropped coordinator's metrics unregistered", func() bool {
		gc()
		_, ok := m.collect(t).sum(t, "flight.flights", attr)
		return !ok
	})
}
