package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestImpatientCallersFallBackAndTheFlightGoesOn(t *testing.T) {
	var out bytes.Buffer
	// Wider margins than main's, for a loaded machine: every caller has
	// joined long before the first budget runs out.
	cfg := config{Query: 400 * time.Millisecond, Patient: 10 * time.Second, Impatient: 80 * time.Millisecond}
	stayed, left := run(&out, cfg)
	t.Log("\n" + out.String())

	// Phase 1. Each duration is compared with the clock that measured it:
	// a caller's budget with the caller's own start, the query's length
	// with the query's own start. Across clocks only the order of events
	// is compared: a caller that left did so before the query returned, a
	// caller that stayed was answered after it.
	assert.Equal(t, int64(1), stayed.Queries, "one query for the seven callers")
	assert.NoError(t, stayed.QueryErr, "the query finished for the callers who stayed")
	assert.GreaterOrEqual(t, stayed.QueryRan, cfg.Query, "nobody cancelled the query")
	patient := 0
	for i, a := range stayed.Answers {
		if a.Budget == cfg.Impatient {
			assert.True(t, a.Fallback, "caller %d", i)
			assert.Equal(t, fallback, a.Val)
			assert.GreaterOrEqual(t, a.Took, cfg.Impatient, "caller %d left before its budget ran out", i)
			assert.True(t, a.At.Before(stayed.Returned), "caller %d waited for the query instead of leaving", i)
			continue
		}
		patient++
		assert.False(t, a.Fallback, "caller %d", i)
		assert.Equal(t, "for you: user:42 picks", a.Val)
		assert.True(t, a.Shared)
		assert.False(t, a.At.Before(stayed.Returned), "caller %d answered before the query returned", i)
	}
	assert.Equal(t, 2, patient)
	assert.Equal(t, uint64(1), stayed.Stats.Flights)
	assert.Equal(t, uint64(6), stayed.Stats.Joins)
	assert.Zero(t, stayed.Stats.Abandoned, "two callers stayed")
	assert.Zero(t, stayed.Stats.Keys+stayed.Stats.InFlight+stayed.Stats.Waiters, "gauges after Close")

	// Phase 2: every caller leaves, so the query is cancelled: it returns
	// its ctx's error, which only a cancelled context gives it.
	assert.Equal(t, int64(1), left.Queries)
	assert.ErrorIs(t, left.QueryErr, context.Canceled, "the abandoned query's context was cancelled")
	for i, a := range left.Answers {
		assert.True(t, a.Fallback, "caller %d", i)
		assert.GreaterOrEqual(t, a.Took, cfg.Impatient, "caller %d", i)
	}
	assert.Equal(t, uint64(1), left.Stats.Flights)
	assert.Equal(t, uint64(2), left.Stats.Joins)
	assert.Equal(t, uint64(1), left.Stats.Abandoned)
	assert.Zero(t, left.Stats.Keys+left.Stats.InFlight+left.Stats.Waiters, "gauges after Close")
	assert.Contains(t, out.String(), "the query returned err=context canceled")
}
