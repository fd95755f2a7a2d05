package flight

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/actorflight/flight/coordinator"
)

// Func is the function a flight runs. Its context carries the values of the
// caller that started the flight (context.WithoutCancel) and is cancelled
// when every caller has left, when the WithTimeout deadline passes, or on
// Close. A flight whose every caller has left is abandoned: it is detached
// from its key at once, so the next caller starts a new flight and never
// joins one being cancelled (Stats.Abandoned counts it).
type Func[V any] func(ctx context.Context) (V, error)

// Result is what DoChan delivers: the flight's value and error, and whether
// the flight was shared.
type Result[V any] struct {
	Val    V
	Err    error
	Shared bool // the flight had more than one caller (true for the first caller too)
	// Stale reports that Val is a stale retained value, served with a nil
	// Err because the flight failed or the key's breaker is open
	// (WithStaleIfError). Do returns such a value with a nil error too.
	Stale bool
}

// Coordinator deduplicates concurrent calls by key: while fn runs for a key,
// every other caller of that key waits for it and shares its result.
//
// Create one with [New]; the zero value is not usable. All methods are safe
// for concurrent use: make one per kind of work (its key and value types)
// and share it. A Coordinator that is no longer needed should be
// closed: Close waits for running functions and stops the coordinator's
// actors. An idle Coordinator (no flight running) holds no goroutine and no
// per-key memory, closed or not: fn's worker goroutines exit a few
// milliseconds after their last flight. Only Close closes a Coordinator while it is in use: a call
// in progress, an unanswered DoChan and a running fn keep it reachable. One
// that is dropped without Close is closed, its log route and metrics
// registration removed, once the garbage collector finds it unreachable.
//
// Cost: a flight for a fresh key is two messages to the key's shard actor
// (the join and the result), and, with a cancellable ctx or WithTimeout, a
// hand-off of fn to a warm worker goroutine and back; a caller joining a
// running flight costs about one message and one wake-up. An unshared
// flight costs about half a microsecond with a ctx that can never be done
// (fn then runs on the caller's goroutine), about a microsecond with a
// cancellable one: it matters
// when the deduplicated work takes microseconds, not when it is a database
// or network call. Figures against golang.org/x/sync/singleflight:
// https://github.com/actorflight/flight/blob/main/docs/performance.md.
type Coordinator[K comparable, V any] struct {
	c   *coordinator.Engine[K, V, Result[V]] // nil with WithScope
	s   *scopedCoordinator[K, V]             // WithScope (scope.go); nil without
	tel *telemetry                           // metrics callback and log route to undo on Close; nil: none
}

// Stats is a reading of a Coordinator's counters. Keys, InFlight and Waiters
// are gauges: they return to 0 when the coordinator is idle. Entries and
// Open are gauges too, which return to 0 once retained results (stale
// values included) and breaker states have been dropped (by their timers,
// Forget or Close). All gauges are final once Close has returned. The other
// fields count since New. Each field is exact; a Stats is not an atomic
// snapshot of all of them together. The zero
// Stats is an idle coordinator that never ran a flight.
type Stats struct {
	Keys       int    // keys that currently own a live actor
	InFlight   int    // flights whose fn is running now (not one waiting between two attempts)
	Waiters    int    // callers waiting now (the first caller included)
	Flights    uint64 // fn executions started, ever
	Joins      uint64 // callers that shared another caller's flight, ever
	Panics     uint64 // executions that panicked or called runtime.Goexit, and panics of a WithRetry backoff or WithRetryIf predicate
	Timeouts   uint64 // executions stopped by WithTimeout
	Abandoned  uint64 // flights cancelled because every caller left (a background refresh: when forgotten or replaced by a caller's flight)
	Forgotten  uint64 // Forget calls that detached a live flight
	Overloaded uint64 // callers refused with ErrOverloaded
	Entries    int    // results retained now (WithTTL, WithErrorTTL; stale values of WithStaleIfError too); never above WithMaxEntries
	Hits       uint64 // calls answered from a retained result, without running fn
	Refreshes  uint64 // background refreshes started (WithRefreshAhead)
	Retries    uint64 // attempts of fn after a flight's first (WithRetry)
	Stale      uint64 // calls answered with a stale value (WithStaleIfError)
	Open       int    // keys whose breaker is open now (WithBreaker; a gauge)
	Rejected   uint64 // calls refused with ErrOpen (WithBreaker)
}

