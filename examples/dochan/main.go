// Command dochan shows DoChan inside a select: each caller of a slow query
// has its own time budget and a fallback value. A caller whose budget runs
// out takes its fallback at once and leaves the flight; the query goes on
// for the callers who stayed, and is cancelled only if every caller leaves.
//
//	go run ./examples/dochan
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
	Took     time.Duration
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
	a.Took = time.Since(t)
	return a
}

// phase is what one group of callers got, and what the query saw.
type phase struct {
	Answers  []answer
	Queries  int64 // executions of the query
	QueryErr error // what the query returned (context.Canceled if abandoned)
	Stats    flight.Stats
}

// ask starts one caller per budget, all asking for key at once, and waits
// for every answer and for the query to return.
func ask(c *flight.Coordinator[string, string], key string, work time.Duration, budgets []time.Duration) phase {
	var p phase
	var queries atomic.Int64
	returned := make(chan error, 1)
	query := func(ctx context.Context) (string, error) {
		queries.Add(1)
		t := time.NewTimer(work)
		defer t.Stop()
		select {
		case <-t.C:
			returned <- nil
			return "for you: " + key + " picks", nil
		case <-ctx.Done(): // every caller left: the flight was abandoned
			returned <- ctx.Err()
			return "", ctx.Err()
		}
	}
	p.Answers = make([]answer, len(budgets))
	var wg sync.WaitGroup
	for i, b := range budgets {
		wg.Go(func() { p.Answers[i] = recommend(context.Background(), c, key, b, query) })
	}
	wg.Wait()
	p.QueryErr = <-returned
	p.Queries = queries.Load()
	// The gauges are updated by the key's shard a moment after the query
	// returns: give them up to a second to settle.
	deadline := time.Now().Add(time.Second)
	for p.Stats = c.Stats(); p.Stats.InFlight+p.Stats.Waiters+p.Stats.Keys > 0 && time.Now().Before(deadline); p.Stats = c.Stats() {
		time.Sleep(100 * time.Microsecond)
	}
	return p
}

func run(w io.Writer, cfg config) (stayed, left phase) {
	c := flight.New[string, string]()
	defer c.Close()

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
	stayed = ask(c, "user:42", cfg.Query, budgets)
	show(fmt.Sprintf("1. seven callers ask for user:42 at once; the query takes %v", cfg.Query), stayed)

	// Nobody can wait: the last caller to leave abandons the flight, and
	// the query's context is cancelled, so it stops early.
	left = ask(c, "user:7", cfg.Query, []time.Duration{cfg.Impatient, cfg.Impatient, cfg.Impatient})
	show("2. three impatient callers ask for user:7; all leave, so the query is cancelled", left)
	return stayed, left
}
