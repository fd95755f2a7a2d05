// Package coordinator runs the shard supervisors of a flight coordinator:
// protoactor actors that each own a share of the keys, make a key's actor
// (package actor) on its first call, route joins, leaves, Forget and results
// to it, retire it when its last flight ends, and contain faults. [Engine]
// owns the coordinator's lifecycle: the actor system, the worker pool, the
// counters, and Close.
//
// It is part of flight's engine: the root package flight is the API, and
// this package carries no compatibility promise. The message flow and the
// invariants the shards keep are described in
// https://github.com/actorflight/flight/blob/main/docs/design.md.
package coordinator

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	fa "github.com/actorflight/flight/actor"
	"github.com/actorflight/flight/internal/gate"
	"github.com/actorflight/flight/internal/shared"
	"github.com/actorflight/flight/internal/tracing"
	"github.com/actorflight/flight/keyspace"
	"github.com/actorflight/flight/mailbox"
)

// Config is the resolved configuration of a Coordinator.
type Config[V, R any] struct {
	Shards      int
	Timeout     time.Duration
	MaxWaiters  int
	MaxInFlight int
	System      *actor.ActorSystem // nil: the process-wide shared system
	Logger      *slog.Logger       // never nil

	Errors        fa.Errors
	ErrNilFunc    error
	ErrInvalidKey error
	// Result makes the value a DoChan caller receives.
	Result func(val V, err error, shared bool) R
	// OnFinish, when set, is told of each execution's duration and of how
	// many callers its flight had (for metrics). It runs on the goroutine
	// draining a shard's mailbox and must not block.
	OnFinish func(d time.Duration, callers int)
	// ForgetOverlaps: see actor.Env.ForgetOverlaps.
	ForgetOverlaps bool
	// PrivateCtx: see actor.Env.PrivateCtx.
	PrivateCtx bool
	// Retain configures retained results (see retain.go); the zero value
	// retains nothing.
	Retain RetainConfig
	// Attempts, Backoff and Retryable configure retries within a flight
	// (see actor.Env); Attempts ≤ 1: none. Retryable must be set when
	// Attempts > 1.
	Attempts  int
	Backoff   func(n int) time.Duration
	Retryable func(error) bool
	// Breaker configures the per-key breaker (see breaker.go); the zero
	// value has none. ErrOpen is the error of a call it refuses.
	Breaker BreakerConfig
	ErrOpen error
	// Tracer makes the spans of executions and the flight.hit events
	// (WithTracerProvider); nil: no tracing.
	Tracer *tracing.Tracer
}

// Engine is the engine behind flight.Coordinator. R is the result type
// DoChan delivers (flight.Result[V]); it is a type parameter so that this
// package need not import the root package.
type Engine[K comparable, V, R any] struct {
	cfg    Config[V, R]
	system *actor.ActorSystem
	ks     keyspace.Keyspace[K]
	shards []*shard[K, V, R]
	pool   *fa.Pool
	calls  sync.Pool // *call for Do, see getCall
	// backlog bounds the DoChan calls waiting in one shard's mailbox when
	// MaxWaiters or MaxInFlight is set: max(minBacklog, MaxWaiters,
	// MaxInFlight), so that a burst the bounds would admit is never refused
	// for the backlog alone. 0: no bound.
	backlog  int64
	retained *policy[K, V] // retained results across shards (Config.Retain); nil: none

	closeOnce sync.Once
}

