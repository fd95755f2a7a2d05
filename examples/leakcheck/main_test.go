package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// protoactorThrottle ignores the one goroutine protoactor may leave behind
// for a moment: the timer of its dead-letter log throttle
// (protoactor-go actor/throttler.go, NewThrottle). A message sent to an
// actor that is stopped (a dead letter) starts it, if none is running, and
// it returns by itself after the system's DeadLetterThrottleInterval (1 s by
// default) — longer than goleak keeps retrying (about 0.5 s), so a test
// that ends within a second of a dead letter sees it.
//
// Its name depends on inlining: NewThrottle is inlined into NewDeadLetter
// in a normal build, and not with -gcflags=all=-l; both are listed.
//
// The coordinator itself never sends a dead letter: Close stops its actors
// only once nothing can send to them. A dead letter comes from the
// application's own actors, as in TestDeadLetterStartsTheThrottle. Rather
// than ignoring it, such code can also wait (that test does), or give its
// own system a shorter actor.WithDeadLetterThrottleInterval.
var protoactorThrottle = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),
}

// Every test of the package ends with no goroutine left but, at most,
// protoactor's throttle timer.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, protoactorThrottle...) }

func TestRunLeaksNothing(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out))
	t.Log("\n" + out.String())
	assert.Contains(t, out.String(), "6 requests")
	assert.Contains(t, out.String(), "audited: 6 quotes")
	assert.Equal(t, 3, strings.Count(out.String(), "ACME=400"))
	assert.Equal(t, 1, strings.Count(out.String(), "INITECH=700 shared=false"))
	// Strict: not even the throttle is running, since nothing sent a dead
	// letter.
	goleak.VerifyNone(t)
}

// The pattern for a test of code that uses a coordinator: use it, close
// it, and check with goleak. Idle, even before Close, the coordinator
// holds no goroutine.
func TestServiceLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	sys := quietSystem(io.Discard)
	s := NewService(sys)
	ctx := context.Background()
	for _, sym := range []string{"A", "BB", "A"} {
		cents, err := s.Price(ctx, sym)
		require.NoError(t, err)
		assert.Equal(t, int64(100*len(sym)), cents)
	}
	for range 3 {
		<-s.audited
	}
	// Idle: nothing running, not even the fn workers, which exit a few
	// milliseconds after their last flight (goleak retries meanwhile).
	goleak.VerifyNone(t)
	require.NoError(t, s.Close())
	st := s.quotes.Stats() // after Close, the gauges are final
	assert.Zero(t, st.Keys+st.InFlight+st.Waiters, "%+v", st)
	_, err := s.Price(ctx, "A")
	assert.ErrorIs(t, err, flight.ErrClosed)
}

// A dead letter in the application's own system starts protoactor's
// throttle timer. goleak reports it until it ends by itself; the options
// above ignore it.
func TestDeadLetterStartsTheThrottle(t *testing.T) {
	sys := quietSystem(io.Discard)
	s := NewService(sys)
	require.NoError(t, s.quotes.Close())
	// A bug of the kind that makes dead letters: the audit actor stopped
	// while the application still sends to it.
	require.NoError(t, sys.Root.StopFuture(s.audit).Wait())
	sys.Root.Send(s.audit, Quote{Symbol: "LATE"})

	err := goleak.Find()
	require.Error(t, err, "the throttle's timer goroutine runs")
	assert.Contains(t, err.Error(), "NewThrottle")
	assert.Contains(t, err.Error(), "actor/throttler.go")
	assert.NoError(t, goleak.Find(protoactorThrottle...), "and it is the only goroutine left")

	// It is not a leak: it returns after the throttle interval (1 s).
	wait.Until(t, "the throttle goroutine to end", func() bool { return goleak.Find() == nil })
}
