package main

import (
	"bytes"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"

	"github.com/actorflight/flight"
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

// Act two, in a synctest bubble (fake time, so the waves and cooldowns
// fall exactly): the upstream fails for 100 waves; every caller still gets
// a value, and the upstream sees 3 failed flights per key and then one
// trial per key per cooldown.
func TestOutage(t *testing.T) {
	flight.New[int, int]().Close() // the shared actor system outlives the bubble
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		r := outage(&out, defaultOutage)
		t.Log("\n" + out.String())
		// Up: each key's value is fetched at wave 0 and again once its TTL
		// of 10 waves has passed.
		assert.Equal(t, phase{Upstream: 20, Calls: 1500, Fresh: 1500}, r.Before)
		// Down: the value fetched at wave 11 is fresh until wave 21 (700
		// hits); then 3 failed flights per key (answered stale), the breaker
		// opens, and one trial per key every cooldown + half a unit (waves
		// 45, 66, 87, 108): 7 upstream calls per key instead of one per wave.
		assert.Equal(t, phase{Upstream: 70, Calls: 10000, Fresh: 700, Stale: 9300, OpenAtEnd: 10}, r.Down)
		// Back up: the breakers still hold until their next trial (wave
		// 129), which succeeds; then the value is fresh, and fetched again
		// after its TTL.
		assert.Equal(t, phase{Upstream: 20, Calls: 3500, Fresh: 2100, Stale: 1400}, r.After)
		assert.Equal(t, uint64(10700), r.Stats.Stale)
		assert.Zero(t, r.Stats.Rejected, "every open breaker had a stale value to give")
		assert.Equal(t, uint64(110), r.Stats.Flights)
		assert.Contains(t, out.String(), "upstream calls: 70 (one flight per key per wave would be 1000)")
	})
}
