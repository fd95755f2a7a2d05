package flight_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/tracing"
	"github.com/actorflight/flight/internal/wait"
)

// traced is a span recorder on an always-sampling SDK provider, and a
// tracer of that provider for the test's own caller spans.
type traced struct {
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
	tr  trace.Tracer
}

func newTraced(t testing.TB) *traced {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &traced{rec: rec, tp: tp, tr: tp.Tracer("test")}
}

// caller starts a caller's span named name.
func (x *traced) caller(name string) (context.Context, trace.Span) {
	return x.tr.Start(context.Background(), name)
}

// ended returns the ended spans named name, in the order they ended.
func (x *traced) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range x.rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrOf(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func intAttr(t *testing.T, s sdktrace.ReadOnlySpan, key attribute.Key) int64 {
	t.Helper()
	v, ok := attrOf(s, key)
	require.True(t, ok, "span %s has no %s", s.Name(), key)
	return v.AsInt64()
}

// linked returns the span ids s links to, each as often as it is linked.
func linked(s sdktrace.ReadOnlySpan) []trace.SpanID {
	var ids []trace.SpanID
	for _, l := range s.Links() {
		ids = append(ids, l.SpanContext.SpanID())
	}
	return ids
}

func idOf(sp trace.Span) trace.SpanID { return sp.SpanContext().SpanID() }

// One execution, one flight.run span: a child of the first caller's span,
// with its attributes; fn's ctx carries it, so fn's own spans nest under it.
func TestTraceRunSpan(t *testing.T) {
	x := newTraced(t)
	c := newC[int](t, flight.WithTracerProvider(x.tp))
	ctx, sp := x.caller("request")
	var inner trace.SpanContext
	v, shared, err := c.Do(ctx, "k", func(ctx context.Context) (int, error) {
		_, child := x.tr.Start(ctx, "query")
		inner = child.SpanContext()
		child.End()
		return 7, nil
	})
	sp.End()
	require.NoError(t, err)
	assert.Equal(t, 7, v)
	assert.False(t, shared)

	runs := x.ended(tracing.RunSpan)
	require.Len(t, runs, 1)
	run := runs[0]
	assert.Equal(t, idOf(sp), run.Parent().SpanID(), "a child of the first caller's span")
	assert.Equal(t, sp.SpanContext().TraceID(), run.SpanContext().TraceID())
	assert.Equal(t, int64(1), intAttr(t, run, tracing.Attempt))
	refresh, ok := attrOf(run, tracing.Refresh)
	require.True(t, ok)
	assert.False(t, refresh.AsBool())
	assert.Equal(t, int64(1), intAttr(t, run, tracing.Callers))
	assert.Empty(t, run.Links(), "the first caller is the parent, not a link")
	assert.Equal(t, codes.Unset, run.Status().Code)
	assert.Equal(t, trace.SpanKindInternal, run.SpanKind())
	assert.Equal(t, flight.TracerName, run.InstrumentationScope().Name)

	queries := x.ended("query")
	require.Len(t, queries, 1)
	assert.Equal(t, run.SpanContext().SpanID(), queries[0].Parent().SpanID(), "fn's spans nest under flight.run")
	assert.Equal(t, inner, queries[0].SpanContext())
}

// Every later caller with a span is linked from flight.run, once: one that
// leaves before the flight ends still is; a caller without a span adds no
// link, and two callers in one span add one. flight.callers counts them all.
func TestTraceLinksLaterCallers(t *testing.T) {
	x := newTraced(t)
	c := newC[int](t, flight.WithTracerProvider(x.tp))
	first, firstSpan := x.caller("first")
	release := make(chan struct{})
	started := make(chan struct{})
	fn := func(context.Context) (int, error) {
		close(started)
		<-release
		return 1, nil
	}
	done := make(chan error, 8)
	go func() { _, _, err := c.Do(first, "k", fn); done <- err }()
	<-started

	do := func(ctx context.Context) {
		go func() { _, _, err := c.Do(ctx, "k", fn); done <- err }()
	}
	a, aSpan := x.caller("a")
	do(a)
	leaver, leaverSpan := x.caller("leaver")
	leaver, leave := context.WithCancel(leaver)
	do(leaver)
	b, bSpan := x.caller("b")
	do(b)
	do(b)                    // the same span again: no second link
	do(context.Background()) // no span: no link
	ch := c.DoChan(a, "k", fn)
	wait.Until(t, "6 joins", func() bool { return c.Stats().Joins == 6 })
	leave()
	wait.Until(t, "the leaver left", func() bool { return c.Stats().Waiters == 6 })
	close(release)
	errs := 0
	for range 6 {
		if err := wait.Recv(t, done); err != nil {
			assert.ErrorIs(t, err, context.Canceled)
			errs++
		}
	}
	assert.Equal(t, 1, errs, "only the leaver left")
	require.NoError(t, wait.Recv(t, ch).Err)
	for _, sp := range []trace.Span{firstSpan, aSpan, leaverSpan, bSpan} {
		sp.End()
	}

	runs := x.ended(tracing.RunSpan)
	require.Len(t, runs, 1)
	assert.Equal(t, idOf(firstSpan), runs[0].Parent().SpanID())
	assert.ElementsMatch(t, []trace.SpanID{idOf(aSpan), idOf(leaverSpan), idOf(bSpan)}, linked(runs[0]),
		"each distinct caller span once; the leaver too")
	assert.Equal(t, int64(7), intAttr(t, runs[0], tracing.Callers))
	assert.Zero(t, tracing.LiveLinks(), "the links of an ended span are dropped")
}

// 1,000 callers, each with its own span: 128 links, flight.callers 1,000.
func TestTraceThousandCallers(t *testing.T) {
	x := newTraced(t)
	c := newC[int](t, flight.WithTracerProvider(x.tp))
	release := make(chan struct{})
	started := make(chan struct{})
	fn := func(context.Context) (int, error) {
		close(started)
		<-release
		return 1, nil
	}
	ctx, sp := x.caller("caller")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _, err := c.Do(ctx, "k", fn)
		assert.NoError(t, err)
	}()
	<-started
	spans := []trace.Span{sp}
	for range 999 {
		ctx, sp := x.caller("caller")
		spans = append(spans, sp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, shared, err := c.Do(ctx, "k", fn)
			assert.NoError(t, err)
			assert.True(t, shared)
		}()
	}
	wait.Until(t, "999 joins", func() bool { return c.Stats().Joins == 999 })
	close(release)
	wg.Wait()
	for _, sp := range spans {
		sp.End()
	}
	runs := x.ended(tracing.RunSpan)
	require.Len(t, runs, 1)
	assert.Len(t, runs[0].Links(), tracing.MaxLinks)
	assert.Zero(t, runs[0].DroppedLinks())
	assert.Equal(t, int64(1000), intAttr(t, runs[0], tracing.Callers))
	seen := map[trace.SpanID]bool{idOf(spans[0]): true}
	for _, id := range linked(runs[0]) {
		assert.False(t, seen[id], "each caller once, never the parent")
		seen[id] = true
	}
	assert.Zero(t, tracing.LiveLinks(), "the links of an ended span are dropped")
}