// New starts a coordinator: it spawns cfg.Shards shard actors on the actor
// system. Spawning costs a few microseconds per shard and no goroutine.
func New[K comparable, V, R any](cfg Config[V, R]) (*Engine[K, V, R], error) {
	ks, err := keyspace.Make[K](cfg.Shards)
	if err != nil {
		return nil, err
	}
	c := &Engine[K, V, R]{
		cfg:    cfg,
		system: cfg.System,
		ks:     ks,
		pool:   fa.NewPool(fa.Linger),
	}
	if cfg.MaxWaiters > 0 || cfg.MaxInFlight > 0 {
		c.backlog = int64(max(minBacklog, cfg.MaxWaiters, cfg.MaxInFlight))
	}
	if c.system == nil {
		c.system = shared.System()
	}
	limit := fa.NewLimit(cfg.MaxInFlight)
	if cfg.Retain.enabled() {
		c.retained = newPolicy[K, V](cfg.Retain.MaxEntries)
	}
	c.shards = make([]*shard[K, V, R], cfg.Shards)
	for i := range c.shards {
		s := &shard[K, V, R]{
			c:       c,
			api:     gate.New(),
			posts:   gate.New(),
			drained: make(chan struct{}),
			stopped: make(chan struct{}),
		}
		s.env = fa.Env[K, V]{
			Pool:       c.pool,
			Limit:      limit,
			MaxWaiters: cfg.MaxWaiters,
			Timeout:    cfg.Timeout,
			Stats:      &s.stats,
			Errors:     cfg.Errors,
			Post:       s.postInternal,
			Finished:   s.finished,
			OnPanic:    c.logPanic,
			OnFinish:   cfg.OnFinish,

			ForgetOverlaps: cfg.ForgetOverlaps,
			PrivateCtx:     cfg.PrivateCtx,
			Attempts:       cfg.Attempts,
			Backoff:        cfg.Backoff,
			Retryable:      cfg.Retryable,
			Tracer:         cfg.Tracer,
		}
		if cfg.Retain.enabled() {
			s.store = newStore[K, V](&c.cfg.Retain, c.retained, s.postInternal)
			s.env.Retain = s.retain
		}
		if cfg.Breaker.Failures > 0 {
			s.brk = newBreakers[K, V](cfg.Breaker, &s.stats, s.postInternal)
		}
		if s.brk != nil || (s.store != nil && cfg.Retain.Stale > 0) {
			s.env.Outcome = s.outcome
		}
		if s.brk != nil {
			s.env.Tracked = &s.brk.n
		} else {
			s.env.Tracked = &noBreakers // stale values only: a success needs no telling
		}
		// The producer returns the same shard each time: if protoactor ever
		// restarted the actor, its keys and waiters would survive.
		s.mb = mailbox.New(s.handle)
		s.pid = c.system.Root.Spawn(mailbox.PropsWith(func() actor.Actor { return s }, s.mb))
		c.shards[i] = s
	}
	return c, nil
}

// logPanic logs a panic of fn with the flight's ctx, so that a handler
// that adds trace ids (an OpenTelemetry slog bridge) sees the execution's
// span.
func (c *Engine[K, V, R]) logPanic(ctx context.Context, key K, value any, stack []byte) {
	c.cfg.Logger.ErrorContext(ctx, "flight: function panicked",
		slog.Any("key", key), slog.Any("panic", value), slog.String("stack", string(stack)))
}

// Do runs fn once per key at a time and returns its result to every caller
// that asked while it ran. See flight.Coordinator.Do.
//
// Its frame is kept small, and everything after the post is in wait: a
// caller whose post finds its shard idle runs the shard's handlers on top
// of this frame (see shard.handle), and a fresh goroutine has a 2 KB
// stack. Measured: in BenchmarkStampedeShare (1,000 fresh callers of one
// key) 29% of the CPU went to growing those callers' stacks
// (runtime.newstack under shard.owner's map look-up) when the deepest
// handler's frame lay just past the first 2 KB (TestJoinFitsFreshStack).
func (c *Engine[K, V, R]) Do(ctx context.Context, key K, fn func(context.Context) (V, error)) (v V, shared bool, err error) {
	if fn == nil {
		return v, false, c.cfg.ErrNilFunc
	}
	i, h, ok := c.locate(key)
	if !ok {
		return v, false, c.cfg.ErrInvalidKey
	}
	if ctx == nil {
		ctx = context.Background()
	}
	s := c.shards[i]
	if s.brk != nil || s.store != nil || ctx.Err() != nil {
		if v, shared, err, ok = c.early(ctx, s, key, fn); ok {
			return v, shared, err
		}
	}
	if !s.api.Enter() {
		return v, false, c.cfg.Errors.Closed
	}
	cl := c.getCall()
	cl.key, cl.h = key, h
	cl.w.Ctx, cl.w.Fn = ctx, fn
	s.mb.Post(&cl.node)
	return c.wait(s, cl)
}

