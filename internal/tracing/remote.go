package tracing

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The cluster's hook. A caller on one member reaches a key's owner on
// another as a Join message; for the owner's flight.run span to link that
// caller (or, when it starts the flight, to be its child), the Join carries
// the caller's span context as W3C Trace Context strings, and the owner
// makes the context of its Do or DoChan for that Join with
// WithRemoteCaller. Nothing else is needed on the owner: a flight links
// every later caller whose ctx holds a valid span context, remote or not.
//
// The format is always W3C Trace Context (propagation.TraceContext), not
// the global propagator: the wire format is the cluster's own, and the
// global otel state is never used.

var w3c propagation.TraceContext

// TraceParent returns the traceparent and tracestate of ctx's span
// context, or two empty strings when it has no valid one. It allocates a
// little (a map carrier); call it only when the member traces.
func TraceParent(ctx context.Context) (traceparent, tracestate string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// WithRemoteCaller returns ctx carrying the remote span context that
// traceparent and tracestate describe (trace.ContextWithRemoteSpanContext),
// or ctx itself when traceparent is empty or malformed.
func WithRemoteCaller(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	c := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		c["tracestate"] = tracestate
	}
	out := w3c.Extract(ctx, c)
	if !trace.SpanContextFromContext(out).IsRemote() {
		return ctx // malformed: Extract left ctx as it was
	}
	return out
}