// A flight that waits for the key's fn (the flight before it was
// forgotten) keeps the callers that join it meanwhile: its span, when its
// execution starts, is a child of its first caller's span and links them,
// and a caller who joins while it runs, each once.
func TestTraceJoinBeforeStart(t *testing.T) {
	x := newTraced(t)
	c := newC[int](t, flight.WithTracerProvider(x.tp))
	releaseOld, oldStarted := make(chan struct{}), make(chan struct{})
	done := make(chan error, 8)
	do := func(ctx context.Context, fn flight.Func[int]) {
		go func() { _, _, err := c.Do(ctx, "k", fn); done <- err }()
	}
	old, oldSpan := x.caller("old")
	do(old, func(context.Context) (int, error) { close(oldStarted); <-releaseOld; return 0, nil })
	<-oldStarted
	c.Forget("k")

	release, started := make(chan struct{}), make(chan struct{})
	fn := func(context.Context) (int, error) { close(started); <-release; return 1, nil }
	first, firstSpan := x.caller("first")
	do(first, fn) // waits for the forgotten flight's fn
	wait.Until(t, "the waiting flight", func() bool { return c.Stats().Waiters == 2 })
	early, earlySpan := x.caller("early")
	do(early, fn)
	do(first, fn) // the parent's span: no link
	do(early, fn) // linked once
	wait.Until(t, "3 joins", func() bool { return c.Stats().Joins == 3 })
	close(releaseOld)
	<-started
	late, lateSpan := x.caller("late")
	do(late, fn)
	do(early, fn)
	wait.Until(t, "5 joins", func() bool { return c.Stats().Joins == 5 })
	close(release)
	for range 7 {
		require.NoError(t, wait.Recv(t, done))
	}
	for _, sp := range []trace.Span{oldSpan, firstSpan, earlySpan, lateSpan} {
		sp.End()
	}

	runs := x.ended(tracing.RunSpan)
	require.Len(t, runs, 2)
	assert.Equal(t, idOf(oldSpan), runs[0].Parent().SpanID())
	assert.Empty(t, runs[0].Links())
	run := runs[1]
	assert.Equal(t, idOf(firstSpan), run.Parent().SpanID(), "a child of its own first caller's span")
	assert.Equal(t, []trace.SpanID{idOf(earlySpan), idOf(lateSpan)}, linked(run),
		"the callers before its start, then those during it, each once")
	assert.Equal(t, int64(6), intAttr(t, run, tracing.Callers))
	assert.Zero(t, tracing.LiveLinks())
}

