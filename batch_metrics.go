package flight

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// batchInstruments are a Batcher's OpenTelemetry instruments, made when
// NewBatcher is given WithMeterProvider: its BatchStats as observable
// counters and up-down counters (batchObserved), read only when the
// provider collects, and the keys of each dispatched batch as a histogram.
type batchInstruments struct {
	obs    *observers[BatchStats]
	keys   metric.Int64Histogram
	record []metric.RecordOption
}

// batchObserved are the observable instruments of a Batcher's BatchStats.
var batchObserved = []observed[BatchStats]{
	{"flight.batch.batches", "{batch}", "Calls of the batch function started.", false, func(s *BatchStats) int64 { return int64(s.Batches) }},
	{"flight.batch.batched_keys", "{key}", "Keys passed to the batch function.", false, func(s *BatchStats) int64 { return int64(s.BatchedKeys) }},
	{"flight.batch.loads", "{call}", "Loads admitted.", false, func(s *BatchStats) int64 { return int64(s.Loads) }},
	{"flight.batch.joins", "{call}", "Loads that joined a key another load was waiting for.", false, func(s *BatchStats) int64 { return int64(s.Joins) }},
	{"flight.batch.dropped", "{key}", "Keys taken out of a batch before dispatch because every caller left.", false, func(s *BatchStats) int64 { return int64(s.Dropped) }},
	{"flight.batch.abandoned", "{batch}", "Running batches cancelled because every caller left.", false, func(s *BatchStats) int64 { return int64(s.Abandoned) }},
	{"flight.batch.panics", "{batch}", "Calls of the batch function that panicked or called runtime.Goexit.", false, func(s *BatchStats) int64 { return int64(s.Panics) }},
	{"flight.batch.timeouts", "{batch}", "Batches answered with the WithTimeout error.", false, func(s *BatchStats) int64 { return int64(s.Timeouts) }},
	{"flight.batch.hits", "{call}", "Loads answered from a retained result, without a batch.", false, func(s *BatchStats) int64 { return int64(s.Hits) }},
	{"flight.batch.refreshes", "{call}", "Refresh-ahead loads started.", false, func(s *BatchStats) int64 { return int64(s.Refreshes) }},
	{"flight.batch.stale", "{call}", "Loads answered with a stale value (WithStaleIfError).", false, func(s *BatchStats) int64 { return int64(s.Stale) }},
	{"flight.batch.entries", "{result}", "Results retained now.", true, func(s *BatchStats) int64 { return int64(s.Entries) }},
	{"flight.batch.pending", "{batch}", "Batches collecting keys or waiting for a slot now.", true, func(s *BatchStats) int64 { return int64(s.Pending) }},
	{"flight.batch.running", "{batch}", "Batches whose function runs now.", true, func(s *BatchStats) int64 { return int64(s.Running) }},
	{"flight.batch.waiters", "{call}", "Loads waiting now.", true, func(s *BatchStats) int64 { return int64(s.Waiters) }},
	// BatchStats.Keys; flight.batch.keys is the histogram of keys per batch.
	{"flight.batch.waiting_keys", "{key}", "Keys with at least one load waiting now.", true, func(s *BatchStats) int64 { return int64(s.Keys) }},
}

// newBatchInstruments makes the instruments on the provider's meter. A nil
// result means the meter refused one; the error went to otel.Handle.
func newBatchInstruments(tc telemetryConfig) *batchInstruments {
	mk := &maker{m: tc.provider.Meter(MeterName)}
	in := &batchInstruments{obs: makeObservers(mk, batchObserved)}
	in.keys = mk.intHistogram("flight.batch.keys", "{key}", "Keys in each batch, recorded when it is dispatched.")
	var ok bool
	if in.obs.observe, in.record, ok = mk.attributes(tc); !ok {
		return nil
	}
	return in
}

// onBatch records a dispatched batch's key count, on the collector's
// goroutine.
func (in *batchInstruments) onBatch(keys int) {
	in.keys.Record(context.Background(), int64(keys), in.record...)
}

// startBatchTelemetry is startTelemetry for a Batcher: the instruments and
// the onBatch hook when a meter provider is given (obs nil: none);
// attachTelemetry registers them, and the route of the shared actor
// system's log lines, once the batcher exists.
func startBatchTelemetry(cfg *config) (onBatch func(int), obs *observers[BatchStats]) {
	if cfg.telemetry.provider != nil {
		if in := newBatchInstruments(cfg.telemetry); in != nil {
			onBatch, obs = in.onBatch, in.obs
		}
	}
	return onBatch, obs
}
