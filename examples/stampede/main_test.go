package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStampede(t *testing.T) {
	var out bytes.Buffer
	without, with, st := run(&out, 10000, 50*time.Millisecond, 100)
	t.Log("\n" + out.String())
	assert.Zero(t, without.Errors)
	assert.Zero(t, with.Errors)
	assert.Equal(t, int64(10000), without.Calls, "without the coordinator every request queries the backend")
	// All requests are released at once and a query takes 50 ms, so nearly
	// all of them join the first flight; a straggler scheduled after it ended
	// starts another.
	assert.LessOrEqual(t, with.Calls, int64(5))
	assert.GreaterOrEqual(t, with.Calls, int64(1))
	assert.Equal(t, uint64(with.Calls), st.Flights)
	assert.Equal(t, uint64(10000)-st.Flights, st.Joins)
	assert.Zero(t, st.Keys+st.InFlight+st.Waiters, "gauges after Close")
	assert.Less(t, with.P99, without.P99)
	assert.Contains(t, out.String(), "backend calls=")
	assert.Contains(t, out.String(), "flight.Stats")
}
