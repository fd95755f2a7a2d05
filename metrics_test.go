package flight_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/shared"
	"github.com/actorflight/flight/internal/wait"
)

// meters is a MeterProvider of the OpenTelemetry SDK read on demand, with
// explicit buckets for the two histograms.
type meters struct {
	reader   *sdkmetric.ManualReader
	provider *sdkmetric.MeterProvider
}

var (
	durationBounds = []float64{0.001, 0.01, 0.1, 1}
	callersBounds  = []float64{1, 2, 5}
)

func newMeters(t *testing.T) *meters {
	r := sdkmetric.NewManualReader()
	p := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r),
		sdkmetric.WithView(
			sdkmetric.NewView(sdkmetric.Instrument{Name: "flight.duration", Scope: instrumentation.Scope{Name: flight.MeterName}}, sdkmetric.Stream{
				Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: durationBounds}}),
			sdkmetric.NewView(sdkmetric.Instrument{Name: "flight.callers", Scope: instrumentation.Scope{Name: flight.MeterName}}, sdkmetric.Stream{
				Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: callersBounds}}),
		))
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })
	return &meters{reader: r, provider: p}
}

// collected is one collection: every metric by name.
type collected map[string]metricdata.Metrics

func (m *meters) collect(t *testing.T) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, m.reader.Collect(context.Background(), &rm))
	out := collected{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != flight.MeterName {
			continue
		}
		for _, x := range sm.Metrics {
			out[x.Name] = x
		}
	}
	return out
}

// sum returns the value of the observable counter or up-down counter name
// for the attribute set of attrs, and whether it has a data point for it.
func (c collected) sum(t *testing.T, name string, attrs ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	m, ok := c[name]
	if !ok {
		return 0, false
	}
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a %T", name, m.Data)
	want := attribute.NewSet(attrs...)
	for _, dp := range s.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value, true
		}
	}
	return 0, false
}

func histogram[N int64 | float64](t *testing.T, c collected, name string, attrs ...attribute.KeyValue) metricdata.HistogramDataPoint[N] {
	t.Helper()
	m, ok := c[name]
	require.True(t, ok, "no metric %s", name)
	h, ok := m.Data.(metricdata.Histogram[N])
	require.True(t, ok, "%s is a %T", name, m.Data)
	want := attribute.NewSet(attrs...)
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp
		}
	}
	t.Fatalf("no data point of %s for %v", name, attrs)
	panic("unreachable")
}

// expect asserts the observed counters and gauges of one coordinator.
func expect(t *testing.T, c collected, attrs []attribute.KeyValue, want map[string]int64) {
	t.Helper()
	for name, v := range want {
		got, ok := c.sum(t, name, attrs...)
		if assert.True(t, ok, "no data point of %s for %v", name, attrs) {
			assert.Equal(t, v, got, name)
		}
	}
}

var observed = []string{
	"flight.flights", "flight.joins", "flight.panics", "flight.timeouts", "flight.abandoned",
	"flight.forgotten", "flight.overloaded", "flight.in_flight", "flight.waiters", "flight.keys",
}

// counts returns want for every observed instrument: the ones named in
// nonZero, 0 for the others.
func counts(nonZero map[string]int64) map[string]int64 {
	m := map[string]int64{}
	for _, n := range observed {
		m[n] = nonZero[n]
	}
	return m
}

