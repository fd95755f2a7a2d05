package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// 100 payments, each sent three times: the upstream is charged once per
// payment, and every retry gets the first answer (a receipt, or the decline
// kept by WithErrorTTL).
func TestIdempotency(t *testing.T) {
	var out bytes.Buffer
	r := run(&out, 100)
	t.Log("\n" + out.String())
	assert.Equal(t, int64(100), r.Charges, "one charge per payment, not per request")
	assert.Equal(t, int64(10), r.Declines)
	assert.Equal(t, 270, r.Receipts)
	assert.Equal(t, 30, r.Declined)
	assert.True(t, r.Same, "every retry got the first answer")
	assert.Equal(t, uint64(100), r.Stats.Flights)
	assert.Equal(t, uint64(200), r.Stats.Joins+r.Stats.Hits, "the 200 retries joined or hit")
	assert.GreaterOrEqual(t, r.Stats.Hits, uint64(100), "every late retry was served from the window")
	assert.Zero(t, r.Stats.Keys+r.Stats.InFlight+r.Stats.Waiters+r.Stats.Entries, "gauges after Close")
}
