package flight

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// batchInstruments are a Batcher's OpenTelemetry instruments, made when
// NewBatcher is given WithMeterProvider: its BatchStats as observable
// counters and up-down counters, read only when the provider collects, and
// the keys of each dispatched batch as a histogram.
type batchInstruments struct {
	batches, keysTotal, loads, joins, dropped, abandoned, panics, timeouts metric.Int64ObservableCounter
	hits, refreshes, stale                                                 metric.Int64ObservableCounter
	pending, running, waiters, liveKeys, entries                           metric.Int64ObservableUpDownCounter
	keys                                                                   metric.Int64Histogram

	observe []metric.ObserveOption
	record  []metric.RecordOption
}

// newBatchInstruments makes the instruments on the provider's meter. A nil
// result means the meter refused one; the error went to otel.Handle.
func newBatchInstruments(tc telemetryConfig) *batchInstruments {
	m := tc.provider.Meter(MeterName)
	in := &batchInstruments{}
	mk := &maker{m: m}
	counter, updown := mk.counter, mk.updown
	in.batches = counter("flight.batch.batches", "{batch}", "Calls of the batch function started.")
	in.keysTotal = counter("flight.batch.batched_keys", "{key}", "Keys passed to the batch function.")
	in.loads = counter("flight.batch.loads", "{call}", "Loads admitted.")
	in.joins = counter("flight.batch.joins", "{call}", "Loads that joined a key another load was waiting for.")
	in.dropped = counter("flight.batch.dropped", "{key}", "Keys taken out of a batch before dispatch because every caller left.")
	in.abandoned = counter("flight.batch.abandoned", "{batch}", "Running batches cancelled because every caller left.")
	in.panics = counter("flight.batch.panics", "{batch}", "Calls of the batch function that panicked or called runtime.Goexit.")
	in.timeouts = counter("flight.batch.timeouts", "{batch}", "Batches answered with the WithTimeout error.")
	in.hits = counter("flight.batch.hits", "{call}", "Loads answered from a retained result, without a batch.")
	in.refreshes = counter("flight.batch.refreshes", "{call}", "Refresh-ahead loads started.")
	in.stale = counter("flight.batch.stale", "{call}", "Loads answered with a stale value (WithStaleIfError).")
	in.entries = updown("flight.batch.entries", "{result}", "Results retained now.")
	in.pending = updown("flight.batch.pending", "{batch}", "Batches collecting keys or waiting for a slot now.")
	in.running = updown("flight.batch.running", "{batch}", "Batches whose function runs now.")
	in.waiters = updown("flight.batch.waiters", "{call}", "Loads waiting now.")
	// BatchStats.Keys; flight.batch.keys is the histogram of keys per batch.
	in.liveKeys = updown("flight.batch.waiting_keys", "{key}", "Keys with at least one load waiting now.")
	in.keys = mk.intHistogram("flight.batch.keys", "{key}", "Keys in each batch, recorded when it is dispatched.")
	var ok bool
	if in.observe, in.record, ok = mk.attributes(tc); !ok {
		return nil
	}
	return in
}

// onBatch records a dispatched batch's key count, on the collector's
// goroutine.
func (in *batchInstruments) onBatch(keys int) {
	in.keys.Record(context.Background(), int64(keys), in.record...)
}

func (in *batchInstruments) register(mp metric.MeterProvider, stats func() BatchStats) (metric.Registration, error) {
	return mp.Meter(MeterName).RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		o.ObserveInt64(in.batches, int64(s.Batches), in.observe...)
		o.ObserveInt64(in.keysTotal, int64(s.BatchedKeys), in.observe...)
		o.ObserveInt64(in.loads, int64(s.Loads), in.observe...)
		o.ObserveInt64(in.joins, int64(s.Joins), in.observe...)
		o.ObserveInt64(in.dropped, int64(s.Dropped), in.observe...)
		o.ObserveInt64(in.abandoned, int64(s.Abandoned), in.observe...)
		o.ObserveInt64(in.panics, int64(s.Panics), in.observe...)
		o.ObserveInt64(in.timeouts, int64(s.Timeouts), in.observe...)
		o.ObserveInt64(in.pending, int64(s.Pending), in.observe...)
		o.ObserveInt64(in.running, int64(s.Running), in.observe...)
		o.ObserveInt64(in.waiters, int64(s.Waiters), in.observe...)
		o.ObserveInt64(in.liveKeys, int64(s.Keys), in.observe...)
		o.ObserveInt64(in.hits, int64(s.Hits), in.observe...)
		o.ObserveInt64(in.refreshes, int64(s.Refreshes), in.observe...)
		o.ObserveInt64(in.stale, int64(s.Stale), in.observe...)
		o.ObserveInt64(in.entries, int64(s.Entries), in.observe...)
		return nil
	}, in.batches, in.keysTotal, in.loads, in.joins, in.dropped, in.abandoned, in.panics, in.timeouts,
		in.hits, in.refreshes, in.stale, in.pending, in.running, in.waiters, in.liveKeys, in.entries)
}

// startBatchTelemetry is startTelemetry for a Batcher: the instruments and
// the onBatch hook when a meter provider is given, and the route of the
// shared actor system's log lines when a logger is given. attach registers
// the Stats callback once the batcher exists and returns what Close undoes.
func startBatchTelemetry(cfg *config) (onBatch func(int), attach func(stats func() BatchStats) *telemetry) {
	var in *batchInstruments
	if cfg.telemetry.provider != nil {
		in = newBatchInstruments(cfg.telemetry)
	}
	if in != nil {
		onBatch = in.onBatch
	}
	attach = func(stats func() BatchStats) *telemetry {
		if in == nil {
			return register(cfg, nil)
		}
		return register(cfg, func() (metric.Registration, error) { return in.register(cfg.telemetry.provider, stats) })
	}
	return onBatch, attach
}