func TestMetricsReportRealValues(t *testing.T) {
	m := newMeters(t)
	start := time.Now()
	attrA := []attribute.KeyValue{attribute.String("flight.name", "a")}
	a := flight.New[string, int](flight.WithMeterProvider(m.provider), flight.WithMetricAttributes(attrA...))
	ctx := context.Background()

	// One flight with 1+4 callers, held until its gauges have been read.
	const joiners = 4
	release := make(chan struct{})
	hot := func(context.Context) (int, error) { <-release; return 1, nil }
	var hots []<-chan doResult[int]
	for range 1 + joiners {
		hots = append(hots, goDo(a, ctx, "hot", hot))
	}
	wait.Until(t, "5 waiters", waitersOf(a, 1+joiners))
	held := time.Now()
	expect(t, m.collect(t), attrA, counts(map[string]int64{
		"flight.flights": 1, "flight.joins": joiners, "flight.in_flight": 1, "flight.waiters": 1 + joiners, "flight.keys": 1,
	}))
	minHeld := time.Since(held)
	close(release)
	for _, ch := range hots {
		r := wait.Recv(t, ch)
		require.NoError(t, r.err)
		assert.True(t, r.shared)
	}

	// Three plain flights, a panic, an abandoned flight, a forgotten one.
	for i := range 3 {
		_, _, err := a.Do(ctx, fmt.Sprint("k", i), func(context.Context) (int, error) { return i, nil })
		require.NoError(t, err)
	}
	_, _, err := a.Do(ctx, "boom", func(context.Context) (int, error) { panic("boom") })
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)

	cctx, cancel := context.WithCancel(ctx)
	started := make(chan struct{})
	left := goDo(a, cctx, "abandon", func(fctx context.Context) (int, error) {
		close(started)
		<-fctx.Done()
		return 0, fctx.Err()
	})
	wait.Recv(t, started)
	cancel()
	assert.ErrorIs(t, wait.Recv(t, left).err, context.Canceled)

	release = make(chan struct{})
	running := make(chan struct{})
	forgotten := goDo(a, ctx, "forget", func(context.Context) (int, error) { close(running); <-release; return 7, nil })
	wait.Recv(t, running)
	a.Forget("forget")
	wait.Until(t, "forgotten", func() bool { return a.Stats().Forgotten == 1 })
	close(release)
	assert.Equal(t, 7, wait.Recv(t, forgotten).v)
	wait.Until(t, "idle", idle(a))

	// Two more coordinators on the same provider, reported under their own
	// attributes: one refuses a caller, one times a flight out.
	attrB := []attribute.KeyValue{attribute.String("flight.name", "b")}
	b := flight.New[string, int](flight.WithMeterProvider(m.provider), flight.WithMetricAttributes(attrB...),
		flight.WithMaxWaiters(1))
	release = make(chan struct{})
	first := goDo(b, ctx, "full", func(context.Context) (int, error) { <-release; return 1, nil })
	wait.Until(t, "b's flight", waitersOf(b, 1))
	_, _, err = b.Do(ctx, "full", func(context.Context) (int, error) { return 2, nil })
	require.ErrorIs(t, err, flight.ErrOverloaded)
	close(release)
	assert.Equal(t, 1, wait.Recv(t, first).v)
	wait.Until(t, "b idle", idle(b))

	attrC := []attribute.KeyValue{attribute.String("flight.name", "c"), attribute.Int("flight.shard_hint", 3)}
	d := flight.New[string, int](flight.WithMeterProvider(m.provider), flight.WithMetricAttributes(attrC[0]),
		flight.WithMetricAttributes(attrC[1]), flight.WithTimeout(time.Millisecond))
	_, _, err = d.Do(ctx, "slow", func(fctx context.Context) (int, error) { <-fctx.Done(); return 0, fctx.Err() })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	wait.Until(t, "d idle", idle(d))

	c := m.collect(t)
	expect(t, c, attrA, counts(map[string]int64{
		"flight.flights": 1 + 3 + 1 + 1 + 1, "flight.joins": joiners, "flight.panics": 1,
		"flight.abandoned": 1, "flight.forgotten": 1,
	}))
	expect(t, c, attrB, counts(map[string]int64{"flight.flights": 1, "flight.overloaded": 1}))
	expect(t, c, attrC, counts(map[string]int64{"flight.flights": 1, "flight.timeouts": 1}))

	// Histograms: one point per execution that returned.
	callers := histogram[int64](t, c, "flight.callers", attrA...)
	assert.Equal(t, uint64(7), callers.Count)
	assert.Equal(t, int64(5+6*1), callers.Sum)
	assert.Equal(t, callersBounds, callers.Bounds)
	assert.Equal(t, []uint64{6, 0, 1, 0}, callers.BucketCounts, "six flights of 1 caller, one of 5")
	mn, _ := callers.Min.Value()
	mx, _ := callers.Max.Value()
	assert.Equal(t, int64(1), mn)
	assert.Equal(t, int64(5), mx)

	dur := histogram[float64](t, c, "flight.duration", attrA...)
	assert.Equal(t, uint64(7), dur.Count)
	assert.Equal(t, durationBounds, dur.Bounds)
	dmax, _ := dur.Max.Value()
	assert.GreaterOrEqual(t, dmax, minHeld.Seconds(), "the held flight lasted at least as long as it was held")
	assert.LessOrEqual(t, dmax, time.Since(start).Seconds())
	assert.LessOrEqual(t, dur.Sum, 7*time.Since(start).Seconds())
	assert.Equal(t, uint64(1), histogram[float64](t, c, "flight.duration", attrB...).Count)
	assert.Equal(t, uint64(1), histogram[float64](t, c, "flight.duration", attrC...).Count)
	assert.Equal(t, []uint64{1, 0, 0, 0}, histogram[int64](t, c, "flight.callers", attrB...).BucketCounts,
		"the refused caller is not a caller of the flight")
	require.NoError(t, d.Close())

	// Close unregisters the callback: the coordinator's observable
	// instruments are no longer reported.
	require.NoError(t, a.Close())
	require.NoError(t, a.Close()) // idempotent
	c = m.collect(t)
	for _, name := range observed {
		_, ok := c.sum(t, name, attrA...)
		assert.False(t, ok, "%s still reported after Close", name)
		_, ok = c.sum(t, name, attrB...)
		assert.True(t, ok, "%s of the open coordinator", name)
	}
	require.NoError(t, b.Close())
	c = m.collect(t)
	for _, name := range observed {
		_, ok := c.sum(t, name, attrB...)
		assert.False(t, ok, "%s still reported after Close", name)
	}
}