// locate returns key's shard and hash (keyspace.Locate), or false for a
// key that cannot be shared.
func (c *Engine[K, V, R]) locate(key K) (shard int, h uint64, ok bool) {
	shard, h, ok = c.ks.Locate(key)
	if testHookHash != nil {
		h = testHookHash(h)
	}
	return shard, h, ok
}

// hash returns the hash of a key that locate accepted.
func (c *Engine[K, V, R]) hash(key K) uint64 {
	h := c.ks.Hash(key)
	if testHookHash != nil {
		h = testHookHash(h)
	}
	return h
}

// testHookHash, when set by a test, maps every key's hash (to force
// collisions in the shards' tables of owners).
var testHookHash func(uint64) uint64

// early is Do's answer before any message: ctx done already, an open
// breaker, a retained result. ok reports an answer.
//
//go:noinline
func (c *Engine[K, V, R]) early(ctx context.Context, s *shard[K, V, R], key K, fn func(context.Context) (V, error)) (v V, shared bool, err error, ok bool) {
	if err := ctx.Err(); err != nil {
		return v, false, err, true
	}
	if s.brk != nil && s.brk.n.Load() > 0 {
		// Before the look-up for a hit: an open breaker answers a hit too.
		if v, err, shared, ok := s.refused(ctx, key); ok {
			if err == c.cfg.Errors.Stale {
				err = nil
			}
			return v, shared, err, true
		}
	}
	if s.store != nil {
		if hv, herr, ok := s.hit(ctx, key, fn); ok {
			return hv, true, herr, true
		}
	}
	return v, false, nil, false
}

// wait is the rest of Do once its join is posted: it waits for the shard
// to handle it, runs fn if the caller must, and waits for the result.
//
//go:noinline
func (c *Engine[K, V, R]) wait(s *shard[K, V, R], cl *call[K, V, R]) (v V, shared bool, err error) {
	// Wait for the shard to handle the join (a joiner of a running flight:
	// for its result). The shard never blocks, so this is short unless the
	// shard is flooded or the flight runs; when this goroutine drained the
	// mailbox itself, it is over already, and Park sees it with one atomic
	// load, without touching the channel.
	ctx := cl.w.Ctx
	done := ctx.Done()
	if cl.w.Park(1) && !awaitSignal(s, cl, done) {
		// The join may still be queued. The Leave was posted after it, from
		// this goroutine, so the shard handles it second: it finds the join
		// refused (its ctx is done) or detaches the waiter. The call is not
		// recycled: the shard still holds it.
		s.api.Exit()
		return v, false, ctx.Err()
	}
	// The join is handled: leave the gate (a leave, if any, goes through
	// the shard's internal gate). A joiner of a running flight got no
	// signal for its join and is here with its result already: it held the
	// gate while it waited, which Close allows for (its close message
	// answers every waiter before Close waits for the gate).
	s.api.Exit()
	if cl.hit {
		v, shared, err = cl.w.Val, cl.w.Shared, cl.w.Res
		c.putCall(cl)
		if err != nil && err == c.cfg.Errors.Stale {
			err = nil
		}
		return v, shared, err
	}
	if err := cl.w.Err; err != nil {
		c.putCall(cl)
		return v, false, err
	}
	if cl.w.Answered { // a joiner: its one signal came with the result
		v, shared, err = cl.w.Val, cl.w.Shared, cl.w.Res
		if err != nil && err == c.cfg.Errors.Stale {
			err = nil // a stale value answered a failed flight (WithStaleIfError)
		}
		c.putCall(cl)
		return v, shared, err
	}
	// The flight's first Do caller: its second signal brings the result.
	if cl.w.RunHere {
		cl.w.Flight.Run() // may not return: runtime.Goexit in fn ends this goroutine
	} else if !cl.w.Signalled(2) {
		// fn was just handed to a warm worker, which the hand-off made the
		// next goroutine to run on this processor: yield to it once
		// before parking. A quick fn then returns, and its result is
		// published, before this caller looks again, which spares the
		// parking and the wake-up of both sides of the hand-off (the
		// select on two channels, a channel send and a goroutine made
		// ready); a slow one costs one yield more.
		runtime.Gosched()
	}
	if cl.w.Park(2) && !awaitSignal(s, cl, done) {
		// The call is not recycled: the shard still holds it, and a wake-up
		// may still arrive on its channel.
		return v, false, ctx.Err()
	}
	// The result is on the caller's own waiter, since its shard may have
	// reused the flight already (fa.Owner.Recyclable).
	v, shared, err = cl.w.Val, cl.w.Shared, cl.w.Res
	if err != nil && err == c.cfg.Errors.Stale {
		err = nil // a stale value answered a failed flight (WithStaleIfError)
	}
	c.putCall(cl)
	return v, shared, err
}

