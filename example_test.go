package flight_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// Three callers ask for the same key while its function runs: it runs once
// and they all get its result.
func ExampleCoordinator_Do() {
	c := flight.New[string, string]()
	defer c.Close()

	release := make(chan struct{})
	var calls sync.WaitGroup
	calls.Add(1)
	load := func(context.Context) (string, error) {
		calls.Done() // panics if called twice
		<-release
		return "Ada Lovelace", nil
	}
	var wg sync.WaitGroup
	results := make([]string, 3)
	for i := range results {
		wg.Go(func() {
			v, shared, err := c.Do(context.Background(), "user:42", load)
			results[i] = fmt.Sprintf("%s shared=%v err=%v", v, shared, err)
		})
	}
	wait.For(wait.Hang, func() bool { return c.Stats().Waiters == 3 }) // all three are waiting
	close(release)
	wg.Wait()
	for _, r := range results {
		fmt.Println(r)
	}
	st := c.Stats()
	fmt.Printf("flights=%d joins=%d\n", st.Flights, st.Joins)
	// Output:
	// Ada Lovelace shared=true err=<nil>
	// Ada Lovelace shared=true err=<nil>
	// Ada Lovelace shared=true err=<nil>
	// flights=1 joins=2
}

// DoChan in a select: a caller that cannot wait takes a fallback and
// leaves; the flight goes on for the caller that stayed.
func ExampleCoordinator_DoChan() {
	c := flight.New[string, string]()
	defer c.Close()

	release := make(chan struct{})
	slow := func(context.Context) (string, error) { <-release; return "fresh", nil }

	patient := c.DoChan(context.Background(), "report", slow)

	ctx, cancel := context.WithCancel(context.Background())
	impatient := c.DoChan(ctx, "report", slow)
	wait.For(wait.Hang, func() bool { return c.Stats().Waiters == 2 })
	cancel() // this caller's budget is spent
	select {
	case r := <-impatient:
		if r.Err != nil {
			fmt.Println("impatient: fallback,", r.Err)
		} else {
			fmt.Println("impatient:", r.Val)
		}
	case <-ctx.Done():
		fmt.Println("impatient: fallback,", ctx.Err())
	}
	close(release)
	r := <-patient
	fmt.Println("patient:", r.Val, r.Err, "shared:", r.Shared)
	// Output:
	// impatient: fallback, context canceled
	// patient: fresh <nil> shared: true
}

// Forget detaches the running flight: its callers still get its result,
// and the next call starts a new flight.
func ExampleCoordinator_Forget() {
	c := flight.New[string, int]()
	defer c.Close()

	release := make(chan struct{})
	started := make(chan struct{})
	old := c.DoChan(context.Background(), "config", func(context.Context) (int, error) {
		close(started)
		<-release
		return 1, nil // read before the file changed
	})
	<-started
	c.Forget("config")
	fresh := c.DoChan(context.Background(), "config", func(context.Context) (int, error) { return 2, nil })
	close(release)
	fmt.Println("old caller:", (<-old).Val)
	fmt.Println("new caller:", (<-fresh).Val)
	fmt.Println("forgotten:", c.Stats().Forgotten)
	// Output:
	// old caller: 1
	// new caller: 2
	// forgotten: 1
}

// A panic in the function reaches every caller as a *PanicError; the
// process does not crash and the key is usable again at once.
func ExamplePanicError() {
	c := flight.New[string, int]()
	defer c.Close()

	_, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) {
		panic(errors.New("nil map"))
	})
	var pe *flight.PanicError
	fmt.Println(errors.As(err, &pe), pe.Value)
	v, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
	fmt.Println(v, err)
	// Output:
	// true nil map
	// 7 <nil>
}

// The deadline cancels the function's context, and every caller gets an
// error that matches context.DeadlineExceeded, even from a function that
// would ignore it.
func ExampleWithTimeout() {
	c := flight.New[string, int](flight.WithTimeout(1)) // 1 ns: expired at once
	defer c.Close()

	_, _, err := c.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	fmt.Println(errors.Is(err, context.DeadlineExceeded), c.Stats().Timeouts)
	// Output:
	// true 1
}