// A traced flight allocates only what the SDK allocates for its span (the
// span, the context its Start returns, the snapshot of its end for the
// span processors, the slice of its attributes) more than an untraced one:
// flight keeps no record of its own for a flight that runs once.
func TestTraceAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("with -race, the SDK's attribute slice costs two allocations (slices.Grow) and sync.Pool drops entries")
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(nopProcessor{}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	untraced := freshKeyAllocs(newCInt(t, flight.WithShards(1)), 2000)
	traced := freshKeyAllocs(newCInt(t, flight.WithShards(1), flight.WithTracerProvider(tp)), 2000)
	t.Logf("allocations per flight: %.2f untraced, %.2f traced", untraced, traced)
	assert.LessOrEqual(t, traced, untraced+4)
}

// nopProcessor is a span processor that keeps nothing.
type nopProcessor struct{}

func (nopProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (nopProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (nopProcessor) Shutdown(context.Context) error                  { return nil }
func (nopProcessor) ForceFlush(context.Context) error                { return nil }

// Each attempt of a retry loop is a span of its own, attempt 1, 2, 3; the
// failed ones have the Error status; a caller that joins during attempt 2
// is linked from attempts 2 and 3; flight.callers is on the last attempt.
func TestTraceRetries(t *testing.T) {
	x := newTraced(t)
	c := newC[int](t, flight.WithTracerProvider(x.tp), flight.WithRetry(3, func(int) time.Duration { return 0 }))
	var calls atomic.Int32
	second := make(chan struct{})
	release := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		switch calls.Add(1) {
		case 1:
			return 0, errTransient
		case 2:
			close(second)
			<-release
			return 0, errTransient
		}
		return 9, nil
	}
	ctx, sp := x.caller("first")
	done := make(chan error, 2)
	go func() { _, _, err := c.Do(ctx, "k", fn); done <- err }()
	<-second
	late, lateSpan := x.caller("late")
	go func() { _, _, err := c.Do(late, "k", fn); done <- err }()
	wait.Until(t, "the late join", func() bool { return c.Stats().Joins == 1 })
	close(release)
	require.NoError(t, wait.Recv(t, done))
	require.NoError(t, wait.Recv(t, done))
	sp.End()
	lateSpan.End()

	runs := x.ended(tracing.RunSpan)
	require.Len(t, runs, 3, "a span per attempt")
	for i, run := range runs {
		assert.Equal(t, int64(i+1), intAttr(t, run, tracing.Attempt))
		assert.Equal(t, idOf(sp), run.Parent().SpanID(), "every attempt is a child of the first caller's span")
	}
	assert.Equal(t, codes.Error, runs[0].Status().Code)
	assert.Equal(t, errTransient.Error(), runs[0].Status().Description)
	assert.Equal(t, codes.Error, runs[1].Status().Code)
	assert.Equal(t, codes.Unset, runs[2].Status().Code)
	for _, run := range runs[:2] {
		_, ok := attrOf(run, tracing.Callers)
		assert.False(t, ok, "flight.callers is set when the flight ends, not between attempts")
	}
	assert.Equal(t, int64(2), intAttr(t, runs[2], tracing.Callers))
	assert.Empty(t, runs[0].Links())
	assert.Equal(t, []trace.SpanID{idOf(lateSpan)}, linked(runs[1]), "linked while attempt 2 runs")
	assert.Equal(t, []trace.SpanID{idOf(lateSpan)}, linked(runs[2]), "and from the next attempt")
}

// A background refresh is a flight.run span with flight.refresh true, a
// child of the span of the caller whose hit started it; every hit adds a
// flight.hit event to its caller's span.
func TestTraceRefreshAndHits(t *testing.T) {
	bubble(t, func(t *testing.T) {
		x := newTraced(t)
		c := flight.New[string, string](flight.WithTracerProvider(x.tp),
			flight.WithTTL(10*time.Second), flight.WithRefreshAhead(5*time.Second))
		defer c.Close()
		_, _, err := c.Do(context.Background(), "k", func(context.Context) (string, error) { return "v1", nil })
		require.NoError(t, err)
		time.Sleep(6 * time.Second)

		ctx, sp := x.caller("hitter")
		v, _, err := c.Do(ctx, "k", func(context.Context) (string, error) { return "v2", nil })
		require.NoError(t, err)
		assert.Equal(t, "v1", v)
		fresh, freshSpan := x.caller("fresh")
		synctest.Wait() // the refresh has run
		require.Equal(t, uint64(1), c.Stats().Refreshes)
		v, _, _ = c.Do(fresh, "k", func(context.Context) (string, error) { return "v3", nil })
		assert.Equal(t, "v2", v)
		sp.End()
		freshSpan.End()

		runs := x.ended(tracing.RunSpan)
		require.Len(t, runs, 2)
		refresh, ok := attrOf(runs[1], tracing.Refresh)
		require.True(t, ok)
		assert.True(t, refresh.AsBool())
		assert.Equal(t, idOf(sp), runs[1].Parent().SpanID(), "a child of the triggering caller's span")
		assert.Equal(t, int64(1), intAttr(t, runs[1], tracing.Attempt))
		assert.Equal(t, int64(0), intAttr(t, runs[1], tracing.Callers), "nobody waited for the refresh")
		for _, name := range []string{"hitter", "fresh"} {
			s := x.ended(name)
			require.Len(t, s, 1)
			require.Len(t, s[0].Events(), 1, name)
			assert.Equal(t, tracing.HitEvent, s[0].Events()[0].Name)
		}
	})
}

// ctxLog records the span in the ctx of each record it handles.
type ctxLog struct {
	mu    sync.Mutex
	spans []trace.SpanContext
}

func (h *ctxLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *ctxLog) Handle(ctx context.Context, _ slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.spans = append(h.spans, trace.SpanContextFromContext(ctx))
	return nil
}
func (h *ctxLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *ctxLog) WithGroup(string) slog.Handler      { return h }

// A panic is an exception event with its value and stack and the Error
// status; its log line is written with the flight's ctx, so a handler sees
// the execution's span. An error sets the Error status; Goexit too.
func TestTracePanicErrorGoexit(t *testing.T) {
	x := newTraced(t)
	h := &ctxLog{}
	c := newC[int](t, flight.WithTracerProvider(x.tp), flight.WithLogger(slog.New(h)))
	ctx, sp := x.caller("caller")
	_, _, err := c.Do(ctx, "p", func(context.Context) (int, error) { panic("boom") })
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)
	_, _, err = c.Do(ctx, "e", func(context.Context) (int, error) { return 0, errors.New("down") })
	require.EqualError(t, err, "down")
	ch := c.DoChan(ctx, "g", func(context.Context) (int, error) { runtime.Goexit(); return 0, nil })
	require.ErrorIs(t, wait.Recv(t, ch).Err, flight.ErrGoexit)
	sp.End()

	runs := x.ended(tracing.RunSpan)
	require.Len(t, runs, 3)
	p := runs[0]
	assert.Equal(t, codes.Error, p.Status().Code)
	assert.Equal(t, "flight: function panicked: boom", p.Status().Description)
	require.Len(t, p.Events(), 1)
	ev := p.Events()[0]
	assert.Equal(t, "exception", ev.Name)
	got := map[attribute.Key]string{}
	for _, kv := range ev.Attributes {
		got[kv.Key] = kv.Value.Emit()
	}
	assert.Equal(t, "boom", got["exception.message"])
	assert.Equal(t, "string", got["exception.type"])
	assert.Contains(t, got["exception.stacktrace"], "TestTracePanicErrorGoexit")

	h.mu.Lock()
	require.Len(t, h.spans, 1, "one log line: the panic")
	assert.Equal(t, p.SpanContext(), h.spans[0], "the log line's ctx holds the execution's span")
	h.mu.Unlock()

	assert.Equal(t, codes.Error, runs[1].Status().Code)
	assert.Equal(t, "down", runs[1].Status().Description)
	assert.Empty(t, runs[1].Events())
	assert.Equal(t, codes.Error, runs[2].Status().Code)
	assert.Equal(t, flight.ErrGoexit.Error(), runs[2].Status().Description)
}

