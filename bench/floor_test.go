package bench

import (
	"context"
	"strconv"
	"testing"
)

// The floors: what one mechanism that a flight cannot do without costs on
// this machine by itself, in its cheapest form, measured beside the
// workloads it bounds (run them in one -bench, as bench/README.md says).
// A target whose allowance is below its floor cannot be met by any
// implementation of the design; the gap between a workload and its floor
// is what is left to optimise.

// BenchmarkFloorHandoff is the least a call with a cancellable ctx adds to
// a flight: fn runs on another goroutine, so that the caller can return
// when its ctx is done while fn goes on for the flight's other callers,
// and the caller waits for fn's result or its ctx. Each RunParallel
// goroutine hands a no-op fn to a worker of its own, already parked on its
// channel (no pool, no message, no flight), and selects on the result and
// its ctx. Against BenchmarkDistinct and BenchmarkDistinctCtx in the same
// run: flight's Background call plus this floor is what the cancellable
// ctx row can reach at best.
func BenchmarkFloorHandoff(b *testing.B) {
	type job struct {
		fn  func(context.Context) (int, error)
		out chan int
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		in := make(chan job)
		exited := make(chan struct{})
		go func() {
			defer close(exited)
			for j := range in {
				v, _ := j.fn(ctx)
				j.out <- v
			}
		}()
		out := make(chan int, 1)
		for pb.Next() {
			in <- job{noop, out}
			select {
			case v := <-out:
				if v != 1 {
					panic("the worker's fn returned " + strconv.Itoa(v))
				}
			case <-ctx.Done():
				panic("ctx done")
			}
		}
		close(in)
		<-exited
	})
}
