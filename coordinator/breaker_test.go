package coordinator

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	fa "github.com/actorflight/flight/actor"

	"github.com/actorflight/flight/internal/shared"
)

var errOpen = errors.New("flight: circuit open")

// breakerView is what a probe read of a shard's breakers saw.
type breakerView struct {
	states, queued int
	armed          bool
}

type probeMsg struct{ done chan breakerView }

// inspect reads the breakers of c's only shard on the shard's own
// goroutine: a probe message, read by the test hook before Receive ignores
// it.
func inspect(t *testing.T, c *Engine[string, string, result]) breakerView {
	t.Helper()
	f := func(msg any) bool {
		if p, ok := msg.(probeMsg); ok {
			b := c.shards[0].brk
			p.done <- breakerView{states: len(b.m), queued: len(b.q) - b.first, armed: b.armed}
		}
		return false
	}
	fault.Store(&f)
	defer fault.Store(nil)
	p := probeMsg{done: make(chan breakerView, 1)}
	c.shards[0].postInternal(p)
	return <-p.done
}

// Breaker states are dropped by their shard's timer without any caller
// asking, and once none is left no timer is armed: a key that failed once,
// one whose breaker opened and went half-open untried, and one whose
// breaker closed again all leave nothing behind.
func TestBreakerLeavesNothingBehind(t *testing.T) {
	shared.System()
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(0)
		cfg.Breaker = BreakerConfig{Failures: 2, Cooldown: time.Minute}
		cfg.ErrOpen = errOpen
		c, err := New[string, string, result](cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fail := func(context.Context) (string, error) { return "", errors.New("down") }
		ok := func(context.Context) (string, error) { return "ok", nil }
		ctx := context.Background()
		c.Do(ctx, "once", fail)
		c.Do(ctx, "open", fail)
		c.Do(ctx, "open", fail)
		c.Do(ctx, "healed", fail)
		c.Do(ctx, "healed", ok)
		if _, _, err := c.Do(ctx, "open", fail); err != errOpen {
			t.Fatalf("open: %v", err)
		}
		if v := inspect(t, c); v.states != 2 || !v.armed || v.queued != 4 {
			t.Fatalf("after the failures: %+v; want 2 states (once, open), 4 deadlines, the timer armed", v)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if v := inspect(t, c); v.states != 1 || !v.armed || v.queued != 1 {
			t.Fatalf("after one cooldown: %+v; want the half-open state and its deadline", v)
		}
		if n := c.Stats().Open; n != 0 {
			t.Fatalf("Open = %d after the cooldown", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if v := inspect(t, c); v != (breakerView{}) {
			t.Fatalf("after two cooldowns: %+v; want nothing", v)
		}
		if _, _, err := c.Do(ctx, "open", fail); err == errOpen {
			t.Fatal("the dropped breaker still refuses")
		}
		c.Do(ctx, "again", fail)
		c.Close()
		// The shard has stopped: its state can be read directly.
		if b := c.shards[0].brk; len(b.m) != 0 || b.n.Load() != 0 || c.Stats().Open != 0 {
			t.Fatalf("after Close: %d states", len(b.m))
		}
	})
}

// A call that passed the caller-side check while the breaker was closed,
// and whose join the shard handles after the failure that opened it, is
// refused by the shard itself: with ErrOpen, or with the stale value.
func TestBreakerOpenedWhileJoinQueued(t *testing.T) {
	for _, stale := range []bool{false, true} {
		cfg := testConfig(0)
		cfg.Breaker = BreakerConfig{Failures: 1, Cooldown: time.Hour}
		cfg.ErrOpen = errOpen
		cfg.Errors.Stale = errors.New("stale marker")
		if stale {
			cfg.Retain = RetainConfig{TTL: time.Nanosecond, Stale: time.Hour, MaxEntries: 10}
		}
		c, err := New[string, string, result](cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if stale {
			c.Do(ctx, "k", func(context.Context) (string, error) { return "good", nil })
			time.Sleep(time.Microsecond) // past its TTL
		}
		// As the shard is about to handle the Done of the failing flight,
		// another caller makes its call: it finds the breaker closed and
		// posts its join behind the Done.
		queued := make(chan (<-chan result), 1)
		f := func(msg any) bool {
			if _, ok := msg.(fa.Done[string, string]); ok && len(queued) == 0 {
				got := make(chan (<-chan result), 1)
				go func() {
					got <- c.DoChan(ctx, "k", func(context.Context) (string, error) { return "ran", nil }, nil)
				}()
				queued <- <-got
			}
			return false
		}
		fault.Store(&f)
		first := <-c.DoChan(ctx, "k", func(context.Context) (string, error) { return "", errors.New("down") }, nil)
		fault.Store(nil)
		if stale != (first.err == cfg.Errors.Stale) {
			t.Fatalf("the failing flight answered %+v", first)
		}
		r := <-<-queued
		switch {
		case stale && (r.v != "good" || r.err != cfg.Errors.Stale || !r.shared):
			t.Fatalf("with a stale value: %+v", r)
		case !stale && r.err != errOpen:
			t.Fatalf("without: %+v", r)
		}
		st := c.Stats()
		if st.Flights != map[bool]uint64{false: 1, true: 2}[stale] {
			t.Fatalf("%d flights: the queued call ran fn", st.Flights)
		}
		c.Close()
	}
}
