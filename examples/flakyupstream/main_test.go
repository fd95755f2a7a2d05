package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// 1,000 callers over 10 keys against an upstream that fails the first two
// calls of each key: 3 upstream calls per key, every caller answered with
// its key's value, and two waits per flight.
func TestFlakyUpstream(t *testing.T) {
	var out bytes.Buffer
	r := run(&out, 1000, 10, 2)
	t.Log("\n" + out.String())
	assert.Equal(t, int64(30), r.Upstream, "one retry loop per key, not per caller")
	assert.Equal(t, 1000, r.OK)
	assert.Zero(t, r.Fail)
	assert.True(t, r.Same)
	assert.Equal(t, 20, r.Waits)
	assert.Equal(t, uint64(20), r.Stats.Retries)
	assert.Equal(t, uint64(30), r.Stats.Flights)
	assert.Zero(t, r.Stats.Keys+r.Stats.InFlight+r.Stats.Waiters, "gauges after Close")
	assert.Contains(t, out.String(), "upstream calls: 30")
}