// Coordinators sharing a provider without attributes add up.
func TestMetricsOfCoordinatorsWithoutAttributesAddUp(t *testing.T) {
	m := newMeters(t)
	a := newC[int](t, flight.WithMeterProvider(m.provider))
	b := newC[int](t, flight.WithMeterProvider(m.provider))
	for i := range 3 {
		_, _, err := a.Do(context.Background(), fmt.Sprint(i), func(context.Context) (int, error) { return 0, nil })
		require.NoError(t, err)
	}
	_, _, err := b.Do(context.Background(), "x", func(context.Context) (int, error) { return 0, nil })
	require.NoError(t, err)
	wait.Until(t, "idle", func() bool { return idle(a)() && idle(b)() })
	v, ok := m.collect(t).sum(t, "flight.flights")
	require.True(t, ok)
	assert.Equal(t, int64(4), v)
}

func TestWithMeterProviderNilPanics(t *testing.T) {
	assert.PanicsWithValue(t, "flight: WithMeterProvider(nil)", func() { flight.New[int, int](flight.WithMeterProvider(nil)) })
}

// records is a slog.Handler that keeps what it handles.
type records struct {
	mu    *sync.Mutex
	all   *[]slog.Record
	attrs []slog.Attr
}

func newRecords() *records { return &records{mu: &sync.Mutex{}, all: &[]slog.Record{}} }

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.all = append(*r.all, rec)
	return nil
}
func (r *records) WithAttrs(as []slog.Attr) slog.Handler {
	return &records{mu: r.mu, all: r.all, attrs: append(slices.Clip(r.attrs), as...)}
}
func (r *records) WithGroup(g string) slog.Handler {
	// Enough for the test below: the group is kept as an attribute.
	return r.WithAttrs([]slog.Attr{slog.String("group", g)})
}

// with returns the records whose message is msg and which have an
// attribute whose value mentions reason, each as a map of its attributes.
func (r *records) with(msg, reason string) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]string
	for _, rec := range *r.all {
		if rec.Message != msg {
			continue
		}
		m := map[string]string{"level": rec.Level.String()}
		hit := false
		rec.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			hit = hit || a.Value.String() == reason
			return true
		})
		if hit {
			out = append(out, m)
		}
	}
	return out
}

