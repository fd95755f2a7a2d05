package tracing

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
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

// A flight without a Run: StartRun returns the SDK's context with the
// span (fn's spans nest under it), LinkRunning links each later caller
// once and never the parent, and EndRun sets the attributes and status,
// ends the span and drops its links from the live table.
func TestStartRunWithoutRecord(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	tr := New(tp)
	parent, psp := tp.Tracer("test").Start(context.Background(), "caller")
	ctx := tr.StartRun(parent)
	if _, ok := ctx.(*Run); ok {
		t.Fatal("an SDK span needs no Run")
	}
	sp := trace.SpanFromContext(ctx)
	if !sp.IsRecording() || sp.SpanContext().Equal(psp.SpanContext()) {
		t.Fatal("the context does not carry the running flight.run span")
	}
	key := new(int)
	tr.LinkRunning(key, ctx, psp.SpanContext())
	tr.LinkRunning(key, ctx, trace.SpanContext{})
	tr.LinkRunning(key, ctx, sc(2))
	tr.LinkRunning(key, ctx, sc(2))
	tr.LinkRunning(key, ctx, sc(3))
	if n := LiveLinks(); n != 1 {
		t.Fatalf("LiveLinks() = %d while the span runs, want 1", n)
	}
	tr.EndRun(key, ctx, errors.New("down"), nil, 1, false, 2, true)
	if n := LiveLinks(); n != 0 {
		t.Fatalf("LiveLinks() = %d after the end, want 0", n)
	}
	psp.End()
	var run sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == RunSpan {
			run = s
		}
	}
	if run == nil {
		t.Fatal("no flight.run span ended")
	}
	var ids []trace.SpanID
	for _, l := range run.Links() {
		ids = append(ids, l.SpanContext.SpanID())
	}
	if len(ids) != 2 || ids[0] != sc(2).SpanID() || ids[1] != sc(3).SpanID() {
		t.Errorf("links %v, want the two later callers once each", ids)
	}
	if run.Parent().SpanID() != psp.SpanContext().SpanID() {
		t.Error("not a child of the caller's span")
	}
	if got := run.Attributes(); len(got) != 3 || got[2] != Callers.Int(2) {
		t.Errorf("attributes %v", got)
	}
	if run.Status().Code != codes.Error || run.Status().Description != "down" {
		t.Errorf("status %v", run.Status())
	}
}

// A span that records and cannot tell its parent (a provider other than
// the SDK) gets a Run, which remembers the parent for LinkSpanContext; a
// span that records nothing gets no links and no live entry.
func TestStartRunFallbacks(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	parent, psp := sdk.Tracer("test").Start(context.Background(), "caller")
	ctx := New(bareProvider{tp: sdk}).StartRun(parent)
	r, ok := ctx.(*Run)
	if !ok {
		t.Fatalf("StartRun = %T, want a *Run", ctx)
	}
	r.LinkSpanContext(psp.SpanContext())
	r.LinkSpanContext(sc(4))
	r.End(nil, nil, 1, false, 2)
	ended := rec.Ended()
	if len(ended) != 1 || len(ended[0].Links()) != 1 || ended[0].Links()[0].SpanContext.SpanID() != sc(4).SpanID() {
		t.Fatalf("ended %v: want one flight.run linking the later caller only", ended)
	}
	if !trace.SpanFromContext(r).SpanContext().Equal(ended[0].SpanContext()) {
		t.Error("the Run does not answer the span key with its span")
	}

	never := New(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())))
	ctx = never.StartRun(parent)
	if _, ok := ctx.(*Run); ok {
		t.Fatal("a span that records nothing needs no Run")
	}
	key := new(int)
	never.LinkRunning(key, ctx, sc(5))
	if n := LiveLinks(); n != 0 {
		t.Fatalf("LiveLinks() = %d for a span that records nothing", n)
	}
	never.EndRun(key, ctx, nil, nil, 1, false, 2, true)
}

// bareProvider's spans are the SDK's behind the trace.Span interface alone:
// they record but do not tell their parent.
type bareProvider struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

type bareTracer struct {
	embedded.Tracer
	t trace.Tracer
}

type bareSpan struct{ trace.Span }

func (p bareProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return bareTracer{t: p.tp.Tracer(name, opts...)}
}

func (t bareTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, sp := t.t.Start(ctx, name, opts...)
	b := bareSpan{sp}
	return trace.ContextWithSpan(ctx, b), b
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
	b.Run("startrun", func(b *testing.B) {
		t := New(tp)
		key := new(int)
		b.ReportAllocs()
		for b.Loop() {
			ctx := t.StartRun(ctx)
			t.EndRun(key, ctx, nil, nil, 1, false, 1, false)
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
