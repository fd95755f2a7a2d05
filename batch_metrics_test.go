package flight_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// With WithMeterProvider, a Batcher reports its batches as a counter and the
// keys of each batch as a histogram (and its other Stats), with the
// attributes of WithMetricAttributes; Close unregisters the observed ones.
func TestBatchMetrics(t *testing.T) {
	m := newMeters(t)
	attrs := []attribute.KeyValue{attribute.String("flight.name", "rows")}
	b := flight.NewBatcher(echo(nil), flight.WithMaxBatch(10), flight.WithMaxWait(hour),
		flight.WithMeterProvider(m.provider), flight.WithMetricAttributes(attrs...))
	keys := make([]string, 25)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	pending := b.LoadChan(context.Background(), "extra") // fills a batch with the first 9
	vals, err := b.LoadMany(context.Background(), keys[:19])
	require.NoError(t, err)
	assert.Len(t, vals, 19)
	assert.Equal(t, "v:extra", (<-pending).Val)
	// A caller is answered before its shard counts it out: wait for the
	// gauges to settle before reading them.
	wait.Until(t, "the gauges settled", func() bool {
		st := b.Stats()
		return st.Waiters == 0 && st.Running == 0 && st.Pending == 0
	})

	got := m.collect(t)
	expect(t, got, attrs, map[string]int64{
		"flight.batch.batches":      2,
		"flight.batch.batched_keys": 20,
		"flight.batch.loads":        20,
		"flight.batch.pending":      0,
		"flight.batch.running":      0,
		"flight.batch.waiters":      0,
	})
	h := histogram[int64](t, got, "flight.batch.keys", attrs...)
	assert.Equal(t, uint64(2), h.Count)
	assert.Equal(t, int64(20), h.Sum)

	require.NoError(t, b.Close())
	_, ok := m.collect(t).sum(t, "flight.batch.batches", attrs...)
	assert.False(t, ok, "Close unregisters the observed instruments")
}

// Every BatchStats field has an instrument, the Keys gauge
// included (flight.batch.waiting_keys; flight.batch.keys is the histogram
// of keys per batch).
func TestBatchMetricsKeysGauge(t *testing.T) {
	m := newMeters(t)
	b := flight.NewBatcher(echo(nil), flight.WithMaxBatch(10), flight.WithMaxWait(hour),
		flight.WithMeterProvider(m.provider))
	defer b.Close()
	a, c := b.LoadChan(context.Background(), "a"), b.LoadChan(context.Background(), "c")
	b.LoadChan(context.Background(), "a")
	wait.Until(t, "three loads", func() bool { return b.Stats().Loads == 3 })
	expect(t, m.collect(t), nil, map[string]int64{
		"flight.batch.waiting_keys": 2,
		"flight.batch.waiters":      3,
		"flight.batch.pending":      1,
	})
	require.NoError(t, b.Close())
	assert.ErrorIs(t, (<-a).Err, flight.ErrClosed)
	assert.ErrorIs(t, (<-c).Err, flight.ErrClosed)
}

// The retained-results fields of BatchStats have instruments too:
// flight.batch.entries (gauge), hits, refreshes and stale (counters).
func TestBatchMetricsRetained(t *testing.T) {
	m := newMeters(t)
	b := flight.NewBatcher(echo(nil), flight.WithTTL(hour), flight.WithMaxBatch(2), flight.WithMaxWait(hour),
		flight.WithMeterProvider(m.provider))
	defer b.Close()
	_, err := b.LoadMany(context.Background(), []string{"a", "b"})
	require.NoError(t, err)
	wait.Until(t, "retained", func() bool { return b.Stats().Entries == 2 })
	for range 3 {
		_, err := b.Load(context.Background(), "a")
		require.NoError(t, err)
	}
	expect(t, m.collect(t), nil, map[string]int64{
		"flight.batch.entries":   2,
		"flight.batch.hits":      3,
		"flight.batch.refreshes": 0,
		"flight.batch.stale":     0,
		"flight.batch.loads":     2,
	})
}
