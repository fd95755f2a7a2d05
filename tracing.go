package flight

import (
	"go.opentelemetry.io/otel/trace"

	"github.com/actorflight/flight/internal/hooks"
	"github.com/actorflight/flight/internal/tracing"
)

func init() {
	hooks.TracerProvider = func(opts []any) trace.TracerProvider {
		var cfg config // the options only write it: applying them to a blank one is harmless
		for _, o := range opts {
			if o, ok := o.(Option); ok {
				o.apply(&cfg)
			}
		}
		return cfg.tracer
	}
}

// TracerName is the instrumentation scope name of the tracer a Coordinator
// or a Batcher gets from the provider given with WithTracerProvider.
const TracerName = tracing.ScopeName

// WithTracerProvider makes a Coordinator (New), a Batcher (NewBatcher) or
// a cluster loader (cluster.Register: the owner's span of an execution
// also links the callers on other members) trace its executions with
// OpenTelemetry spans from tp. Without it, the
// default, nothing is traced, the global provider is never used, and no
// call allocates more. New and NewBatcher panic if tp is nil.
//
// A Coordinator runs each execution of fn (each attempt of WithRetry, each
// background refresh of WithRefreshAhead) under a span named flight.run, a
// child of the span in the ctx of the flight's first caller (for a
// refresh, the caller whose hit started it), and fn's ctx carries that
// span, so fn's own spans nest under it. The span has the attributes
// flight.attempt (int, 1-based) and flight.refresh (bool) and, on the
// flight's last execution, flight.callers (int: every caller the flight
// had, the first included). Every later caller whose ctx holds a valid span
// context is linked from the span (Span.AddLink; a caller that joins
// between two attempts is linked from the next one, and each attempt's span
// links the callers so far): once per distinct span context, even if the
// caller leaves before the flight ends, and at most 128 links per span
// (the callers beyond are only counted in flight.callers). An execution
// that returns an error, panics or calls runtime.Goexit sets the span's
// status to Error; a panic is recorded as an exception event with its
// value and stack. The status tells how fn ended: a flight answered with
// the WithTimeout error while fn went on to succeed has an Ok span. A call
// answered from a retained result (WithTTL) adds an event flight.hit to
// its caller's span when that span is recording; nothing else is added to
// callers' spans.
//
// A Batcher runs each call of its BatchFunc under a span named
// flight.batch, a child of the span of the batch's first caller, with the
// attribute flight.batch.keys (int) and links to the spans of every other
// caller of its keys (at most 128; the callers of a key taken out of the
// batch before dispatch, because they all left, are not linked). Its
// status is Error for a batch-wide error, a panic (also an exception
// event) or runtime.Goexit; per-key errors (KeyErrors) leave it unset.
//
// Spans start and end on the goroutine that drains the key's shard (or the
// Batcher's collector), never on fn's: use a batching span processor
// (sdktrace.WithBatcher), as the SDK advises for production; a synchronous
// exporter would hold up the shard's other keys while it exports.
//
// Cost: with an always-sampling SDK provider, an execution costs the SDK's
// span with its three attributes (4 allocations) and nothing more for a
// flight that runs fn once: fn's context takes its values from the context
// the SDK's Start returns. A flight with WithRetry, or one that a caller
// with a span joins before its execution starts, keeps a 64-byte record
// too. On one goroutine a traced distinct-key flight costs about 2.2× a
// bare span start and end with the same provider, most of it the SDK's
// work on the three attributes; on two, about 2.6× in CPU time and more in
// wall time (figures:
// https://github.com/actorflight/flight/blob/main/docs/performance.md).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return &option{id: optTracerProvider, p: tp, isNil: tp == nil}
}

// newTracer returns the tracer of cfg's provider, nil without one.
func newTracer(cfg *config) *tracing.Tracer {
	if cfg.tracer == nil {
		return nil
	}
	return tracing.New(cfg.tracer)
}
