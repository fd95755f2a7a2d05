package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Servers, client connections, the coordinator and the cache's goroutines
// are all gone when the run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCacheAsideStopsTheStampede(t *testing.T) {
	var out bytes.Buffer
	cfg := config{Keys: 4, Requests: 200, Latency: 50 * time.Millisecond, TTL: time.Minute}
	rep, err := run(&out, cfg)
	t.Log("\n" + out.String())
	require.NoError(t, err)
	n := int64(cfg.Requests)

	// Without the coordinator, concurrent misses of one item each call the
	// upstream.
	a := rep.Alone
	assert.Zero(t, a.Errors)
	assert.Equal(t, n, a.Hits+a.Misses, "every request is a hit or its own load")
	assert.Zero(t, a.Shared)
	assert.Equal(t, a.Misses, a.UpstreamCalls)
	assert.Greater(t, a.UpstreamCalls, int64(cfg.Keys), "a stampede: more upstream calls than items")

	// With it, one upstream call per item, whatever the timing: a request
	// that missed the cache either joins the item's flight or starts one
	// that finds the cache filled.
	c := rep.Cold
	assert.Zero(t, c.Errors)
	assert.Equal(t, int64(cfg.Keys), c.UpstreamCalls)
	assert.Equal(t, n, c.Hits+c.Misses+c.Shared)
	st := rep.Stats
	assert.Equal(t, uint64(n-c.Hits), st.Flights+st.Joins, "every miss started or joined a flight")
	assert.GreaterOrEqual(t, st.Flights, uint64(cfg.Keys))
	assert.Zero(t, st.Keys+st.InFlight+st.Waiters, "idle after the burst")

	// The same figures through OpenTelemetry, and the duration histogram:
	// the executions that called the upstream took over 50 ms, the others
	// (a request that found the cache filled on its second look) far less.
	m := rep.Metrics
	assert.Equal(t, int64(st.Flights), m.Flights)
	assert.Equal(t, int64(st.Joins), m.Joins)
	assert.Equal(t, st.Flights, m.Executions)
	assert.Equal(t, int64(st.Flights+st.Joins), m.Callers)
	require.Equal(t, durationBounds, m.DurationBounds)
	require.Len(t, m.DurationBucketCounts, len(durationBounds)+1)
	var slow, total uint64
	for i, n := range m.DurationBucketCounts {
		total += n
		if i >= 3 { // above 0.05 s
			slow += n
		}
	}
	assert.Equal(t, m.Executions, total)
	assert.Equal(t, uint64(c.UpstreamCalls), slow)

	w := rep.Warm
	assert.Zero(t, w.Errors)
	assert.Equal(t, n, w.Hits)
	assert.Zero(t, w.UpstreamCalls)

	for _, b := range []burst{a, c, w} {
		assert.LessOrEqual(t, b.P50, b.P90)
		assert.LessOrEqual(t, b.P90, b.P99)
		assert.LessOrEqual(t, b.P99, b.Max)
		assert.Positive(t, b.P50)
	}
	assert.GreaterOrEqual(t, c.Max, cfg.Latency, "a cold request waits for the upstream")
	assert.Contains(t, out.String(), "cache-aside + flight, warm cache: 200 requests")
}
