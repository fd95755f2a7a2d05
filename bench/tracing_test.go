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
// Each reports cpu-ns/op besides ns/op: the process's CPU time per op.
//
// span runs in the state of the process that traced runs in: after the key
// table is made and flight's shared actor system is up (the first New
// starts it; it stays for the life of the process). What an allocation
// costs the garbage collector depends on the live heap (the table's 65,536
// strings, the system's process registry), and about a third of each
// sub-benchmark's CPU time is the collector's (GOGC=off: span about 0.65,
// traced about 0.6 of their time with it), so the yardstick and the flight
// are measured on the same heap.
func BenchmarkTracing(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(nopProcessor{}))
	defer tp.Shutdown(context.Background())
	keys := keyTable(64 * keysPerGoroutine)
	if err := flight.New[string, int]().Close(); err != nil { // the shared actor system
		b.Fatal(err)
	}
	b.Run("span", func(b *testing.B) {
		tr := tp.Tracer("bench")
		b.ReportAllocs()
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				_, sp := tr.Start(ctx, "flight.run")
				sp.End()
			}
		})
		cpu.report(b)
	})
	// span with flight.run's three attributes, set as flight sets them (one
	// call before End): how much of a traced flight is the SDK's work on them.
	b.Run("span-attrs", func(b *testing.B) {
		tr := tp.Tracer("bench")
		attrs := runAttrs
		b.ReportAllocs()
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				_, sp := tr.Start(ctx, "flight.run")
				sp.SetAttributes(attrs...)
				sp.End()
			}
		})
		cpu.report(b)
	})
	for _, tc := range tracingCases(tp) {
		b.Run(tc.name, func(b *testing.B) {
			c := flight.New[string, int](tc.opts...)
			defer c.Close()
			var next, shared atomic.Int64
			var failed errs
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
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
			cpu.report(b)
			if err := failed.err(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(shared.Load())/float64(b.N), "shared/op")
		})
	}
}

// BenchmarkTracingSeq is BenchmarkTracing on one goroutine: no processor
// waits for another, so a traced flight's own work is seen apart from how
// well it runs in parallel. traced ≈ span-attrs + untraced says that the
// flight adds nothing to the SDK's work on its span but its own call.
func BenchmarkTracingSeq(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(nopProcessor{}))
	defer tp.Shutdown(context.Background())
	keys := keyTable(keysPerGoroutine)
	if err := flight.New[string, int]().Close(); err != nil { // the shared actor system
		b.Fatal(err)
	}
	ctx := context.Background()
	tr := tp.Tracer("bench")
	attrs := runAttrs
	b.Run("span", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, sp := tr.Start(ctx, "flight.run")
			sp.End()
		}
	})
	b.Run("span-attrs", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, sp := tr.Start(ctx, "flight.run")
			sp.SetAttributes(attrs...)
			sp.End()
		}
	})
	for _, tc := range tracingCases(tp) {
		b.Run(tc.name, func(b *testing.B) {
			c := flight.New[string, int](tc.opts...)
			defer c.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if v, sh, err := c.Do(ctx, keys[i%len(keys)], noop); err != nil || v != 1 || sh {
					b.Fatalf("Do = %d, %v, %v", v, sh, err)
				}
			}
		})
	}
}

// runAttrs are the three attributes flight sets on flight.run, as a
// distinct-key flight has them.
var runAttrs = []attribute.KeyValue{attribute.Int("flight.attempt", 1), attribute.Bool("flight.refresh", false), attribute.Int("flight.callers", 1)}

// tracingCase is a coordinator that BenchmarkTracing and
// BenchmarkTracingSeq measure: made with WithTracerProvider of their
// provider (traced), or without it (untraced).
type tracingCase struct {
	name string
	opts []flight.Option
}

func tracingCases(tp *sdktrace.TracerProvider) []tracingCase {
	return []tracingCase{
		{"traced", []flight.Option{flight.WithTracerProvider(tp)}},
		{"untraced", nil},
	}
}

// cpuClock is the process's CPU time at the start of a benchmark's loop.
type cpuClock int64

func startCPU() cpuClock { return cpuClock(cpuTime()) }

// report reports the process's CPU time per op since c, as cpu-ns/op: on
// a shared machine it varies far less than the wall time (ns/op), which
// other processes' preemptions inflate, and counts what the garbage
// collector's workers and idle processors spinning cost.
func (c cpuClock) report(b *testing.B) {
	if now := cpuTime(); c >= 0 && now >= 0 {
		b.ReportMetric(float64(now-int64(c))/float64(b.N), "cpu-ns/op")
	}
}

// nopProcessor is a span processor that keeps nothing.
type nopProcessor struct{}

func (nopProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (nopProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (nopProcessor) Shutdown(context.Context) error                  { return nil }
func (nopProcessor) ForceFlush(context.Context) error                { return nil }