// A Batcher's call of fn is a flight.batch span: a child of the first
// caller's span, linked to every other caller of its keys (a key's later
// callers, callers who join while fn runs), but not to the callers of a key
// taken out of the batch; flight.batch.keys counts its keys.
func TestTraceBatch(t *testing.T) {
	x := newTraced(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var batchSpan trace.SpanContext
	b := flight.NewBatcher(func(ctx context.Context, keys []string) (map[string]int, error) {
		batchSpan = trace.SpanContextFromContext(ctx)
		started <- struct{}{}
		<-release
		m := map[string]int{}
		for i, k := range keys {
			m[k] = i
		}
		return m, nil
	}, flight.WithTracerProvider(x.tp), flight.WithMaxBatch(4), flight.WithMaxWait(time.Hour), flight.WithShards(3))
	defer b.Close()
	done := make(chan error, 8)
	load := func(ctx context.Context, key string) {
		go func() { _, err := b.Load(ctx, key); done <- err }()
	}
	c1, s1 := x.caller("c1")
	load(c1, "a")
	wait.Until(t, "a", func() bool { return b.Stats().Loads == 1 })
	c2, s2 := x.caller("c2")
	load(c2, "a") // a later caller of a key
	c3, s3 := x.caller("c3")
	load(c3, "b")
	c5, s5 := x.caller("c5")
	c5, leave := context.WithCancel(c5)
	load(c5, "d")
	wait.Until(t, "4 loads", func() bool { return b.Stats().Loads == 4 })
	leave()
	wait.Until(t, "d dropped", func() bool { return b.Stats().Dropped == 1 })
	require.ErrorIs(t, wait.Recv(t, done), context.Canceled)
	c4, s4 := x.caller("c4")
	load(c4, "c")
	c6, s6 := x.caller("c6")
	load(c6, "e") // the fourth live key: the batch is full
	wait.Recv(t, started)
	c7, s7 := x.caller("c7")
	load(c7, "b") // joins a key of the running batch
	wait.Until(t, "2 joins", func() bool { return b.Stats().Joins == 2 })
	close(release)
	for range 6 {
		require.NoError(t, wait.Recv(t, done))
	}
	for _, sp := range []trace.Span{s1, s2, s3, s4, s5, s6, s7} {
		sp.End()
	}

	spans := x.ended(tracing.BatchSpan)
	require.Len(t, spans, 1)
	sb := spans[0]
	assert.Equal(t, batchSpan, sb.SpanContext(), "fn's ctx carries the batch's span")
	assert.Equal(t, idOf(s1), sb.Parent().SpanID(), "a child of the first caller's span")
	assert.Equal(t, int64(4), intAttr(t, sb, tracing.BatchKeys))
	assert.ElementsMatch(t, []trace.SpanID{idOf(s2), idOf(s3), idOf(s4), idOf(s6), idOf(s7)}, linked(sb),
		"every other caller once; not c5, whose key was dropped")
	assert.Equal(t, codes.Unset, sb.Status().Code)
}

// A batch-wide error and a panic set the batch span's Error status; a
// panic is an exception event, and its log line carries the batch's span.
func TestTraceBatchFailures(t *testing.T) {
	x := newTraced(t)
	h := &ctxLog{}
	b := flight.NewBatcher(func(ctx context.Context, keys []string) (map[string]int, error) {
		if keys[0] == "panic" {
			panic("boom")
		}
		if keys[0] == "some" {
			return nil, flight.KeyErrors[string]{"some": errors.New("one key")}
		}
		return nil, errors.New("down")
	}, flight.WithTracerProvider(x.tp), flight.WithMaxBatch(1), flight.WithLogger(slog.New(h)))
	defer b.Close()
	ctx, sp := x.caller("caller")
	_, err := b.Load(ctx, "panic")
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)
	_, err = b.Load(ctx, "err")
	require.EqualError(t, err, "down")
	_, err = b.Load(ctx, "some")
	require.EqualError(t, err, "one key")
	sp.End()
	spans := x.ended(tracing.BatchSpan)
	require.Len(t, spans, 3)
	assert.Equal(t, codes.Error, spans[0].Status().Code)
	require.Len(t, spans[0].Events(), 1)
	assert.Equal(t, "exception", spans[0].Events()[0].Name)
	h.mu.Lock()
	require.Len(t, h.spans, 1)
	assert.Equal(t, spans[0].SpanContext(), h.spans[0])
	h.mu.Unlock()
	assert.Equal(t, codes.Error, spans[1].Status().Code)
	assert.Equal(t, "down", spans[1].Status().Description)
	assert.Equal(t, codes.Unset, spans[2].Status().Code, "per-key errors are not the batch's")
}