var (
	// ErrClosed is returned to callers of a Coordinator or a Batcher after
	// its Close, and to waiters that Close answered before their flight or
	// batch ended.
	ErrClosed = errors.New("flight: coordinator closed")
	// ErrOverloaded is returned to a caller refused by WithMaxWaiters or
	// WithMaxInFlight. It is returned at once; callers already admitted are
	// not affected.
	ErrOverloaded = errors.New("flight: overloaded")
	// ErrNilFunc is returned when fn is nil.
	ErrNilFunc = errors.New("flight: nil function")
	// ErrGoexit is returned to every waiter of a flight whose fn called
	// runtime.Goexit (as t.FailNow does).
	ErrGoexit = errors.New("flight: function called runtime.Goexit")
	// ErrInvalidKey is returned for a key that can never be shared: one
	// that cannot be hashed (a slice, map or func inside an interface key)
	// or is not equal to itself (a NaN, or a struct, array or interface
	// holding one). Such a key never reaches the coordinator's actors.
	ErrInvalidKey = errors.New("flight: invalid key")
	// ErrRecursiveCall is returned to a call made from inside fn, for fn's
	// own key, with fn's context or one derived from it: that call would
	// wait for fn, which waits for it. It is also returned for such a call
	// made through a chain of flights (fn of key a calls Do for b with its
	// ctx, and b's fn calls Do for a with its own). A Batcher returns it to
	// a Load from inside its BatchFunc, with the batch's ctx, of a key of
	// that same batch.
	ErrRecursiveCall = errors.New("flight: recursive call: fn called Do for its own key with its flight's context")
)

// PanicError is the error every waiter of a flight gets when fn panicked.
// The process does not crash and the key is usable again at once.
type PanicError struct {
	Value any    // what fn panicked with
	Stack []byte // the stack of the panicking goroutine
}

// Error returns the panic value and the stack.
func (p *PanicError) Error() string {
	return fmt.Sprintf("flight: function panicked: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns Value when it is an error, else nil, so that errors.Is and
// errors.As see through a panic(err).
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// timeoutError is the error of a flight stopped by WithTimeout. It matches
// context.DeadlineExceeded with errors.Is.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("flight: function exceeded WithTimeout(%v): %v", e.d, context.DeadlineExceeded)
}
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }
func (e *timeoutError) Timeout() bool { return true }

func newPanicError(v any, stack []byte) error { return &PanicError{Value: v, Stack: stack} }

// WithTimeout sets a deadline on each execution: d after a flight is created
// its context is cancelled and every waiter gets an error that matches
// context.DeadlineExceeded (errors.Is), even if fn has not returned, and
// even if fn returned its own error once the deadline had passed. 0, the
// default, means no deadline. New panics if d < 0. A d too large to add to
// the current time (math.MaxInt64, say) is clamped: the deadline is about
// 292 years ahead, never one that overflowed into the past.
func WithTimeout(d time.Duration) Option {
	return &option{id: optTimeout, d: d}
}

// WithMaxWaiters bounds the callers of one flight (the first included): the
// (n+1)th caller of a key whose flight already has n gets ErrOverloaded at
// once. 0, the default, means no bound. New panics if n < 0. It applies to
// New only: NewBatcher panics when given it.
//
// WithMaxWaiters counts callers of one key; WithMaxWait, a Batcher's option,
// is a duration: how long a batch collects keys.
//
// With WithMaxWaiters or WithMaxInFlight set, the queue in front of the
// bounds is bounded too: DoChan returns before its call is handled, so a
// DoChan call is refused with ErrOverloaded at once while more than
// max(1024, n, WithMaxInFlight's n) DoChan calls wait in its shard's
// mailbox. (Do waits for its call to be handled, so Do callers cannot pile
// up there.)
func WithMaxWaiters(n int) Option {
	return &option{id: optMaxWaiters, n: n}
}

// WithMaxInFlight bounds the flights across all keys: a call that would
// start a new flight while n flights exist (running, or waiting for the
// previous execution of their key) gets ErrOverloaded at once; calls that
// join an existing flight are not affected. 0, the default, means no bound.
// New panics if n < 0. It applies to New only: NewBatcher panics when given
// it.
//
// WithMaxInFlight counts a Coordinator's flights across keys;
// WithMaxConcurrentBatches, its Batcher counterpart, counts the calls of a
// Batcher's fn running at once.
func WithMaxInFlight(n int) Option {
	return &option{id: optMaxInFlight, n: n}
}

// WithShards sets the number of shard supervisor actors the keyspace is
// split over. More shards mean less contention on each shard's mailbox; each
// costs a protoactor actor (no goroutine). The default is 4×GOMAXPROCS. New
// panics if n is not in [1, 65536].
func WithShards(n int) Option {
	return &option{id: optShards, n: n}
}

