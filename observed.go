package flight

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// observed is one observable instrument of a Coordinator's Stats or a
// Batcher's BatchStats (S): its name, unit and description, whether it is
// an up-down counter (a gauge) rather than a counter, and the field of a
// reading it observes.
type observed[S any] struct {
	name, unit, desc string
	updown           bool
	read             func(*S) int64
}

// observers are the observable instruments of one table of observed,
// made on one meter, and the attributes they are observed with.
type observers[S any] struct {
	table   []observed[S]
	insts   []metric.Int64Observable // insts[i] observes table[i]
	observe []metric.ObserveOption
}

// makeObservers makes table's instruments with mk (errors are mk's, see
// maker.attributes).
func makeObservers[S any](mk *maker, table []observed[S]) *observers[S] {
	o := &observers[S]{table: table, insts: make([]metric.Int64Observable, len(table))}
	for i, x := range table {
		if x.updown {
			o.insts[i] = mk.updown(x.name, x.unit, x.desc)
		} else {
			o.insts[i] = mk.counter(x.name, x.unit, x.desc)
		}
	}
	return o
}

// register registers the callback that observes a reading of stats on
// each collection.
func (o *observers[S]) register(mp metric.MeterProvider, stats func() S) (metric.Registration, error) {
	all := make([]metric.Observable, len(o.insts))
	for i, in := range o.insts {
		all[i] = in
	}
	return mp.Meter(MeterName).RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		s := stats()
		for i, in := range o.insts {
			ob.ObserveInt64(in, o.table[i].read(&s), o.observe...)
		}
		return nil
	}, all...)
}

// attachTelemetry registers, once a Coordinator or a Batcher exists, o's
// callback on stats (o nil: no metrics; stats is then unused) and the log
// route, and returns what Close undoes (see register).
func attachTelemetry[S any](cfg *config, o *observers[S], stats func() S) *telemetry {
	if o == nil {
		return register(cfg, nil)
	}
	return register(cfg, func() (metric.Registration, error) { return o.register(cfg.telemetry.provider, stats) })
}

// attacher returns attachTelemetry for cfg and o, to be called with stats.
func attacher[S any](cfg *config, o *observers[S]) func(stats func() S) *telemetry {
	return func(stats func() S) *telemetry { return attachTelemetry(cfg, o, stats) }
}