// Without WithTracerProvider nothing is traced: not through the global
// provider, and not a flight.hit on a caller's recording span.
func TestNoTracerTracesNothing(t *testing.T) {
	x := newTraced(t)
	global := newTraced(t)
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(global.tp)
	defer otel.SetTracerProvider(prev)

	c := newC[int](t, flight.WithTTL(time.Hour))
	ctx, sp := x.caller("caller")
	fn := func(ctx context.Context) (int, error) {
		assert.False(t, trace.SpanFromContext(ctx).SpanContext().Equal(trace.SpanContext{}), "fn sees the caller's span")
		return 1, nil
	}
	_, _, err := c.Do(ctx, "k", fn)
	require.NoError(t, err)
	_, _, err = c.Do(ctx, "k", fn) // a hit
	require.NoError(t, err)
	b := flight.NewBatcher(func(_ context.Context, keys []string) (map[string]int, error) { return nil, nil })
	defer b.Close()
	_, err = b.Load(ctx, "x")
	require.ErrorIs(t, err, flight.ErrNotFound)
	sp.End()
	assert.Empty(t, global.rec.Ended(), "the global provider is never used")
	require.Len(t, x.rec.Ended(), 1, "only the caller's own span")
	assert.Empty(t, x.rec.Ended()[0].Events(), "no flight.hit without a tracer")
}

