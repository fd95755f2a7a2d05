package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func sc(n byte) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{n}, TraceFlags: trace.FlagsSampled,
	})
}

// The learnt key is package trace's own: a context made by
// trace.ContextWithSpan answers it with its span.
func TestSpanKey(t *testing.T) {
	if spanKey == nil {
		t.Fatal("spanKey not learnt")
	}
	_, sp := noop.NewTracerProvider().Tracer("t").Start(trace.ContextWithSpanContext(context.Background(), sc(3)), "s")
	ctx := trace.ContextWithSpan(context.Background(), sp)
	got, ok := ctx.Value(spanKey).(trace.Span)
	if !ok || !got.SpanContext().Equal(sp.SpanContext()) {
		t.Fatalf("Value(spanKey) = %v, want the span", got)
	}
}

// links keeps valid span contexts once each, never the parent's, at most
// MaxLinks.
func TestLinks(t *testing.T) {
	l := links{parent: sc(1)}
	if l.add(sc(1)) || l.add(trace.SpanContext{}) {
		t.Fatal("the parent and an invalid span context are not links")
	}
	if !l.add(sc(2)) || l.add(sc(2)) {
		t.Fatal("a span context is linked once")
	}
	for i := 3; len(l.list) < MaxLinks; i++ {
		l.add(sc(byte(i)))
	}
	if l.add(trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{2}, SpanID: trace.SpanID{9}})) {
		t.Fatalf("more than %d links", MaxLinks)
	}
}

// The cached attribute lists are the ones runAttrs would build.
func TestRunAttrs(t *testing.T) {
	for _, c := range []struct {
		attempt int
		refresh bool
		callers int
		want    int
	}{{1, false, 1, 3}, {1, false, 64, 3}, {1, false, 65, 3}, {2, false, -1, 2}, {1, true, 0, 3}} {
		kv := runAttrs(c.attempt, c.refresh, c.callers)
		if len(kv) != c.want || kv[0] != Attempt.Int(c.attempt) || kv[1] != Refresh.Bool(c.refresh) ||
			(c.callers >= 0 && kv[2] != Callers.Int(c.callers)) {
			t.Errorf("runAttrs(%d, %v, %d) = %v", c.attempt, c.refresh, c.callers, kv)
		}
	}
}

// A traceparent round-trips; an empty or malformed one leaves ctx alone.
func TestRemoteCaller(t *testing.T) {
	want := sc(7)
	ctx := trace.ContextWithSpanContext(context.Background(), want)
	tp, ts := TraceParent(ctx)
	got := trace.SpanContextFromContext(WithRemoteCaller(context.Background(), tp, ts))
	if !got.IsRemote() || got.SpanID() != want.SpanID() || got.TraceID() != want.TraceID() {
		t.Fatalf("round trip of %q = %v", tp, got)
	}
	bg := context.Background()
	if WithRemoteCaller(bg, "", "") != bg || WithRemoteCaller(bg, "00-zz-yy-01", "") != bg {
		t.Fatal("an empty or malformed traceparent changes nothing")
	}
	if tp, ts := TraceParent(bg); tp != "" || ts != "" {
		t.Fatal("no span context, no traceparent")
	}
}

// BenchmarkRun is what a Run adds to the SDK's own work on a flight.run
// span (start, the three attributes in one call, end) on one goroutine,
// without the flight around it: run - span-attrs is the cost of the
// tracing record and its bookkeeping (bench/: BenchmarkTracing measures the
// whole traced flight).
func BenchmarkRun(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(nopProcessor{}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx := context.Background()
	b.Run("span-attrs", func(b *testing.B) {
		tr := tp.Tracer(ScopeName)
		b.ReportAllocs()
		for b.Loop() {
			_, sp := tr.Start(ctx, RunSpan)
			sp.SetAttributes(runAttrs(1, false, 1)...)
			sp.End()
		}
	})
	b.Run("run", func(b *testing.B) {
		t := New(tp)
		b.ReportAllocs()
		for b.Loop() {
			r := t.NewRun(ctx)
			r.Start()
			r.End(nil, nil, 1, false, 1)
		}
	})
}

type nopProcessor struct{}

func (nopProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (nopProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (nopProcessor) Shutdown(context.Context) error                  { return nil }
func (nopProcessor) ForceFlush(context.Context) error                { return nil }