// awaitSignal is await without await's frame when done is nil (a ctx
// that can never be done): the receive is then made here, inlined into
// wait. A stampede's callers park from a fresh goroutine's 2 KB stack,
// and the runtime's parking path (chanrecv, acquireSudog, mallocgc) needs
// room below them: await's frame, sized for its select, made most of
// 10,000 fresh callers grow their stack as they parked (gdb on
// runtime.morestack in BenchmarkStampedeWhole).
func awaitSignal[K comparable, V, R any](s *shard[K, V, R], cl *call[K, V, R], done <-chan struct{}) bool {
	if done == nil {
		<-cl.w.Wake
		return true
	}
	return await(s, cl, done)
}

// await waits, parked (Park said so), for the signal a Do caller waits
// for, or for done (its ctx; never nil: awaitSignal waits for a ctx that
// can never be done): then it posts the caller's Leave and reports false.
// It is apart from Do, and not inlined, to keep Do's frame small: a caller
// whose post drains its shard runs the shard's handlers on top of it (see
// shard.handle).
//
//go:noinline
func await[K comparable, V, R any](s *shard[K, V, R], cl *call[K, V, R], done <-chan struct{}) bool {
	select {
	case <-cl.w.Wake:
		return true
	case <-done:
		s.postInternal(fa.Leave[K, V]{W: &cl.w})
		return false
	}
}

// DoChan is Do that answers on a channel. See flight.Coordinator.DoChan.
//
// anchor is what must stay reachable until the call is answered: the
// flight.Coordinator the caller holds, whose collection (runtime.AddCleanup)
// closes this engine. The call holds it while it is queued, and the shard
// while it has any key (see shard.anchor).
func (c *Engine[K, V, R]) DoChan(ctx context.Context, key K, fn func(context.Context) (V, error), anchor any) <-chan R {
	ch := make(chan R, 1)
	var zero V
	if fn == nil {
		ch <- c.cfg.Result(zero, c.cfg.ErrNilFunc, false)
		return ch
	}
	i, h, ok := c.locate(key)
	if !ok {
		ch <- c.cfg.Result(zero, c.cfg.ErrInvalidKey, false)
		return ch
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		ch <- c.cfg.Result(zero, err, false)
		return ch
	}
	s := c.shards[i]
	if s.brk != nil && s.brk.n.Load() > 0 {
		if v, err, shared, ok := s.refused(ctx, key); ok {
			ch <- c.cfg.Result(v, err, shared)
			return ch
		}
	}
	if s.store != nil {
		if hv, herr, ok := s.hit(ctx, key, fn); ok {
			ch <- c.cfg.Result(hv, herr, true)
			return ch
		}
	}
	if !s.api.Enter() {
		ch <- c.cfg.Result(zero, c.cfg.Errors.Closed, false)
		return ch
	}
	defer s.api.Exit()
	// Do waits for its join to be handled, so Do callers cannot pile up in a
	// mailbox faster than the shard handles them; DoChan returns at once, so
	// with bounds configured its calls waiting in the shard's mailbox are
	// counted, and refused beyond the backlog bound.
	if c.backlog > 0 {
		if s.pending.Add(1) > c.backlog {
			s.pending.Add(-1)
			s.stats.Overloaded.Add(1)
			ch <- c.cfg.Result(zero, c.cfg.Errors.Overloaded, false)
			return ch
		}
	}
	cl := &call[K, V, R]{key: key, h: h, ch: ch, mk: c.cfg.Result, anchor: anchor}
	cl.node.Msg = cl
	cl.w.Ctx, cl.w.Fn, cl.w.Out = ctx, fn, cl
	s.mb.Post(&cl.node)
	return ch
}