// WithActorSystem runs the coordinator's actors in s instead of the
// process-wide system that coordinators share by default. Close stops the
// coordinator's own actors and leaves s running. New panics if s is nil.
func WithActorSystem(s *actor.ActorSystem) Option {
	return &option{id: optActorSystem, p: s, isNil: s == nil}
}

// WithLogger sets where the coordinator logs: a panic in fn is logged once,
// at ERROR, with the key and the stack. While the coordinator runs on the
// shared actor system (no WithActorSystem), protoactor's own lines (dead
// letters, restarts) go to l too, with component=protoactor, until Close.
// The default, and a nil l, discard everything: the coordinator never
// prints unless asked to. A panic in l's handler is recovered and its line
// dropped: logging never fails a flight.
func WithLogger(l *slog.Logger) Option {
	return &option{id: optLogger, p: l}
}

var discard = slog.New(slog.DiscardHandler)

// New returns a running Coordinator for keys of type K and values of type V.
//
// New panics if an option has an invalid value (each option says which), as
// time.NewTicker does for a bad duration: that is a programming error, found
// the first time the code runs. New spawns the shard actors, a few
// microseconds each, and starts no goroutine.
func New[K comparable, V any](opts ...Option) *Coordinator[K, V] {
	cfg := newConfig(forNew, opts)
	onFinish, attach := startTelemetry(&cfg)
	ccfg := coordinator.Config[V, Result[V]]{
		Shards:        cfg.shards,
		Timeout:       cfg.timeout,
		MaxWaiters:    cfg.maxWaiters,
		MaxInFlight:   cfg.maxInFlight,
		System:        cfg.system,
		Logger:        cfg.logger,
		Errors:        engineErrors(cfg.timeout, cfg.panicErr),
		ErrNilFunc:    ErrNilFunc,
		ErrInvalidKey: ErrInvalidKey,
		Result: func(v V, err error, shared bool) Result[V] {
			if err == errStale {
				return Result[V]{Val: v, Shared: shared, Stale: true}
			}
			return Result[V]{Val: v, Err: err, Shared: shared}
		},
		OnFinish:       onFinish,
		ForgetOverlaps: cfg.forgetOverlaps,
		PrivateCtx:     cfg.privateCtx,
		Retain:         cfg.retain,
		Attempts:       cfg.attempts,
		Backoff:        cfg.backoff,
		Retryable:      cfg.retryable,
		Breaker:        cfg.breaker,
		ErrOpen:        ErrOpen,
		Tracer:         newTracer(&cfg),
	}
	fc := &Coordinator[K, V]{}
	var stats func() coordinator.Stats
	var closeEngine func() error
	if cfg.batch.scope != nil {
		fc.s = newScopedCoordinator[K](ccfg, cfg.batch.scope)
		stats, closeEngine = fc.s.e.Stats, fc.s.e.Close
	} else {
		c, err := coordinator.New[K, V, Result[V]](ccfg)
		if err != nil {
			panic(err) // unreachable: the options validated the shard count
		}
		fc.c = c
		stats, closeEngine = c.Stats, c.Close
	}
	// The metrics callback reads the engine, not fc, so that it does not
	// keep fc reachable.
	fc.tel = attach(func() Stats { return statsOf(stats()) })
	// The shard actors stay registered in the actor system until Close, and
	// they hold the engine, not fc (except while a DoChan call is pending:
	// see DoChan). When fc becomes unreachable without Close, nothing can
	// call it or wait for it any more: close the engine and undo the
	// telemetry for the user, on a goroutine of its own (Close waits for
	// running functions, and cleanups must not block).
	runtime.AddCleanup(fc, func(x dropped) {
		go func() {
			x.close()
			x.tel.close()
		}()
	}, dropped{closeEngine, fc.tel})
	return fc
}

// dropped is what the cleanup of a Coordinator collected without Close
// undoes.
type dropped struct {
	close func() error // the engine's Close
	tel   *telemetry
}

