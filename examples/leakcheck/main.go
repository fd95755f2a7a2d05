// Command leakcheck is a small service that uses a flight coordinator the
// way an application does, and its test (main_test.go) shows how to check
// with go.uber.org/goleak that such code leaks no goroutine — including
// what to do about the one goroutine protoactor itself may leave for a
// moment.
//
// The service quotes prices: concurrent requests for a symbol share one
// query, and each answer is reported to an audit actor of the
// application's own protoactor system, in which the coordinator runs too
// (WithActorSystem).
//
//	go run ./examples/leakcheck
//	go test -race ./examples/leakcheck
//
// A run:
//
//	6 requests, 3 queries; audited: 6 quotes
//	  ACME=400 shared=true
//	  ACME=400 shared=true
//	  ACME=400 shared=true
//	  GLOBEX=600 shared=true
//	  GLOBEX=600 shared=true
//	  INITECH=700 shared=false
//
// # Checking for leaks
//
// The test shows the pattern for your own tests: goleak.VerifyTestMain(m)
// for the package, and goleak.VerifyNone(t) after using and closing the
// coordinator. An idle coordinator holds no goroutine even before Close.
//
// The one goroutine protoactor may leave for a moment is the timer of its
// dead-letter log throttle (protoactor-go's actor/throttler.go). A message
// sent to a stopped actor (a dead letter) starts it, and it returns by
// itself after the system's DeadLetterThrottleInterval (1 s by default) —
// longer than goleak retries (about 0.5 s). The coordinator never sends a
// dead letter (its Close stops its actors only once nothing can send to
// them); your own actors can, for instance by stopping an actor while
// something still sends to it. If that is expected, ignore the goroutine by
// its exact name, which depends on inlining, so list both:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(m,
//			goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"), // normal build
//			goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),               // -gcflags=all=-l
//		)
//	}
//
// or wait for it to end, or give your own system a shorter
// actor.WithDeadLetterThrottleInterval.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/actorflight/flight"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "leakcheck:", err)
		os.Exit(1)
	}
}

// Quote is one audited answer.
type Quote struct {
	Symbol string
	Cents  int64
	Shared bool
}

// Service answers price requests. Create it with NewService and Close it.
type Service struct {
	sys     *actor.ActorSystem
	audit   *actor.PID
	audited chan Quote // the audit actor's output, for the demo
	quotes  *flight.Coordinator[string, int64]
	queries atomic.Int64
}

// NewService starts the service in sys: its audit actor and its
// coordinator.
func NewService(sys *actor.ActorSystem) *Service {
	s := &Service{sys: sys, audited: make(chan Quote, 1024)}
	s.audit = sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if q, ok := c.Message().(Quote); ok {
			s.audited <- q
		}
	}))
	s.quotes = flight.New[string, int64](flight.WithActorSystem(sys), flight.WithTimeout(time.Second))
	return s
}

// Price returns the price of symbol, sharing the query with concurrent
// callers for the same symbol, and reports the answer to the audit actor.
func (s *Service) Price(ctx context.Context, symbol string) (int64, error) {
	cents, shared, err := s.quotes.Do(ctx, symbol, func(ctx context.Context) (int64, error) {
		s.queries.Add(1)
		t := time.NewTimer(20 * time.Millisecond) // the market data feed
		defer t.Stop()
		select {
		case <-t.C:
			return int64(100 * len(symbol)), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	if err != nil {
		return 0, err
	}
	s.sys.Root.Send(s.audit, Quote{Symbol: symbol, Cents: cents, Shared: shared})
	return cents, nil
}

// Close stops the coordinator (it waits for running queries), then the
// audit actor, in that order: a Price call still running could otherwise
// send to a stopped actor (a dead letter). The actor is stopped with
// Poison, which is queued after the quotes sent to it; Stop would overtake
// them, and they would be dropped. Call Close once no Price call runs: one
// still running could send to the stopped audit actor.
func (s *Service) Close() error {
	err := s.quotes.Close()
	if stopErr := s.sys.Root.PoisonFuture(s.audit).Wait(); err == nil {
		err = stopErr
	}
	return err
}

// quietSystem is a protoactor system whose own log lines go to w at WARN
// and above (protoactor's default logger writes INFO lines to stderr).
func quietSystem(w io.Writer) *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "protoactor")
	}))
}

func run(w io.Writer) error {
	sys := quietSystem(os.Stderr)
	s := NewService(sys)
	ctx := context.Background()
	symbols := []string{"ACME", "ACME", "ACME", "GLOBEX", "GLOBEX", "INITECH"}
	var wg sync.WaitGroup
	errs := make(chan error, len(symbols))
	for _, sym := range symbols {
		wg.Go(func() {
			_, err := s.Price(ctx, sym)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	close(s.audited) // the audit actor is stopped: nothing sends any more
	var lines []string
	for q := range s.audited {
		lines = append(lines, fmt.Sprintf("%s=%d shared=%v", q.Symbol, q.Cents, q.Shared))
	}
	slices.Sort(lines)
	fmt.Fprintf(w, "%d requests, %d queries; audited: %d quotes\n", len(symbols), s.queries.Load(), len(lines))
	fmt.Fprintf(w, "  %s\n", strings.Join(lines, "\n  "))
	return nil
}
