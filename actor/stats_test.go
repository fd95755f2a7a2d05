package actor

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// InFlight and Waiters share one word: an add that raises one and lowers
// the other, or that takes one to its largest value, must leave the other
// as it was (no carry or borrow between the halves).
func TestGaugesDoNotCarry(t *testing.T) {
	var s Stats
	s.AddGauges(5, 0)
	s.AddGauges(-1, 3)
	assert.Equal(t, int64(4), s.InFlight())
	assert.Equal(t, int64(3), s.Waiters())
	s.AddGauges(1, -3)
	assert.Equal(t, int64(5), s.InFlight())
	assert.Equal(t, int64(0), s.Waiters())

	s.AddGauges(0, math.MaxUint32)
	assert.Equal(t, int64(5), s.InFlight(), "Waiters at its largest left InFlight alone")
	assert.Equal(t, int64(math.MaxUint32), s.Waiters())
	s.AddGauges(-5, -math.MaxUint32)
	assert.Zero(t, s.InFlight())
	assert.Zero(t, s.Waiters())

	s.AddGauges(math.MaxUint32, 7)
	assert.Equal(t, int64(math.MaxUint32), s.InFlight())
	assert.Equal(t, int64(7), s.Waiters(), "InFlight at its largest left Waiters alone")
}

// A handler's changes to the two gauges are published by Env.Publish,
// which the owner's code calls before fn is handed to a worker and before
// a caller is answered: a worker's fn finds itself in InFlight, an answered
// caller is no longer in Waiters, and what is still pending stays out of
// Stats until the next Publish.
// Changes that cancel out publish nothing.
func TestPublishMakesTheHandlersGaugesVisible(t *testing.T) {
	s := newShardStub(t)
	ctx, cancel := context.WithCancel(context.Background()) // fn goes to a worker
	defer cancel()
	k := NewOwner("a", &s.env)
	w := &Waiter[string, int]{Ctx: ctx, Fn: fnReturning(1), Wake: make(chan struct{}, 2)}
	k.Join(w)
	require.NoError(t, w.Err)
	assert.Equal(t, int64(1), s.stats.InFlight(), "published before fn was handed to a worker")
	assert.Equal(t, int64(1), s.stats.Waiters(), "its caller with it")

	s.env.waiters++ // a change not yet published
	assert.Equal(t, int64(1), s.stats.Waiters(), "not in Stats before Publish")
	assert.Equal(t, int64(1), s.env.waiters, "pending until Publish")
	s.env.Publish()
	assert.Equal(t, int64(2), s.stats.Waiters())
	s.env.waiters--
	s.env.Publish()

	before := s.stats.gauges.Load()
	s.env.waiters++
	s.env.waiters--
	s.env.Publish()
	assert.Equal(t, before, s.stats.gauges.Load(), "changes that cancel out publish nothing")

	s.done(t, k) // Finish: the callers are answered
	assert.Equal(t, 1, w.Val)
	assert.Zero(t, s.stats.InFlight(), "published before the caller was answered")
	assert.Zero(t, s.stats.Waiters())
}