// The option is taken by New and NewBatcher, and refuses nil.
func TestTracerProviderOption(t *testing.T) {
	assert.PanicsWithValue(t, "flight: WithTracerProvider(nil)", func() { flight.New[int, int](flight.WithTracerProvider(nil)) })
	assert.PanicsWithValue(t, "flight: WithTracerProvider(nil)", func() {
		flight.NewBatcher(func(context.Context, []int) (map[int]int, error) { return nil, nil }, flight.WithTracerProvider(nil))
	})
	x := newTraced(t)
	b := flight.NewBatcher(func(context.Context, []int) (map[int]int, error) { return nil, nil },
		flight.WithTracerProvider(x.tp))
	require.NoError(t, b.Close())
}

// The cluster's hook: a caller known only by a traceparent (a Join from
// another member) is linked from the owner's flight.run span, or is its
// parent when it starts the flight.
func TestTraceRemoteCaller(t *testing.T) {
	x := newTraced(t)
	c := newC[int](t, flight.WithTracerProvider(x.tp))
	remote, remoteSpan := x.caller("remote-first")
	tp1, ts1 := tracing.TraceParent(remote)
	require.NotEmpty(t, tp1)
	other, otherSpan := x.caller("remote-other")
	tp2, ts2 := tracing.TraceParent(other)
	noTP, _ := tracing.TraceParent(context.Background())
	assert.Empty(t, noTP)
	assert.Equal(t, context.Background(), tracing.WithRemoteCaller(context.Background(), "garbage", ""))

	release := make(chan struct{})
	started := make(chan struct{})
	fn := func(context.Context) (int, error) { close(started); <-release; return 1, nil }
	done := make(chan error, 2)
	ctx1 := tracing.WithRemoteCaller(context.Background(), tp1, ts1)
	assert.True(t, trace.SpanContextFromContext(ctx1).IsRemote())
	go func() { _, _, err := c.Do(ctx1, "k", fn); done <- err }()
	<-started
	ctx2 := tracing.WithRemoteCaller(context.Background(), tp2, ts2)
	go func() { _, _, err := c.Do(ctx2, "k", fn); done <- err }()
	wait.Until(t, "the join", func() bool { return c.Stats().Joins == 1 })
	close(release)
	require.NoError(t, wait.Recv(t, done))
	require.NoError(t, wait.Recv(t, done))
	remoteSpan.End()
	otherSpan.End()
	runs := x.ended(tracing.RunSpan)
	require.Len(t, runs, 1)
	assert.Equal(t, idOf(remoteSpan), runs[0].Parent().SpanID())
	assert.True(t, runs[0].Parent().IsRemote())
	assert.Equal(t, []trace.SpanID{idOf(otherSpan)}, linked(runs[0]))
}

func ExampleWithTracerProvider() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	c := flight.New[string, string](flight.WithTracerProvider(tp))
	defer c.Close()

	ctx, request := tp.Tracer("app").Start(context.Background(), "GET /user/42")
	_, _, _ = c.Do(ctx, "user:42", func(ctx context.Context) (string, error) { return "Ada", nil })
	request.End()
	for _, s := range rec.Ended() {
		fmt.Println(s.Name(), "child of", s.Parent().SpanID() == request.SpanContext().SpanID())
	}
	// Output:
	// flight.run child of true
	// GET /user/42 child of false
}

