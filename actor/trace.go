package actor

import (
	"go.opentelemetry.io/otel/trace"

	"github.com/actorflight/flight/internal/tracing"
)

// The tracing hooks of a flight (WithTracerProvider), called from the
// owner's handlers in flight.go; the spans themselves are package
// internal/tracing's. Without a tracer (Env.Tracer nil) each is one nil
// check, and a flight allocates nothing more.
//
// A Flight has no field for tracing: its state is in the flight's context,
// whose values (the first caller's ctx) it replaces, in one of two forms.
//   - Most flights keep no record: when the execution starts, the values
//     become the context the tracer's Start returned (the first caller's
//     values with the span), so fn's spans nest under it; the span is
//     found there again to be linked and ended, and the links of later
//     callers wait in the Tracer's live table, keyed by the flight's
//     context, until it ends.
//   - A flight that may run fn again (WithRetry), or whose first execution
//     has not started when a later caller with a span joins, keeps a
//     tracing.Run as its values: the first caller's values, the links for
//     each attempt, and the running span, which it answers the span key
//     with.
//
// The values are replaced only while no fn holds the flight's context:
// before its first execution starts.

// traceNew gives a new flight that may run fn more than once (WithRetry)
// its Run, whose spans' parent is its first caller's span.
func (k *Owner[K, V]) traceNew(f *Flight[K, V]) {
	if t := k.env.Tracer; t != nil && k.env.Attempts > 1 {
		f.ctx.values = t.NewRun(f.ctx.values)
	}
}

// traceStart starts the span of the execution f is about to run.
func (f *Flight[K, V]) traceStart() {
	t := f.owner.env.Tracer
	if t == nil {
		return
	}
	if r, ok := f.ctx.values.(*tracing.Run); ok {
		r.Start()
		return
	}
	f.ctx.values = t.StartRun(f.ctx.values)
}

// traceJoin links a caller that joined f after its first. Without a
// tracer it is one nil check, inlined into Owner.Join: linkJoin's frame
// (about 360 bytes) would otherwise make every joiner that handles its
// own join on a fresh goroutine grow its stack (TestJoinFitsFreshStack),
// since the stack is checked before the function's first line runs.
func (f *Flight[K, V]) traceJoin(w *Waiter[K, V]) {
	if t := f.owner.env.Tracer; t != nil {
		f.linkJoin(t, w)
	}
}

//go:noinline
func (f *Flight[K, V]) linkJoin(t *tracing.Tracer, w *Waiter[K, V]) {
	sc := trace.SpanContextFromContext(w.Ctx)
	if !sc.IsValid() {
		return
	}
	switch r, ok := f.ctx.values.(*tracing.Run); {
	case ok:
		r.LinkSpanContext(sc)
	case !f.started:
		// Waiting for the key's running fn: the links wait in a Run, which
		// the execution's span starts with.
		r = t.NewRun(f.ctx.values)
		r.LinkSpanContext(sc)
		f.ctx.values = r
	default:
		t.LinkRunning(f.ctx, f.ctx.values, sc)
	}
}

// traceEnd ends the span of the execution that just returned with err;
// again says another attempt follows (the flight's callers are counted on
// its last execution's span only).
func (f *Flight[K, V]) traceEnd(err error, again bool) {
	t := f.owner.env.Tracer
	if t == nil {
		return
	}
	var p *tracing.Panic
	if f.outcome == fnPanicked && f.panic != nil {
		p = &tracing.Panic{Value: f.panic.value, Stack: f.panic.stack}
	}
	callers := int(f.joined)
	if again {
		callers = -1
	}
	if r, ok := f.ctx.values.(*tracing.Run); ok {
		r.End(err, p, int(f.attempts), f.refresh, callers)
		return
	}
	t.EndRun(f.ctx, f.ctx.values, err, p, int(f.attempts), f.refresh, callers, f.joined > 1)
}
