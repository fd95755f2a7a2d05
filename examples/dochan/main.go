// Command dochan shows DoChan inside a select: each caller of a slow query
// has its own time budget and a fallback value. A caller whose budget runs
// out takes its fallback at once and leaves the flight; the query goes on
// for the callers who stayed, and is cancelled only if every caller leaves.
//
//	go run ./examples/dochan
//
// Each caller gives the query its own budget (context.WithTimeout on its
// ctx, passed to DoChan), so its leaving is known to the flight. Each phase
// runs on a coordinator of its own, whose Stats are read after Close. A run:
//
//	$ go run ./examples/dochan
//	1. seven callers ask for user:42 at once; the query takes 200ms
//	  caller 0 (budget 20ms): fallback "today's best sellers" after 20ms
//	  caller 1 (budget 5s): "for you: user:42 picks", shared=true after 204ms
//	  caller 2 (budget 20ms): fallback "today's best sellers" after 20ms
//	  caller 3 (budget 20ms): fallback "today's best sellers" after 20ms
//	  caller 4 (budget 5s): "for you: user:42 picks", shared=true after 204ms
//	  caller 5 (budget 20ms): fallback "today's best sellers" after 21ms
//	  caller 6 (budget 20ms): fallback "today's best sellers" after 20ms
//	  query executions=1, the query returned err=<nil>
//	  flight.Stats: {Keys:0 InFlight:0 Waiters:0 Flights:1 Joins:6 Panics:0 Timeouts:0 Abandoned:0 Forgotten:0 Overloaded:0}
//	2. three impatient callers ask for user:7; all leave, so the query is cancelled
//	  caller 0 (budget 20ms): fallback "today's best sellers" after 21ms
//	  caller 1 (budget 20ms): fallback "today's best sellers" after 21ms
//	  caller 2 (budget 20ms): fallback "today's best sellers" after 21ms
//	  query executions=1, the query returned err=context canceled
//	  flight.Stats: {Keys:0 InFlight:0 Waiters:0 Flights:1 Joins:2 Panics:0 Timeouts:0 Abandoned:1 Forgotten:0 Overloaded:0}
//
// In the first phase the five impatient callers leave after 20 ms and the
// two patient ones get the query's value, shared, when it returns. In the
// second every caller leaves, the flight is abandoned (Abandoned:1) and the
// query's context is cancelled, so it stops early. A caller that left never
// reads its channel: it still receives that caller's Result (ctx.Err()), and
// with its buffer of one that leaks nothing.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight"
)

func main() {
	cfg := config{Query: 200 * time.Millisecond, Patient: 5 * time.Second, Impatient: 20 * time.Millisecond}
	run(os.Stdout, cfg)
}

type config struct {
	Query     time.Duration // how long the slow query takes
	Patient   time.Duration // budget of a caller who can wait for it
	Impatient time.Duration // budget of a caller who cannot
}

const fallback = "today's best sellers" // what a caller shows when out of time

// answer is what one caller ended up with.
type answer struct {
	Budget   time.Duration
	Val      string
	Fallback bool
	Shared   bool
	Took     time.Duration // from the caller's own start
	At       time.Time     // when the caller had its answer
}

// recommend asks for key's recommendations within budget. It never waits
// longer than budget: past it, it returns the fallback, and its leaving is
// known to the flight (its ctx is the one given to DoChan).
func recommend(ctx context.Context, c *flight.Coordinator[string, string], key string, budget time.Duration, query flight.Func[string]) answer {
	t := time.Now()
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	ch := c.DoChan(ctx, key, query)
	a := answer{Budget: budget}
	select {
	case r := <-ch:
		if r.Err != nil {
			a.Val, a.Fallback = fallback, true // the query failed: same fallback
		} else {
			a.Val, a.Shared = r.Val, r.Shared
		}
	case <-ctx.Done():
		// Out of time. The channel will still receive this caller's Result
		// (ctx.Err()); nobody reads it, and that leaks nothing.
		a.Val, a.Fallback = fallback, true
	}
	a.At = time.Now()
	a.Took = a.At.Sub(t)
	return a
}

// phase is what one group of callers got, and what the query saw.
type phase struct {
	Answers  []answer
	Queries  int64         // executions of the query
	QueryErr error         // what the query returned (context.Canceled if abandoned)
	QueryRan time.Duration // from the query's start to its return, by its own clock
	Returned time.Time     // when the query returned
	Stats    flight.Stats  // read after Close, when every gauge is final
}

// ask starts one caller per budget, all asking for key at once, on a
// coordinator of its own, and waits for every answer and for the query to
// return. Then it closes the coordinator and reads its Stats: Close returns
// once every fn has returned and its shard has retired it, so the gauges
// it leaves are final (0, unless something leaked).
func ask(key string, work time.Duration, budgets []time.Duration) phase {
	c := flight.New[string, string]()
	var p phase
	var queries atomic.Int64
	// What each execution of the query saw. There is one execution; the
	// buffer holds one per caller so that a second one, if the coordinator
	// ever ran it, would be counted rather than block.
	type end struct {
		err error
		ran time.Duration
		at  time.Time
	}
	returned := make(chan end, len(budgets))
	query := func(ctx context.Context) (string, error) {
		queries.Add(1)
		start := time.Now()
		t := time.NewTimer(work)
		defer t.Stop()
		select {
		case <-t.C:
			returned <- end{nil, time.Since(start), time.Now()}
			return "for you: " + key + " picks", nil
		case <-ctx.Done(): // every caller left: the flight was abandoned
			returned <- end{ctx.Err(), time.Since(start), time.Now()}
			return "", ctx.Err()
		}
	}
	p.Answers = make([]answer, len(budgets))
	var wg sync.WaitGroup
	for i, b := range budgets {
		wg.Go(func() { p.Answers[i] = recommend(context.Background(), c, key, b, query) })
	}
	wg.Wait()
	e := <-returned
	p.QueryErr, p.QueryRan, p.Returned = e.err, e.ran, e.at
	c.Close()
	p.Queries = queries.Load()
	p.Stats = c.Stats()
	return p
}

func run(w io.Writer, cfg config) (stayed, left phase) {
	show := func(title string, p phase) {
		fmt.Fprintln(w, title)
		for i, a := range p.Answers {
			how := fmt.Sprintf("%q, shared=%v", a.Val, a.Shared)
			if a.Fallback {
				how = fmt.Sprintf("fallback %q", a.Val)
			}
			fmt.Fprintf(w, "  caller %d (budget %v): %s after %v\n", i, a.Budget, how, a.Took.Round(time.Millisecond))
		}
		fmt.Fprintf(w, "  query executions=%d, the query returned err=%v\n", p.Queries, p.QueryErr)
		fmt.Fprintf(w, "  flight.Stats: %+v\n", p.Stats)
	}

	// Two callers can wait, five cannot: the impatient ones take the
	// fallback after their budget, the query finishes for the other two.
	budgets := []time.Duration{cfg.Impatient, cfg.Patient, cfg.Impatient, cfg.Impatient, cfg.Patient, cfg.Impatient, cfg.Impatient}
	stayed = ask("user:42", cfg.Query, budgets)
	show(fmt.Sprintf("1. seven callers ask for user:42 at once; the query takes %v", cfg.Query), stayed)

	// Nobody can wait: the last caller to leave abandons the flight, and
	// the query's context is cancelled, so it stops early.
	left = ask("user:7", cfg.Query, []time.Duration{cfg.Impatient, cfg.Impatient, cfg.Impatient})
	show("2. three impatient callers ask for user:7; all leave, so the query is cancelled", left)
	return stayed, left
}