// With tracing, fn's ctx is still the flight's own: a call from fn for its
// own key with it is refused as recursive, and a flight answered by the
// WithTimeout deadline while fn went on to succeed has an Ok span (the
// status tells how fn ended) that counts its caller.
func TestTraceKeepsTheFlightContext(t *testing.T) {
	bubble(t, func(t *testing.T) {
		x := newTraced(t)
		c := flight.New[string, int](flight.WithTracerProvider(x.tp), flight.WithTimeout(time.Second))
		defer c.Close()
		release := make(chan struct{})
		inner := make(chan error, 1)
		fn := func(ctx context.Context) (int, error) {
			_, _, err := c.Do(ctx, "k", func(context.Context) (int, error) { return 0, nil })
			inner <- err
			<-release
			return 1, nil
		}
		ctx, sp := x.caller("caller")
		_, _, err := c.Do(ctx, "k", fn)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, <-inner, flight.ErrRecursiveCall)
		close(release)
		synctest.Wait()
		sp.End()
		runs := x.ended(tracing.RunSpan)
		require.Len(t, runs, 1)
		assert.Equal(t, codes.Unset, runs[0].Status().Code)
		assert.Equal(t, int64(1), intAttr(t, runs[0], tracing.Callers))
	})
}

// A sampler that drops every span: nothing is recorded, fn's ctx carries
// the unsampled flight.run span context (so fn's spans are dropped too, by a
// parent-based sampler), and callers are answered as usual.
func TestTraceNeverSampled(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	c := newC[int](t, flight.WithTracerProvider(tp))
	release := make(chan struct{})
	started := make(chan trace.SpanContext, 1)
	fn := func(ctx context.Context) (int, error) {
		started <- trace.SpanContextFromContext(ctx)
		<-release
		return 3, nil
	}
	done := make(chan error, 2)
	go func() { _, _, err := c.Do(context.Background(), "k", fn); done <- err }()
	sc := wait.Recv(t, started)
	assert.True(t, sc.IsValid())
	assert.False(t, sc.IsSampled())
	ctx, sp := tp.Tracer("test").Start(context.Background(), "other")
	go func() { _, _, err := c.Do(ctx, "k", fn); done <- err }()
	wait.Until(t, "the join", func() bool { return c.Stats().Joins == 1 })
	close(release)
	require.NoError(t, wait.Recv(t, done))
	require.NoError(t, wait.Recv(t, done))
	sp.End()
	assert.Empty(t, rec.Ended())
}

// panicLog is a slog handler that panics on every record.
type panicLog struct{}

func (panicLog) Enabled(context.Context, slog.Level) bool  { return true }
func (panicLog) Handle(context.Context, slog.Record) error { panic("the log handler failed") }
func (h panicLog) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h panicLog) WithGroup(string) slog.Handler           { return h }

// A log handler that panics while fn's panic is logged fails nothing: the
// line is dropped, the caller gets fn's *PanicError, the execution's span
// ends, and Close returns.
func TestPanickingLogHandler(t *testing.T) {
	log := flight.WithLogger(slog.New(panicLog{}))
	for _, tc := range []struct {
		name, span string
		run        func(t *testing.T, tp trace.TracerProvider, ctx context.Context) error
	}{
		{"coordinator", tracing.RunSpan, func(t *testing.T, tp trace.TracerProvider, ctx context.Context) error {
			c := flight.New[string, int](flight.WithTracerProvider(tp), log)
			_, _, err := c.Do(ctx, "p", func(context.Context) (int, error) { panic("boom") })
			require.NoError(t, c.Close())
			return err
		}},
		{"batcher", tracing.BatchSpan, func(t *testing.T, tp trace.TracerProvider, ctx context.Context) error {
			b := flight.NewBatcher(func(context.Context, []string) (map[string]int, error) { panic("boom") },
				flight.WithTracerProvider(tp), flight.WithMaxBatch(1), log)
			_, err := b.Load(ctx, "p")
			require.NoError(t, b.Close())
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newTraced(t)
			ctx, sp := x.caller("caller")
			err := tc.run(t, x.tp, ctx)
			sp.End()
			var pe *flight.PanicError
			require.ErrorAs(t, err, &pe)
			spans := x.ended(tc.span)
			require.Len(t, spans, 1, "%s ended", tc.span)
			assert.Equal(t, codes.Error, spans[0].Status().Code)
		})
	}
}

// panicTracer is a provider whose tracer's Start panics.
type panicTracer struct{ embedded.TracerProvider }

func (panicTracer) Tracer(string, ...trace.TracerOption) trace.Tracer { return panicStart{} }

