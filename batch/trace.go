package batch

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/actorflight/flight/internal/outcome"
	"github.com/actorflight/flight/internal/tracing"
)

// The tracing hooks of the Batcher (WithTracerProvider), called from the
// shards' and the collector's handlers; the span is package
// internal/tracing's. Without a tracer (Config.Tracer nil) each is one nil
// check, and a load allocates nothing more.
//
// The collector owns a batch's tracing, as it owns the batch. It learns a
// key's first caller from the entry (en.first, set before the entry is
// posted and never changed) and a later caller's span from a linkMsg that
// the key's shard posts when that caller joins, after the key's addMsg.

// linkMsg tells the collector of a later caller of en's key, by its span.
type linkMsg[K comparable, V, R any] struct {
	en *entry[K, V, R]
	sc trace.SpanContext
}

// traceJoin, on the shard, tells the collector of a caller that joined en
// after its first, if its ctx holds a valid span context.
func (s *shard[K, V, R]) traceJoin(en *entry[K, V, R], ctx context.Context) {
	if s.e.cfg.Tracer == nil {
		return
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		s.e.col.send(&linkMsg[K, V, R]{en: en, sc: sc})
	}
}

// traceAdd, on the collector, records the first caller of en, just added
// to b (opening b's tracing with b).
func (c *collector[K, V, R]) traceAdd(b *batch[K, V, R], en *entry[K, V, R]) {
	t := c.e.cfg.Tracer
	if t == nil {
		return
	}
	if b.trace == nil {
		b.trace = t.NewBatch()
	}
	b.trace.Add(en, trace.SpanContextFromContext(en.first))
}

// traceLink, on the collector, records a later caller of m.en's key in
// the batch the key is in.
func (c *collector[K, V, R]) traceLink(m *linkMsg[K, V, R]) {
	if b := m.en.batch; b != nil && b.trace != nil {
		b.trace.Add(m.en, m.sc)
	}
}

// traceStart starts b's span as b is dispatched and returns base (the
// first caller's values) with it, for fn's ctx.
func (c *collector[K, V, R]) traceStart(b *batch[K, V, R], base context.Context) context.Context {
	if b.trace == nil {
		return base
	}
	return b.trace.Start(base, len(b.keys), func(tag any) bool { return !tag.(*entry[K, V, R]).dropped })
}

// traceEnd ends b's span as fn returned (before the outcome fields are
// cleared).
func (c *collector[K, V, R]) traceEnd(b *batch[K, V, R]) {
	if b.trace == nil {
		return
	}
	var err error
	var p *tracing.Panic
	switch b.how {
	case outcome.Panicked:
		p = &tracing.Panic{Value: b.pvalue, Stack: b.pstack}
	case outcome.Exited:
		err = c.e.cfg.Errors.Goexit
	default:
		err = b.err
	}
	b.trace.End(err, p)
}