// A key whose flight already has n callers refuses the next one at once.
func ExampleWithMaxWaiters() {
	c := flight.New[string, int](flight.WithMaxWaiters(2))
	defer c.Close()

	release := make(chan struct{})
	hold := func(context.Context) (int, error) { <-release; return 1, nil }
	a := c.DoChan(context.Background(), "hot", hold)
	b := c.DoChan(context.Background(), "hot", hold)
	wait.For(wait.Hang, func() bool { return c.Stats().Waiters == 2 })
	_, _, err := c.Do(context.Background(), "hot", hold)
	fmt.Println(err)
	close(release)
	fmt.Println((<-a).Val, (<-b).Val, c.Stats().Overloaded)
	// Output:
	// flight: overloaded
	// 1 1 1
}

// Beyond n flights across keys, a call that would start one more is
// refused; a call joining a running flight is not.
func ExampleWithMaxInFlight() {
	c := flight.New[string, int](flight.WithMaxInFlight(1))
	defer c.Close()

	release := make(chan struct{})
	hold := func(context.Context) (int, error) { <-release; return 1, nil }
	a := c.DoChan(context.Background(), "a", hold)
	wait.For(wait.Hang, func() bool { return c.Stats().InFlight == 1 })
	_, _, err := c.Do(context.Background(), "b", hold)
	fmt.Println("b:", err)
	joined := c.DoChan(context.Background(), "a", hold)
	wait.For(wait.Hang, func() bool { return c.Stats().Waiters == 2 })
	close(release)
	fmt.Println("a:", (<-a).Val, (<-joined).Val)
	// Output:
	// b: flight: overloaded
	// a: 1 1
}

// WithLogger: a panic is logged once, at ERROR, with the key (and the
// stack, left out here to keep the output short).
func ExampleWithLogger() {
	h := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "stack" {
				return slog.Attr{}
			}
			return a
		},
	})
	c := flight.New[string, int](flight.WithLogger(slog.New(h)))
	defer c.Close()

	_, _, err := c.Do(context.Background(), "user:42", func(context.Context) (int, error) { panic("boom") })
	fmt.Println(err != nil)
	// Output:
	// level=ERROR msg="flight: function panicked" key=user:42 panic=boom
	// true
}

// WithMeterProvider reports the coordinator's counters to OpenTelemetry.
// Here an SDK provider with a manual reader is read after two flights.
func ExampleWithMeterProvider() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	c := flight.New[string, int](flight.WithMeterProvider(provider))
	defer c.Close()
	for _, k := range []string{"a", "b"} {
		c.Do(context.Background(), k, func(context.Context) (int, error) { return 0, nil })
	}
	wait.For(wait.Hang, func() bool { return c.Stats().Keys == 0 })

	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == "flight.flights" || m.Name == "flight.keys" {
					fmt.Println(m.Name, m.Unit, d.DataPoints[0].Value)
				}
			case metricdata.Histogram[int64]:
				fmt.Println(m.Name, m.Unit, "count", d.DataPoints[0].Count, "sum", d.DataPoints[0].Sum)
			}
		}
	}
	// Unordered output:
	// flight.flights {flight} 2
	// flight.keys {key} 0
	// flight.callers {call} count 2 sum 2
}

// WithShards spreads the keys over more or fewer shard actors; the
// behaviour is the same.
func ExampleWithShards() {
	c := flight.New[int, int](flight.WithShards(1))
	defer c.Close()
	v, _, err := c.Do(context.Background(), 1, func(context.Context) (int, error) { return 10, nil })
	fmt.Println(v, err)
	// Output:
	// 10 <nil>
}

// WithActorSystem runs the coordinator's actors in the application's own
// protoactor system; Close stops them and leaves the system running.
func ExampleWithActorSystem() {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler) // protoactor's default logs INFO to stderr
	}))
	c := flight.New[string, int](flight.WithActorSystem(sys))
	v, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 3, nil })
	fmt.Println(v, err)
	c.Close()
	fmt.Println("system stopped:", sys.IsStopped())
	// Output:
	// 3 <nil>
	// system stopped: false
}