// noBreakers is Env.Tracked for shards without breakers: always 0.
var noBreakers atomic.Int64

// minBacklog is the least number of DoChan calls a shard lets wait in its
// mailbox when WithMaxWaiters or WithMaxInFlight is set; see Config.
const minBacklog = 1024

// Forget detaches key's running flight. See flight.Coordinator.Forget.
func (c *Engine[K, V, R]) Forget(key K) {
	i, h, ok := c.locate(key)
	if !ok {
		return // no flight can have an invalid key
	}
	s := c.shards[i]
	if !s.api.Enter() {
		return
	}
	defer s.api.Exit()
	if s.store == nil && s.brk == nil {
		s.send(&forgetMsg[K]{key: key, h: h})
		return
	}
	// With retained results or breakers, wait for the shard to drop the
	// key's result and breaker and detach its flight together: a call that
	// starts after Forget returns must find none of them.
	m := &forgetMsg[K]{key: key, h: h, done: make(chan struct{})}
	s.send(m)
	<-m.done
}

// Stats is the sum of the shards' counters.
type Stats struct {
	Keys, InFlight, Waiters, Entries                                   int
	Flights, Joins, Panics, Timeouts, Abandoned, Forgotten, Overloaded uint64
	Hits, Refreshes, Retries                                           uint64
	Stale, Rejected                                                    uint64
	Open                                                               int
}

// Stats returns the counters. It takes no lock and sends no message.
func (c *Engine[K, V, R]) Stats() Stats {
	var st Stats
	for _, s := range c.shards {
		x := &s.stats
		st.Keys += int(x.Keys.Load())
		st.InFlight += int(x.InFlight())
		st.Waiters += int(x.Waiters())
		st.Flights += x.Flights.Load()
		st.Joins += x.Joins.Load()
		st.Panics += x.Panics.Load()
		st.Timeouts += x.Timeouts.Load()
		st.Abandoned += x.Abandoned.Load()
		st.Forgotten += x.Forgotten.Load()
		st.Overloaded += x.Overloaded.Load()
		st.Hits += x.Hits.Load()
		st.Refreshes += x.Refreshes.Load()
		st.Retries += x.Retries.Load()
		st.Stale += x.Stale.Load()
		st.Rejected += x.Rejected.Load()
		st.Open += int(x.Open.Load())
	}
	if c.retained != nil {
		st.Entries = int(c.retained.count.Load()) // one count: exact, never above the bound
	}
	return st
}

// Close refuses new calls, answers every waiter with ErrClosed, cancels every
// flight's context, waits for every fn to return, stops the worker pool and
// the shard actors. It is idempotent and safe to call concurrently; every
// call returns after the shutdown has finished.
func (c *Engine[K, V, R]) Close() error {
	c.closeOnce.Do(c.shutdown)
	return nil
}

