// Command stampede shows what the coordinator is for: a hot key hit by
// 10,000 concurrent requests against a slow backend that can serve only a
// few queries at a time (10 ms per query, 100 at once). Without the
// coordinator every request queries the backend; with it, the requests that
// arrive while a query runs share it.
//
//	go run ./examples/stampede
//	go run ./examples/stampede -requests 1000 -latency 50ms -capacity 10
//
// It prints backend calls, p50/p99 latency and wall time for both runs, and
// the coordinator's Stats, read after Close (when the gauges are final). A
// run on a 2-core machine:
//
//	10000 concurrent requests for one hot key; backend: 10ms per query, 100 at a time
//
//	without flight:    requests=10000 errors=0 backend calls=10000 p50=554.588ms p99=1.083772s wall=1.096s
//	with flight:       requests=10000 errors=0 backend calls=2 p50=78.427ms p99=91.029ms wall=111ms
//
//	flight.Stats: {Keys:0 InFlight:0 Waiters:0 Flights:2 Joins:9998 Panics:0 Timeouts:0 Abandoned:0 Forgotten:0 Overloaded:0}
//	backend calls saved: 9998 (5000× fewer)
//
// Without the coordinator the backend's pool of 100 is the queue: 10,000
// queries of 10 ms, 100 at a time, take about a second, and the median
// request waits half of it. With it, the first request's query serves
// nearly every caller; a straggler scheduled after that query ended starts a
// second one. The test checks that the coordinator turned 10,000 backend
// calls into a handful and that every other caller joined.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight"
)

// backend is a slow database: each query takes latency, and at most
// capacity queries run at once (its connection pool); the rest queue.
type backend struct {
	latency time.Duration
	slots   chan struct{}
	calls   atomic.Int64
}

func newBackend(latency time.Duration, capacity int) *backend {
	return &backend{latency: latency, slots: make(chan struct{}, capacity)}
}

func (b *backend) query(ctx context.Context, key string) (string, error) {
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-b.slots }()
	b.calls.Add(1)
	select {
	case <-time.After(b.latency):
		return "profile of " + key, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// report is what one run measured.
type report struct {
	Name     string
	Requests int
	Errors   int
	Calls    int64 // backend queries
	P50, P99 time.Duration
	Wall     time.Duration
}

func (r report) String() string {
	return fmt.Sprintf("%-18s requests=%d errors=%d backend calls=%d p50=%v p99=%v wall=%v",
		r.Name, r.Requests, r.Errors, r.Calls, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Wall.Round(time.Millisecond))
}

// storm fires requests concurrent calls of get, all released at once, and
// measures each call's latency.
func storm(name string, requests int, b *backend, get func(context.Context) (string, error)) report {
	lat := make([]time.Duration, requests)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			if v, err := get(context.Background()); err != nil || v == "" {
				errs.Add(1)
			}
			lat[i] = time.Since(t0)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	slices.Sort(lat)
	return report{
		Name: name, Requests: requests, Errors: int(errs.Load()), Calls: b.calls.Load(),
		P50: lat[len(lat)/2], P99: lat[len(lat)*99/100], Wall: wall,
	}
}

// run does both storms and writes the reports and the coordinator's Stats.
func run(w io.Writer, requests int, latency time.Duration, capacity int) (without, with report, st flight.Stats) {
	const key = "user:42"
	fmt.Fprintf(w, "%d concurrent requests for one hot key; backend: %v per query, %d at a time\n\n",
		requests, latency, capacity)

	b1 := newBackend(latency, capacity)
	without = storm("without flight:", requests, b1, func(ctx context.Context) (string, error) {
		return b1.query(ctx, key)
	})
	fmt.Fprintln(w, without)

	c := flight.New[string, string]()
	b2 := newBackend(latency, capacity)
	with = storm("with flight:", requests, b2, func(ctx context.Context) (string, error) {
		v, _, err := c.Do(ctx, key, func(ctx context.Context) (string, error) { return b2.query(ctx, key) })
		return v, err
	})
	fmt.Fprintln(w, with)
	// Close returns once every flight has been retired: the Stats read
	// after it are final, gauges included.
	c.Close()
	st = c.Stats()
	fmt.Fprintf(w, "\nflight.Stats: %+v\n", st)
	if with.Calls > 0 {
		fmt.Fprintf(w, "backend calls saved: %d (%.0f× fewer)\n", without.Calls-with.Calls, float64(without.Calls)/float64(with.Calls))
	}
	return without, with, st
}

func main() {
	requests := flag.Int("requests", 10000, "concurrent requests")
	latency := flag.Duration("latency", 10*time.Millisecond, "backend latency per query")
	capacity := flag.Int("capacity", 100, "backend queries that can run at once")
	flag.Parse()
	run(os.Stdout, *requests, *latency, *capacity)
}
