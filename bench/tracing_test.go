package bench

import (
	"context"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/actorflight/flight"
)

// BenchmarkTracing is the cost of WithTracerProvider on the distinct-key
// workload (BenchmarkDistinct: RunParallel, no-op fn, context.Background()),
// against its yardstick: starting and ending one span with the same
// provider, on the same goroutines. The provider samples everything and its
// span processor does nothing, so span is the SDK's own cost of a span,
// and the target is traced ≤ 2× span. span-attrs is span with the three
// attributes flight sets on flight.run, and untraced the same flight
// without the option, for scale.
//
// The key table is made before span runs, so that all four run with the
// same live heap: the garbage collector's marking of its 65,536 strings is
// part of what every allocation costs here, and span made without it was
// about 10% cheaper in CPU time than with it.
func BenchmarkTracing(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(nopProcessor{}))
	defer tp.Shutdown(context.Background())
	keys := keyTable(64 * keysPerGoroutine)
	b.Run("span", func(b *testing.B) {
		tr := tp.Tracer("bench")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				_, sp := tr.Start(ctx, "flight.run")
				sp.End()
			}
		})
	})
	// span with flight.run's three attributes, set as flight sets them (one
	// call before End): how much of a traced flight is the SDK's work on them.
	b.Run("span-attrs", func(b *testing.B) {
		tr := tp.Tracer("bench")
		attrs := []attribute.KeyValue{attribute.Int("flight.attempt", 1), attribute.Bool("flight.refresh", false), attribute.Int("flight.callers", 1)}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				_, sp := tr.Start(ctx, "flight.run")
				sp.SetAttributes(attrs...)
				sp.End()
			}
		})
	})
	for _, tc := range []struct {
		name string
		opts []flight.Option
	}{
		{"traced", []flight.Option{flight.WithTracerProvider(tp)}},
		{"untraced", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := flight.New[string, int](tc.opts...)
			defer c.Close()
			var next, shared atomic.Int64
			var failed errs
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				base := int(next.Add(1)-1) * keysPerGoroutine
				for i := 0; pb.Next(); i++ {
					v, sh, err := c.Do(ctx, keys[(base+i%keysPerGoroutine)%len(keys)], noop)
					if err != nil || v != 1 {
						failed.set("Do = %d, %v", v, err)
					}
					if sh {
						shared.Add(1)
					}
				}
			})
			b.StopTimer()
			if err := failed.err(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(shared.Load())/float64(b.N), "shared/op")
		})
	}
}

// nopProcessor is a span processor that keeps nothing.
type nopProcessor struct{}

func (nopProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (nopProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (nopProcessor) Shutdown(context.Context) error                  { return nil }
func (nopProcessor) ForceFlush(context.Context) error                { return nil }