func (c *Engine[K, V, R]) shutdown() {
	// 1. Refuse new calls, then have each shard answer its waiters and
	//    cancel its flights. Calls that entered before the gate closed are
	//    either answered by the close message or refused by the closed shard.
	for _, s := range c.shards {
		s.api.Close()
	}
	for _, s := range c.shards {
		m := &closeMsg{done: make(chan struct{})}
		s.send(m)
		<-m.done
	}
	for _, s := range c.shards {
		s.api.Wait()
	}
	// 2. Wait for every fn to return and be retired by its shard. No fn
	//    starts after step 1.
	for _, s := range c.shards {
		<-s.drained
	}
	// 3. Only stale posts are left (a caller's ctx or a deadline firing just
	//    as its flight was answered): refuse them and wait for those under way.
	for _, s := range c.shards {
		s.posts.Close()
		s.posts.Wait()
	}
	c.pool.Close()
	// 4. Stop the actors. Nothing can post to them any more, so no dead letter.
	for _, s := range c.shards {
		c.system.Root.Stop(s.pid)
		<-s.stopped
	}
}

// call is one caller's request: the message a caller posts to join a flight.
//
// A Do caller waits for its waiter's signals (fa.Waiter.Park and Signal),
// parking on the waiter's Wake channel (buffer of two) only when it must: a
// joiner of a running flight gets one signal, with the result; the caller
// that starts a flight gets one when its join is handled and a second with
// the result (see fa.Waiter.Wake).
type call[K comparable, V, R any] struct {
	node   mailbox.Node // the join's link in the shard's mailbox; Msg is the call
	key    K
	h      uint64 // key's hash (see owners)
	w      fa.Waiter[K, V]
	ch     chan R // DoChan: buffer of one, receives exactly one R
	mk     func(V, error, bool) R
	anchor any // DoChan: keeps the caller's coordinator reachable while queued

	replied bool // owned by the shard: the join-handled signal was given

	// hit: a Do call answered by the shard from a retained result (a hit
	// that the caller's own look-up missed), whose value, error and shared
	// flag are then in w.Val, w.Res and w.Shared (the waiter never joined a
	// flight): written before the join token. The call is in the size class
	// of 256 bytes (TestCallSize), one of the objects every key in flight
	// holds.
	hit bool
}

// answer gives the caller a retained result (shared, as every hit is), or
// the answer of an open breaker: a stale value (shared too, err the stale
// marker) or ErrOpen (not shared).
func (cl *call[K, V, R]) answer(val V, err error, shared bool) {
	if cl.ch != nil {
		cl.ch <- cl.mk(val, err, shared)
		return
	}
	cl.hit, cl.w.Shared, cl.w.Val, cl.w.Res = true, shared, val, err
}

// getCall returns a call for Do from the coordinator's pool. Do recycles its
// call, with its wake-up channel if it had to make one, once answered:
// the shard no longer refers to it then (a Do waiter is never subscribed,
// and the flight drops its wake channel when it publishes). Recycling saves
// the call and the channel allocations per Do (≈ 250 B).
func (c *Engine[K, V, R]) getCall() *call[K, V, R] {
	if cl, ok := c.calls.Get().(*call[K, V, R]); ok {
		return cl
	}
	cl := new(call[K, V, R]) // its wake channel is made if it ever parks (fa.Waiter.Park)
	cl.node.Msg = cl
	return cl
}

func (c *Engine[K, V, R]) putCall(cl *call[K, V, R]) {
	// The wake channel is empty: the caller received the join-handled token
	// and, as its flight's first Do caller, the result token.
	wake := cl.w.Wake
	var zero K
	cl.key, cl.h = zero, 0
	cl.w = fa.Waiter[K, V]{Wake: wake}
	cl.replied = false
	cl.hit = false
	c.calls.Put(cl)
}

// Deliver sends the DoChan caller its one result. It never blocks: the
// channel has a buffer of one and the shard delivers exactly once.
func (cl *call[K, V, R]) Deliver(val V, err error, shared bool) {
	cl.ch <- cl.mk(val, err, shared)
}

type forgetMsg[K comparable] struct {
	key  K
	h    uint64        // key's hash
	done chan struct{} // closed once handled; nil: nobody waits
}

type closeMsg struct{ done chan struct{} }
