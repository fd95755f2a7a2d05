package flight

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/actorflight/flight/internal/shared"
)

// MeterName is the instrumentation scope name of the meter a Coordinator or
// a Batcher gets from the provider given with WithMeterProvider.
const MeterName = "github.com/actorflight/flight"

// WithMeterProvider makes the coordinator report OpenTelemetry metrics to
// mp: its Stats as observable counters and up-down counters, read from
// Stats only when mp collects, and two histograms, recorded as each
// execution of fn returns: its duration and its number of callers (their
// names, units and attributes:
// https://github.com/actorflight/flight/blob/main/docs/observability.md).
// Close unregisters the observable ones.
//
// Without this option, the default, the coordinator reports nothing and
// pays nothing; the global OpenTelemetry provider is never used. With it, a
// returning fn costs one time.Now and two histogram records more, on its
// shard's goroutine. New panics if mp is nil. If the meter refuses an
// instrument, the error goes to otel.Handle and the coordinator runs
// without metrics.
//
// Histogram buckets are the SDK's unless a View sets them: durations are in
// seconds, so set boundaries that suit your fn.
// Coordinators reporting to one provider with the same attributes add up;
// tell them apart with WithMetricAttributes.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return &option{id: optMeterProvider, p: mp, isNil: mp == nil}
}

// WithMetricAttributes adds attrs to every measurement the coordinator
// reports with WithMeterProvider, such as attribute.String("flight.name",
// "users") to tell apart coordinators that share a provider. Without
// WithMeterProvider it has no effect. Repeated, the lists are joined.
func WithMetricAttributes(attrs ...attribute.KeyValue) Option {
	return &option{id: optMetricAttributes, p: slices.Clone(attrs)}
}

// telemetryConfig is what WithMeterProvider and WithMetricAttributes set.
type telemetryConfig struct {
	provider metric.MeterProvider // nil: no metrics
	attrs    []attribute.KeyValue
}

// telemetry is what a Coordinator registered outside itself for metrics
// and logs, undone by close. A nil *telemetry registered nothing.
type telemetry struct {
	reg     metric.Registration // the Stats callback; nil without metrics
	unroute func()              // the shared system's log route; nil without
	once    sync.Once
}

// close unregisters the Stats callback and the log route. It is idempotent.
func (t *telemetry) close() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		if t.reg != nil {
			if err := t.reg.Unregister(); err != nil {
				otel.Handle(err)
			}
		}
		if t.unroute != nil {
			t.unroute()
		}
	})
}

// maker makes instruments on one meter and collects their errors.
type maker struct {
	m    metric.Meter
	errs []error
}

func (mk *maker) counter(name, unit, desc string) metric.Int64ObservableCounter {
	x, err := mk.m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	mk.errs = append(mk.errs, err)
	return x
}

func (mk *maker) intHistogram(name, unit, desc string) metric.Int64Histogram {
	x, err := mk.m.Int64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc))
	mk.errs = append(mk.errs, err)
	return x
}

// attributes hands the instruments' errors to otel.Handle and reports
// false, or returns the options that carry tc's attributes, made once.
func (mk *maker) attributes(tc telemetryConfig) ([]metric.ObserveOption, []metric.RecordOption, bool) {
	if err := errors.Join(mk.errs...); err != nil {
		otel.Handle(err)
		return nil, nil, false
	}
	set := metric.WithAttributeSet(attribute.NewSet(tc.attrs...))
	return []metric.ObserveOption{set}, []metric.RecordOption{set}, true
}

func (mk *maker) updown(name, unit, desc string) metric.Int64ObservableUpDownCounter {
	x, err := mk.m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	mk.errs = append(mk.errs, err)
	return x
}

// instruments are a coordinator's OpenTelemetry instruments.
type instruments struct {
	obs *observers[Stats] // observed from Stats on collection (coordinatorObserved)
	// Recorded as each execution of fn returns.
	duration metric.Float64Histogram
	callers  metric.Int64Histogram
	record   []metric.RecordOption // the attributes, made once
}