// crash makes protoactor log in the shared actor system: an actor of it
// panics with reason, and protoactor logs "[ACTOR] Recovering" and restarts
// it. The returned function waits for the restart to complete, then stops
// the actor: stopping it earlier would make protoactor's restart send to a
// stopped actor, a dead letter, whose log throttle leaves a goroutine
// running for a second (see examples/leakcheck).
func crash(t *testing.T, reason string) (stop func()) {
	t.Helper()
	sys := shared.System()
	restarted := make(chan struct{})
	starts := 0
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *actor.Started:
			if starts++; starts == 2 {
				close(restarted)
			}
		case string:
			panic(m)
		}
	}))
	sys.Root.Send(pid, reason)
	return func() {
		wait.Recv(t, restarted)
		require.NoError(t, sys.Root.StopFuture(pid).Wait())
	}
}

func TestWithLoggerRoutesProtoactorLogs(t *testing.T) {
	const msg = "[ACTOR] Recovering"
	r1, r2 := newRecords(), newRecords()
	c1 := flight.New[int, int](flight.WithLogger(slog.New(r1)))
	c2 := flight.New[int, int](flight.WithLogger(slog.New(r2)))
	c3 := flight.New[int, int](flight.WithLogger(slog.New(r2))) // same handler: no duplicate line
	quiet := newRecords()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	own := flight.New[int, int](flight.WithLogger(slog.New(quiet)), flight.WithActorSystem(sys))

	stop := crash(t, "crash-1")
	wait.Until(t, "first line in both", func() bool {
		return len(r1.with(msg, "crash-1")) == 1 && len(r2.with(msg, "crash-1")) == 1
	})
	stop()
	line := r1.with(msg, "crash-1")[0]
	assert.Equal(t, "protoactor", line["component"])
	assert.Equal(t, "INFO", line["level"])
	assert.Contains(t, line, "self", "protoactor's own attributes are kept")
	assert.Empty(t, quiet.with(msg, "crash-1"), "a coordinator on its own system does not route the shared one")

	// After Close a logger gets nothing more; the other still does.
	require.NoError(t, c1.Close())
	stop = crash(t, "crash-2")
	wait.Until(t, "second line", func() bool { return len(r2.with(msg, "crash-2")) == 1 })
	stop()
	assert.Empty(t, r1.with(msg, "crash-2"))
	require.NoError(t, c2.Close())
	stop = crash(t, "crash-3")
	wait.Until(t, "third line", func() bool { return len(r2.with(msg, "crash-3")) == 1 })
	stop()
	require.NoError(t, c3.Close())
	require.NoError(t, own.Close())
	assert.Equal(t, 1, len(r2.with(msg, "crash-2")), "once per distinct handler")
	r2.mu.Lock()
	defer r2.mu.Unlock()
	for _, rec := range *r2.all {
		assert.NotEqual(t, "[DeadLetter]", rec.Message, "crash stops its actor only after the restart")
	}
}

// Without WithLogger nothing is routed: the shared system stays silent.
func TestSharedSystemSilentByDefault(t *testing.T) {
	c := flight.New[int, int]()
	defer c.Close()
	assert.False(t, shared.System().Logger().Enabled(context.Background(), slog.LevelError))
	r := newRecords()
	c2 := flight.New[int, int](flight.WithLogger(slog.New(r)))
	assert.True(t, shared.System().Logger().Enabled(context.Background(), slog.LevelInfo))
	require.NoError(t, c2.Close())
	assert.False(t, shared.System().Logger().Enabled(context.Background(), slog.LevelError))
}

// Lines logged through a logger derived with With and WithGroup keep their
// attributes, and the route's component attribute comes first.
func TestSystemLogsKeepDerivedAttributes(t *testing.T) {
	r := newRecords()
	c := flight.New[int, int](flight.WithLogger(slog.New(r)))
	l := shared.System().Logger().With("lib", "test").WithGroup("g")
	l.Warn("derived line", "n", 1)
	require.NoError(t, c.Close())
	l.Warn("derived line", "n", 2) // after Close: dropped
	got := r.with("derived line", "1")
	require.Len(t, got, 1)
	assert.Equal(t, map[string]string{"level": "WARN", "n": "1", "component": "protoactor", "lib": "test", "group": "g"}, got[0])
	assert.Empty(t, r.with("derived line", "2"))
}