// Do runs fn for key and returns its result, unless a flight for key is
// already running, in which case it waits for that flight and returns its
// result. shared reports whether the flight had more than one caller.
//
// Do returns ctx.Err() as soon as ctx is done, even while its call is still
// queued for the key's shard; the flight goes on for the
// other callers, and is cancelled (its context) when the last one leaves. A
// nil ctx is taken as context.Background(). A panic in fn is returned as a
// *PanicError, runtime.Goexit in fn as ErrGoexit.
//
// fn runs on the caller's own goroutine when the caller starts the flight
// with a ctx that can never be done (ctx.Done() == nil, as for
// context.Background()) on a coordinator without WithTimeout (such a caller
// cannot leave before fn returns). runtime.Goexit in fn then ends the caller's goroutine,
// exactly as calling fn directly would (every other waiter still gets
// ErrGoexit), and fn sees the caller's goroutine (runtime.LockOSThread,
// pprof labels). Otherwise fn runs on a worker goroutine of the coordinator.
//
// Executions of one key
// never overlap: a flight started after the previous one was detached
// (abandoned, forgotten or timed out) runs its fn only once the previous fn
// has returned.
//
// A key that cannot be shared (see ErrInvalidKey) gets ErrInvalidKey. A call
// from inside fn for fn's own key, with fn's ctx or one derived from it, gets
// ErrRecursiveCall at once; made with an unrelated ctx (Background, say) it
// would wait for fn, which waits for it, until a deadline or ctx ends one.
func (c *Coordinator[K, V]) Do(ctx context.Context, key K, fn Func[V]) (v V, shared bool, err error) {
	if c.s != nil {
		v, shared, err = c.s.do(ctx, key, fn)
	} else {
		v, shared, err = c.c.Do(ctx, key, fn)
	}
	runtime.KeepAlive(c) // only Close closes c: not the collector while Do waits
	return v, shared, err
}

// DoChan is like Do but returns at once a channel that receives the Result.
// The channel has a buffer of one, receives exactly one Result, and is never
// closed; a caller that never reads it leaks nothing. When ctx is done before
// the flight ends, the Result carries ctx.Err(); errors of Do (ErrNilFunc,
// ErrInvalidKey, ErrRecursiveCall, ErrClosed, ErrOverloaded) arrive on the
// channel too. Until the Result is sent, the call keeps c reachable: a
// Coordinator dropped after DoChan is not closed under it.
func (c *Coordinator[K, V]) DoChan(ctx context.Context, key K, fn Func[V]) <-chan Result[V] {
	if c.s != nil {
		return c.s.doChan(ctx, key, fn, c)
	}
	return c.c.DoChan(ctx, key, fn, c)
}

// Forget detaches key's running flight: callers already waiting still get
// its result, and the next call for key starts a new flight, whose fn runs
// once the detached one has returned. The detached flight ending never
// detaches the new one (golang/go#31420). A flight that has not started its
// fn yet is left alone, since it will run after the Forget anyway. Forget is
// ordered with the caller's later calls: a Do after Forget returns never
// joins the forgotten flight. After Close, and for an invalid key, it does
// nothing.
//
// With retained results, Forget drops the key's result, and a background
// refresh of the key (WithRefreshAhead), which nobody waits for, is
// cancelled. A flight forgotten while it waits between two attempts
// (WithRetry) does not delay the new flight: see WithRetry for how their
// executions are ordered.
//
// With WithScope, Forget has no ctx to tell a scope: it forgets key in every
// scope, at the cost of a message to every shard and a scan of its keys.
func (c *Coordinator[K, V]) Forget(key K) {
	if c.s != nil {
		c.s.forget(key)
		return
	}
	c.c.Forget(key)
}

// Stats returns the coordinator's counters. It takes no lock and sends no
// message: about 20 ns per shard.
func (c *Coordinator[K, V]) Stats() Stats {
	if c.s != nil {
		return statsOf(c.s.e.Stats())
	}
	return statsOf(c.c.Stats())
}

func statsOf(s coordinator.Stats) Stats {
	return Stats{
		Keys: s.Keys, InFlight: s.InFlight, Waiters: s.Waiters,
		Flights: s.Flights, Joins: s.Joins, Panics: s.Panics, Timeouts: s.Timeouts,
		Abandoned: s.Abandoned, Forgotten: s.Forgotten, Overloaded: s.Overloaded,
		Entries: s.Entries, Hits: s.Hits, Refreshes: s.Refreshes, Retries: s.Retries,
		Stale: s.Stale, Open: s.Open, Rejected: s.Rejected,
	}
}

// Close refuses new calls (they get ErrClosed), answers every waiting caller
// with ErrClosed, cancels the context of every running flight, waits until
// every fn has returned, and stops the coordinator's actors and goroutines;
// then it unregisters the coordinator's metrics (WithMeterProvider) and its
// route for protoactor's log lines (WithLogger). It is idempotent: every
// call returns nil once the shutdown is complete.
// Close waits for fn, so it must not be called from fn, and it returns only
// when every fn does.
func (c *Coordinator[K, V]) Close() error {
	var err error
	if c.s != nil {
		err = c.s.e.Close()
	} else {
		err = c.c.Close()
	}
	c.tel.close()
	return err
}
