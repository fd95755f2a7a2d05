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

	assert.Equal(t, int64(1), stayed.Queries, "one query for the seven callers")
	assert.NoError(t, stayed.QueryErr, "the query finished for the callers who stayed")
	patient := 0
	for i, a := range stayed.Answers {
		if a.Budget == cfg.Impatient {
			assert.True(t, a.Fallback, "caller %d", i)
			assert.Equal(t, fallback, a.Val)
			assert.GreaterOrEqual(t, a.Took, cfg.Impatient)
			assert.Less(t, a.Took, cfg.Query, "caller %d did not wait for the query", i)
			continue
		}
		patient++
		assert.False(t, a.Fallback, "caller %d", i)
		assert.Equal(t, "for you: user:42 picks", a.Val)
		assert.True(t, a.Shared)
		assert.GreaterOrEqual(t, a.Took, cfg.Query)
	}
	assert.Equal(t, 2, patient)
	assert.Equal(t, uint64(1), stayed.Stats.Flights)
	assert.Equal(t, uint64(6), stayed.Stats.Joins)
	assert.Zero(t, stayed.Stats.Abandoned)
	assert.Zero(t, stayed.Stats.Keys+stayed.Stats.InFlight+stayed.Stats.Waiters)

	assert.Equal(t, int64(1), left.Queries)
	assert.ErrorIs(t, left.QueryErr, context.Canceled, "the abandoned query's context was cancelled")
	for _, a := range left.Answers {
		assert.True(t, a.Fallback)
		assert.Less(t, a.Took, cfg.Query)
	}
	assert.Equal(t, uint64(1), left.Stats.Abandoned)
	assert.Equal(t, uint64(2), left.Stats.Flights)
	assert.Zero(t, left.Stats.Keys+left.Stats.InFlight+left.Stats.Waiters)
	assert.Contains(t, out.String(), "the query returned err=context canceled")
}