// The cost of WithMeterProvider on distinct-key flights (each one records
// the two histograms), against the same coordinator without it; and of one
// collection of the observable instruments.
//
//	go test -run '^$' -bench Metrics -count 6 .
func BenchmarkMetrics(b *testing.B) {
	fn := func(context.Context) (int, error) { return 0, nil }
	for _, bc := range []struct {
		name string
		opts func(*sdkmetric.MeterProvider) []flight.Option
	}{
		{"none", func(*sdkmetric.MeterProvider) []flight.Option { return nil }},
		{"provider", func(p *sdkmetric.MeterProvider) []flight.Option {
			return []flight.Option{flight.WithMeterProvider(p), flight.WithMetricAttributes(attribute.String("flight.name", "bench"))}
		}},
	} {
		b.Run("Do/"+bc.name, func(b *testing.B) {
			p := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			defer p.Shutdown(context.Background())
			c := flight.New[int64, int](bc.opts(p)...)
			defer c.Close()
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := c.Do(context.Background(), next.Add(1), fn); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	b.Run("Collect", func(b *testing.B) {
		r := sdkmetric.NewManualReader()
		p := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
		defer p.Shutdown(context.Background())
		c := flight.New[int, int](flight.WithMeterProvider(p))
		defer c.Close()
		var rm metricdata.ResourceMetrics
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Collect(context.Background(), &rm); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A provider that records nothing (the API's no-op one) is accepted.
func TestMetricsWithNoopProvider(t *testing.T) {
	c := flight.New[int, int](flight.WithMeterProvider(noop.NewMeterProvider()))
	v, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 5, nil })
	require.NoError(t, err)
	assert.Equal(t, 5, v)
	require.NoError(t, c.Close())
}

// refusingProvider's meter refuses one instrument, as an SDK does for a
// name it rejects.
type refusingProvider struct{ noop.MeterProvider }
type refusingMeter struct{ noop.Meter }

func (refusingProvider) Meter(string, ...metric.MeterOption) metric.Meter { return refusingMeter{} }
func (refusingMeter) Int64Histogram(string, ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	return nil, errors.New("refused")
}
func (refusingMeter) RegisterCallback(metric.Callback, ...metric.Observable) (metric.Registration, error) {
	panic("a callback registered despite a refused instrument")
}

// A refused instrument goes to otel.Handle; the coordinator runs without
// metrics.
func TestMetricsRefusedInstrument(t *testing.T) {
	var mu sync.Mutex
	var handled []error
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, err)
	}))
	defer otel.SetErrorHandler(prev)

	c := flight.New[int, int](flight.WithMeterProvider(refusingProvider{}))
	v, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 5, nil })
	require.NoError(t, err)
	assert.Equal(t, 5, v)
	require.NoError(t, c.Close())
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, handled, 1)
	assert.ErrorContains(t, handled[0], "refused")
}

// panicMeter is a MeterProvider whose Int64 histograms panic on Record.
type panicMeter struct{ noop.MeterProvider }

func (panicMeter) Meter(string, ...metric.MeterOption) metric.Meter { return panicMeterM{} }

type panicMeterM struct{ noop.Meter }

func (panicMeterM) Int64Histogram(string, ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	return panicRecord{}, nil
}

type panicRecord struct{ noop.Int64Histogram }

func (panicRecord) Record(context.Context, int64, ...metric.RecordOption) { panic("the meter failed") }

// A meter that panics as a batch is dispatched fails that batch's callers
// with a *PanicError and leaves nothing behind: the batch's span, started
// just before, ends with the Error status, and the gauges return to 0.
func TestPanickingMeterBatch(t *testing.T) {
	x := newTraced(t)
	b := flight.NewBatcher(func(_ context.Context, keys []string) (map[string]int, error) {
		return map[string]int{keys[0]: 1}, nil
	}, flight.WithMeterProvider(panicMeter{}), flight.WithTracerProvider(x.tp), flight.WithMaxBatch(1))
	ctx, sp := x.caller("caller")
	_, err := b.Load(ctx, "k")
	sp.End()
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)
	require.NoError(t, b.Close())
	st := b.Stats()
	assert.Zero(t, st.Pending, "pending batches")
	assert.Zero(t, st.Waiters, "waiting loads")
	spans := x.ended("flight.batch")
	require.Len(t, spans, 1, "flight.batch ended")
	assert.Equal(t, "Error", spans[0].Status().Code.String())
}