// coordinatorObserved are the observable instruments of a coordinator's
// Stats.
var coordinatorObserved = []observed[Stats]{
	{"flight.flights", "{flight}", "Executions of fn started.", false, func(s *Stats) int64 { return int64(s.Flights) }},
	{"flight.joins", "{call}", "Calls that shared another call's flight.", false, func(s *Stats) int64 { return int64(s.Joins) }},
	{"flight.panics", "{flight}", "Executions of fn that panicked or called runtime.Goexit.", false, func(s *Stats) int64 { return int64(s.Panics) }},
	{"flight.timeouts", "{flight}", "Executions stopped by WithTimeout.", false, func(s *Stats) int64 { return int64(s.Timeouts) }},
	{"flight.abandoned", "{flight}", "Flights cancelled because no caller waited for them any more.", false, func(s *Stats) int64 { return int64(s.Abandoned) }},
	{"flight.forgotten", "{flight}", "Forget calls that detached a running flight.", false, func(s *Stats) int64 { return int64(s.Forgotten) }},
	{"flight.overloaded", "{call}", "Calls refused with ErrOverloaded.", false, func(s *Stats) int64 { return int64(s.Overloaded) }},
	{"flight.hits", "{call}", "Calls answered from a retained result, without running fn.", false, func(s *Stats) int64 { return int64(s.Hits) }},
	{"flight.refreshes", "{flight}", "Background refreshes started (WithRefreshAhead).", false, func(s *Stats) int64 { return int64(s.Refreshes) }},
	{"flight.retries", "{attempt}", "Attempts of fn after a flight's first (WithRetry).", false, func(s *Stats) int64 { return int64(s.Retries) }},
	{"flight.stale", "{call}", "Calls answered with a stale value (WithStaleIfError).", false, func(s *Stats) int64 { return int64(s.Stale) }},
	{"flight.rejected", "{call}", "Calls refused with ErrOpen by an open breaker (WithBreaker).", false, func(s *Stats) int64 { return int64(s.Rejected) }},
	{"flight.in_flight", "{flight}", "Executions of fn running now.", true, func(s *Stats) int64 { return int64(s.InFlight) }},
	{"flight.waiters", "{call}", "Calls waiting for a flight now, the first caller included.", true, func(s *Stats) int64 { return int64(s.Waiters) }},
	{"flight.keys", "{key}", "Keys with a live flight actor now.", true, func(s *Stats) int64 { return int64(s.Keys) }},
	{"flight.entries", "{result}", "Results retained now (WithTTL, WithErrorTTL).", true, func(s *Stats) int64 { return int64(s.Entries) }},
	{"flight.open", "{key}", "Keys whose breaker is open now (WithBreaker).", true, func(s *Stats) int64 { return int64(s.Open) }},
}

// newInstruments makes the instruments on mp's meter. A nil result means
// the meter refused one; the error went to otel.Handle.
func newInstruments(tc telemetryConfig) *instruments {
	m := tc.provider.Meter(MeterName)
	mk := &maker{m: m}
	in := &instruments{obs: makeObservers(mk, coordinatorObserved)}
	var err error
	in.duration, err = m.Float64Histogram("flight.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of each execution of fn, from its start to its return."))
	mk.errs = append(mk.errs, err)
	in.callers = mk.intHistogram("flight.callers", "{call}", "Callers each flight had, the first included, counted once when the flight ends.")
	var ok bool
	if in.obs.observe, in.record, ok = mk.attributes(tc); !ok {
		return nil
	}
	return in
}

// onFinish records an execution's duration and, at the end of a flight
// (callers > 0; not between two attempts of WithRetry), its callers. It
// runs on the shard's goroutine (coordinator.Config.OnFinish).
func (in *instruments) onFinish(d time.Duration, callers int) {
	ctx := context.Background()
	in.duration.Record(ctx, d.Seconds(), in.record...)
	if callers > 0 {
		in.callers.Record(ctx, int64(callers), in.record...)
	}
}

// startTelemetry prepares what New registers outside the coordinator: the
// instruments (and the OnFinish hook recording the histograms) when a meter
// provider is given, and the route of the shared actor system's log lines
// to the logger when one is given and the shared system is used. attach,
// called once the coordinator exists, registers the Stats callback and
// returns what Close must undo (nil when nothing was registered).
func startTelemetry(cfg *config) (onFinish func(time.Duration, int), attach func(stats func() Stats) *telemetry) {
	var obs *observers[Stats]
	if cfg.telemetry.provider != nil {
		if in := newInstruments(cfg.telemetry); in != nil {
			onFinish, obs = in.onFinish, in.obs
		}
	}
	return onFinish, attacher(cfg, obs)
}

// register does what a Coordinator or a Batcher registers outside itself
// once it exists: its Stats callback (reg; nil without metrics) and the
// route of the shared actor system's log lines to its logger (when one is
// given and the shared system is used). It returns what Close undoes, nil
// when nothing was registered.
func register(cfg *config, reg func() (metric.Registration, error)) *telemetry {
	routeLogs := cfg.logger != discard && cfg.system == nil
	if reg == nil && !routeLogs {
		return nil
	}
	t := &telemetry{}
	if reg != nil {
		r, err := reg()
		if err != nil {
			otel.Handle(err)
		} else {
			t.reg = r
		}
	}
	if routeLogs {
		t.unroute = shared.RouteLogs(cfg.logger.Handler())
	}
	return t
}
