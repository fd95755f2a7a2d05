package actor

import "github.com/actorflight/flight/internal/tracing"

// The tracing hooks of a flight (WithTracerProvider), called from the
// owner's handlers in flight.go; the spans themselves are package
// internal/tracing's. Without a tracer (Env.Tracer nil) each is one nil
// check, and a flight allocates nothing more.

// traceNew gives a new flight its tracing, its spans' parent being its
// first caller's context. The tracing.Run wraps the flight's values (the
// first caller's), answering the span key with the running execution's
// span: so fn's spans nest under it, and a Flight has no field for tracing.
func (k *Owner[K, V]) traceNew(f *Flight[K, V]) {
	if t := k.env.Tracer; t != nil {
		f.ctx.values = t.NewRun(f.ctx.values)
	}
}

// run returns f's tracing, nil without a tracer.
func (f *Flight[K, V]) run() *tracing.Run {
	if f.owner.env.Tracer == nil {
		return nil
	}
	r, _ := f.ctx.values.(*tracing.Run)
	return r
}

// traceStart starts the span of the execution f is about to run.
func (f *Flight[K, V]) traceStart() {
	if r := f.run(); r != nil {
		r.Start()
	}
}

// traceJoin links a caller that joined f after its first.
func (f *Flight[K, V]) traceJoin(w *Waiter[K, V]) {
	if r := f.run(); r != nil {
		r.Link(w.Ctx)
	}
}

// traceEnd ends the span of the execution that just returned with err;
// again says another attempt follows (the flight's callers are counted on
// its last execution's span only).
func (f *Flight[K, V]) traceEnd(err error, again bool) {
	r := f.run()
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
	r.End(err, p, int(f.attempts), f.refresh, callers)
}