type panicStart struct{ noop.Tracer }

func (panicStart) Start(context.Context, string, ...trace.SpanStartOption) (context.Context, trace.Span) {
	panic("the tracer failed")
}

// A tracer that panics as a span starts is contained as a fault of the
// engine: the callers get a *PanicError, nothing waits for ever, and Close
// returns.
func TestPanickingTracer(t *testing.T) {
	t.Run("coordinator", func(t *testing.T) {
		c := flight.New[string, int](flight.WithTracerProvider(panicTracer{}))
		_, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 1, nil })
		var pe *flight.PanicError
		require.ErrorAs(t, err, &pe)
		require.NoError(t, c.Close())
	})
	t.Run("batcher", func(t *testing.T) {
		b := flight.NewBatcher(func(_ context.Context, keys []string) (map[string]int, error) {
			return map[string]int{keys[0]: 1}, nil
		}, flight.WithTracerProvider(panicTracer{}), flight.WithMaxBatch(1))
		for _, k := range []string{"full", "again"} { // dispatched full, then the next batch
			ch := b.LoadChan(context.Background(), k)
			select {
			case r := <-ch:
				var pe *flight.PanicError
				require.ErrorAs(t, r.Err, &pe, k)
			case <-time.After(5 * time.Second):
				t.Fatalf("Load(%q) never answered", k)
			}
		}
		st := b.Stats()
		assert.Zero(t, st.Pending, "pending batches")
		assert.Zero(t, st.Waiters, "waiting loads")
		require.NoError(t, b.Close())
	})
	t.Run("batcher-some", func(t *testing.T) {
		// Every second span start panics; one batch runs at a time, so a
		// batch that returns dispatches the next (from done).
		var starts atomic.Int64
		tp := sometimesTracer{n: &starts, TracerProvider: newTraced(t).tp}
		b := flight.NewBatcher(func(_ context.Context, keys []string) (map[string]int, error) {
			time.Sleep(time.Millisecond)
			return map[string]int{keys[0]: 1}, nil
		}, flight.WithTracerProvider(tp), flight.WithMaxBatch(1), flight.WithMaxConcurrentBatches(1))
		var chs []<-chan flight.Result[int]
		for i := range 20 {
			chs = append(chs, b.LoadChan(context.Background(), fmt.Sprint(i)))
		}
		ok, failed := 0, 0
		for i, ch := range chs {
			select {
			case r := <-ch:
				var pe *flight.PanicError
				if r.Err == nil {
					ok++
				} else if errors.As(r.Err, &pe) {
					failed++
				} else {
					t.Errorf("Load(%d): %v", i, r.Err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Load(%d) never answered", i)
			}
		}
		assert.Equal(t, 20, ok+failed)
		assert.Positive(t, ok, "loads answered")
		assert.Positive(t, failed, "loads failed by the tracer")
		st := b.Stats()
		assert.Zero(t, st.Pending, "pending batches")
		assert.Zero(t, st.Running, "running batches")
		require.NoError(t, b.Close())
	})
	t.Run("batcher-timer", func(t *testing.T) {
		b := flight.NewBatcher(func(_ context.Context, keys []string) (map[string]int, error) {
			return map[string]int{keys[0]: 1}, nil
		}, flight.WithTracerProvider(panicTracer{}), flight.WithMaxWait(time.Millisecond))
		ch := b.LoadChan(context.Background(), "k") // dispatched by its WithMaxWait deadline
		select {
		case r := <-ch:
			var pe *flight.PanicError
			require.ErrorAs(t, r.Err, &pe)
		case <-time.After(5 * time.Second):
			t.Fatal("Load never answered")
		}
		assert.Zero(t, b.Stats().Pending, "pending batches")
		require.NoError(t, b.Close())
	})
}

// sometimesTracer is a provider whose tracer's Start panics on every second
// call and otherwise starts a span of the embedded provider.
type sometimesTracer struct {
	trace.TracerProvider
	n *atomic.Int64
}

func (p sometimesTracer) Tracer(name string, o ...trace.TracerOption) trace.Tracer {
	return sometimesStart{Tracer: p.TracerProvider.Tracer(name, o...), n: p.n}
}

type sometimesStart struct {
	trace.Tracer
	n *atomic.Int64
}

func (s sometimesStart) Start(ctx context.Context, name string, o ...trace.SpanStartOption) (context.Context, trace.Span) {
	if s.n.Add(1)%2 == 0 {
		panic("the tracer failed")
	}
	return s.Tracer.Start(ctx, name, o...)
}
