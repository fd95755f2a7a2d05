package actor

import "github.com/actorflight/flight/internal/tracing"

// The tracing hooks of a flight (WithTracerProvider), called from the
// owner's handlers in flight.go; the spans themselves are package
// internal/tracing's. Without a tracer (Env.Tracer nil) each is one nil
// check, and a flight allocates nothing more.

// traceNew gives a new flight its tracing, its spans' parent being its
// first caller's context.
func (k *Owner[K, V]) traceNew(f *Flight[K, V]) {
	if t := k.env.Tracer; t != nil {
		f.ctx.trace = t.NewRun(f.ctx.values)
	}
}

// traceStart starts the span of the execution f is about to run.
func (f *Flight[K, V]) traceStart() {
	if r := f.ctx.trace; r != nil {
		r.Start(int(f.attempts), f.refresh)
	}
}

// traceJoin links a caller that joined f after its first.
func (f *Flight[K, V]) traceJoin(w *Waiter[K, V]) {
	if r := f.ctx.trace; r != nil {
		r.Link(w.Ctx)
	}
}

// traceEnd ends the span of the execution that just returned with err;
// again says another attempt follows (the flight's callers are counted on
// its last execution's span only).
func (f *Flight[K, V]) traceEnd(err error, again bool) {
	r := f.ctx.trace
	if r == nil {
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
	r.End(err, p, callers)
}
