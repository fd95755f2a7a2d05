package batch

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/actorflight/flight/internal/gate"
	"github.com/actorflight/flight/internal/tracing"

	fa "github.com/actorflight/flight/actor"
	"github.com/actorflight/flight/coordinator"
	"github.com/actorflight/flight/internal/shared"
	"github.com/actorflight/flight/keyspace"
	"github.com/actorflight/flight/mailbox"
)

// Errors are the error values the engine answers with; the root package
// supplies them so that callers can match them with errors.Is / errors.As.
// They are the Coordinator's set (package actor's Errors: Closed, Goexit,
// Timeout, Recursive — a load from inside fn, with its ctx, of a key of its
// own batch —, Panic, Stale; Overloaded is unused) and the two errors only
// a Batcher gives.
type Errors struct {
	fa.Errors
	NotFound   error // a key missing from fn's map
	InvalidKey error
}

// Config is the resolved configuration of a Batcher. R is the result type
// LoadChan delivers (flight.Result[V]); it is a type parameter so that this
// package need not import the root package.
type Config[K comparable, V, R any] struct {
	Fn            func(ctx context.Context, keys []K) (map[K]V, error) // never nil
	MaxBatch      int                                                  // ≥ 1
	MaxWait       time.Duration                                        // ≥ 0
	MaxConcurrent int                                                  // 0: no bound
	Timeout       time.Duration                                        // 0: none
	Shards        int
	System        *actor.ActorSystem // nil: the process-wide shared system
	Logger        *slog.Logger       // never nil

	Errors Errors
	// Hooks are the root package's part: the value a caller receives, and
	// the per-key errors in fn's error. Never nil.
	Hooks Hooks[K, V, R]
	// OnBatch, when set (metrics), is told of each dispatched batch's key
	// count. It runs under the collector's mutex and must not block.
	OnBatch func(keys int)
	// Tracer makes the span of each call of fn (WithTracerProvider; see
	// trace.go); nil: no tracing.
	Tracer *tracing.Tracer
	// Scope, when set (WithScope), gives a key's scope: a batch holds keys
	// of one scope only. It must be cheap and must not panic.
	Scope func(key K) any
	// Retain, when set (WithTTL, WithErrorTTL), configures retained results
	// (see retain.go); nil: none retained.
	Retain *coordinator.RetainConfig
}

// Hooks are what the engine asks the root package. A struct of no fields
// implements them, so that a Batcher holds them without an allocation.
type Hooks[K comparable, V, R any] interface {
	// Result makes the value a caller receives.
	Result(val V, err error, shared bool) R
	// KeyErrors extracts the per-key errors from fn's error (a
	// flight.KeyErrors). It runs on the worker, after fn, with fn's panic
	// recovery: a panicking Unwrap method is a panic of the batch.
	KeyErrors(err error) (map[K]error, bool)
}

// Stats are the engine's counters: the Coordinator's (package actor's
// Stats), of which a Batcher uses Keys (keys with at least one waiting
// caller), Waiters, Joins (callers that joined a key another caller asked
// for), Panics (calls of fn that panicked or called runtime.Goexit),
// Timeouts and Abandoned (running batches cancelled: every caller of every
// key left), Hits (retain.go), Refreshes (refresh-ahead loads started) and
// Stale; and the counters only a Batcher has. Shards write Keys, Waiters,
// Loads, Joins, Hits, Refreshes and Stale; the collector writes the
// others. Anyone may read them at any time; each field is exact on its
// own.
type Stats struct {
	fa.Stats
	Pending     atomic.Int64  // batches collecting keys or waiting for a slot
	Running     atomic.Int64  // batches whose fn runs
	Loads       atomic.Uint64 // callers admitted
	Batches     atomic.Uint64 // calls of fn started
	BatchedKeys atomic.Uint64 // keys passed to fn
	Dropped     atomic.Uint64 // keys taken out of a batch before dispatch: every caller left
}

// Engine is the engine behind flight.Batcher.
//
// Its actors, gates and worker pool are made on the first load, not by New:
// a loader made per request and never used, or dropped, costs its struct
// (see start).
type Engine[K comparable, V, R any] struct {
	cfg    Config[K, V, R]
	system *actor.ActorSystem
	ks     keyspace.Keyspace[K]
	stats  Stats
	ret    *coordinator.Retained[K, V] // retained results (retain.go); nil: none

	// Made by start, once; read only after live is seen true (or under
	// startOnce).
	shards []*shard[K, V, R]
	col    *collector[K, V, R]
	pool   *fa.Pool
	posts  gate.Gate // timers, ctx watches, leaves and workers that may post

	startOnce sync.Once
	live      atomic.Bool // start has made the actors
	closed    atomic.Bool // Close has begun
	closeOnce sync.Once
}

// New returns a batcher engine. It spawns no actor and starts no goroutine:
// the first load does (start).
func New[K comparable, V, R any](cfg Config[K, V, R]) (*Engine[K, V, R], error) {
	ks, err := keyspace.Make[K](cfg.Shards)
	if err != nil {
		return nil, err
	}
	e := &Engine[K, V, R]{cfg: cfg, system: cfg.System, ks: ks}
	if cfg.Retain != nil {
		// The stores' timers post only once a result is retained, after
		// start has made the shards and the posts gate.
		e.ret = coordinator.NewRetained[K, V](cfg.Retain, cfg.Shards, func(i int, msg any) { e.post(e.shards[i], msg) })
	}
	return e, nil
}

// started makes the actors on the first call and reports whether they run:
// false once Close has begun (a load then gets Errors.Closed). After the
// first load it costs one atomic load.
func (e *Engine[K, V, R]) started() bool {
	if e.live.Load() {
		return true
	}
	e.startOnce.Do(e.start)
	return e.live.Load()
}

// start spawns cfg.Shards shard actors, a few microseconds each, and makes
// the collector and the worker pool (no goroutine until the
// first batch). It runs at most once, and never after Close has begun:
// Close consumes startOnce, so it waits for a start under way and prevents
// a later one.
func (e *Engine[K, V, R]) start() {
	if e.closed.Load() {
		return
	}
	if e.system == nil {
		e.system = shared.System()
	}
	e.pool = fa.NewPool(fa.Linger)
	e.posts = gate.New()
	e.col = &collector[K, V, R]{
		e:       e,
		running: make(map[*batch[K, V, R]]struct{}),
		drained: make(chan struct{}),
	}
	e.shards = make([]*shard[K, V, R], e.cfg.Shards)
	for i := range e.shards {
		s := &shard[K, V, R]{
			e:       e,
			idx:     int32(i),
			keys:    make(map[K]*entry[K, V, R]),
			api:     gate.New(),
			stopped: make(chan struct{}),
		}
		s.mb = mailbox.New(s.handle)
		s.pid = e.system.Root.Spawn(mailbox.PropsWith(func() actor.Actor { return s }, s.mb))
		e.shards[i] = s
	}
	e.live.Store(true)
}

// Load asks for key's value and waits for its batch, or for ctx. See
// flight.Batcher.Load.
func (e *Engine[K, V, R]) Load(ctx context.Context, key K) R {
	var zero V
	if ctx == nil {
		ctx = context.Background()
	}
	if v, err, ok := e.hit(ctx, key); ok {
		return e.cfg.Hooks.Result(v, err, true)
	}
	s, err := e.admit(ctx, key)
	if err != nil {
		return e.cfg.Hooks.Result(zero, err, false)
	}
	c := &call[K, V, R]{key: key, ctx: ctx, ch: make(chan R, 1)}
	s.send(c)
	s.api.Exit()
	done := ctx.Done()
	if done == nil {
		return <-c.ch
	}
	select {
	case r := <-c.ch:
		return r
	case <-done:
		// The join is posted before the leave, from this goroutine, so the
		// shard handles it first. The shard may answer c meanwhile: its
		// channel has room for that answer, which nobody reads.
		e.post(s, leaveMsg[K, V, R]{c})
		return e.cfg.Hooks.Result(zero, ctx.Err(), false)
	}
}

// LoadChan is Load that answers on a channel with a buffer of one, which
// receives exactly one R and is never closed. anchor is what must stay
// reachable until the call is answered (the caller's flight.Batcher): the
// call holds it while queued, the shard while it has any key.
func (e *Engine[K, V, R]) LoadChan(ctx context.Context, key K, anchor any) <-chan R {
	var zero V
	ch := make(chan R, 1)
	if ctx == nil {
		ctx = context.Background()
	}
	if v, err, ok := e.hit(ctx, key); ok {
		ch <- e.cfg.Hooks.Result(v, err, true)
		return ch
	}
	s, err := e.admit(ctx, key)
	if err != nil {
		ch <- e.cfg.Hooks.Result(zero, err, false)
		return ch
	}
	s.send(&call[K, V, R]{key: key, ctx: ctx, ch: ch, watch: ctx.Done() != nil, anchor: anchor})
	s.api.Exit()
	return ch
}

// admit checks key and ctx and enters the key's shard's gate: on success
// the caller must post its call and call s.api.exit.
func (e *Engine[K, V, R]) admit(ctx context.Context, key K) (*shard[K, V, R], error) {
	i, ok := e.ks.Shard(key)
	if !ok {
		return nil, e.cfg.Errors.InvalidKey
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.recursive(ctx, key) {
		return nil, e.cfg.Errors.Recursive
	}
	if !e.started() {
		return nil, e.cfg.Errors.Closed
	}
	s := e.shards[i]
	if !s.api.Enter() {
		return nil, e.cfg.Errors.Closed
	}
	return s, nil
}

// LoadMany asks for every key of keys (each distinct key once, in the order
// given) and waits for all of them, or for ctx. It returns the values it
// got and the errors of the keys that failed (nil when none did), and how
// many keys could not be named in errs because they cannot be map keys at
// all (an unhashable value inside an interface: they are invalid keys too).
// err is for the whole call: ctx.Err() when ctx ends first (vals then holds
// the values received so far), or Errors.Closed when the batcher was closed
// before any key was posted.
func (e *Engine[K, V, R]) LoadMany(ctx context.Context, keys []K) (vals map[K]V, errs map[K]error, unhashable int, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	g := &group[K, V]{vals: make(map[K]V, len(keys)), done: make(chan struct{})}
	if err := ctx.Err(); err != nil {
		return g.vals, nil, 0, err
	}
	if e.closed.Load() {
		return g.vals, nil, 0, e.cfg.Errors.Closed
	}
	type posted struct {
		s *shard[K, V, R]
		c *call[K, V, R]
	}
	if len(keys) > 0 && !e.started() {
		return g.vals, nil, 0, e.cfg.Errors.Closed
	}
	calls := make([]posted, 0, len(keys))
	seen := make(map[K]struct{}, len(keys))
	// Count every call before posting any: an answer may arrive at once.
	for _, key := range keys {
		i, ok := e.ks.Shard(key)
		if !ok {
			if !g.failInvalid(key, e.cfg.Errors.InvalidKey) {
				unhashable++
			}
			continue
		}
		if _, dup := seen[key]; dup {
			continue
		}
		seen[key] = struct{}{}
		if v, err, ok := e.hit(ctx, key); ok {
			if err != nil {
				g.fail(key, err)
			} else {
				g.vals[key] = v
			}
			continue
		}
		if e.recursive(ctx, key) {
			g.fail(key, e.cfg.Errors.Recursive)
			continue
		}
		calls = append(calls, posted{e.shards[i], &call[K, V, R]{key: key, ctx: ctx, g: g}})
	}
	g.left = len(calls)
	if g.left == 0 {
		close(g.done)
	}
	var zero V
	refused := 0
	for _, p := range calls {
		if !p.s.api.Enter() {
			refused++
			g.deliver(p.c.key, zero, e.cfg.Errors.Closed)
			continue
		}
		p.s.send(p.c)
		p.s.api.Exit()
	}
	if refused > 0 && refused == len(calls) {
		// Closed before any key was posted: the call as a whole is refused,
		// as a Load would be.
		return map[K]V{}, nil, 0, e.cfg.Errors.Closed
	}
	select {
	case <-g.done:
		return g.vals, g.errs, unhashable, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-g.done: // everything arrived just as ctx ended
		g.mu.Unlock()
		return g.vals, g.errs, unhashable, nil
	default:
	}
	g.gone = true
	out := make(map[K]V, len(g.vals))
	for k, v := range g.vals {
		out[k] = v
	}
	g.mu.Unlock()
	for _, p := range calls {
		e.post(p.s, leaveMsg[K, V, R]{p.c})
	}
	return out, nil, 0, ctx.Err()
}

// group collects the answers of one LoadMany.
type group[K comparable, V any] struct {
	mu   sync.Mutex // protects the fields below
	vals map[K]V
	errs map[K]error
	left int           // calls not answered yet
	done chan struct{} // closed when left drops to 0
	gone bool          // LoadMany returned early: drop later answers
}

// failInvalid records err for an invalid key, before any call is posted,
// and reports whether it could: a key that cannot be hashed (a slice inside
// an interface) cannot be a key of errs, and inserting it panics.
func (g *group[K, V]) failInvalid(key K, err error) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	g.fail(key, err)
	return true
}

// fail records err for key; g.mu is held, or no call is posted yet.
func (g *group[K, V]) fail(key K, err error) {
	if g.errs == nil {
		g.errs = make(map[K]error)
	}
	g.errs[key] = err
}

func (g *group[K, V]) deliver(key K, v V, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gone {
		return
	}
	if err != nil {
		g.fail(key, err)
	} else {
		g.vals[key] = v
	}
	if g.left--; g.left == 0 {
		close(g.done)
	}
}

// Stats returns the engine's counters.
func (e *Engine[K, V, R]) Stats() *Stats { return &e.stats }

// Closed reports whether Close has been called.
func (e *Engine[K, V, R]) Closed() bool { return e.closed.Load() }

// post is how leaves, timers and workers reach an actor.
func (e *Engine[K, V, R]) post(to interface{ send(any) }, msg any) {
	if e.posts.Enter() {
		to.send(msg)
		e.posts.Exit()
	}
}

// logPanic logs a panic of fn with the batch's ctx, so that a handler that
// adds trace ids (an OpenTelemetry slog bridge) sees the batch's span.
func (e *Engine[K, V, R]) logPanic(ctx context.Context, keys int, value any, stack []byte) {
	e.cfg.Logger.ErrorContext(ctx, "flight: batch function panicked",
		slog.Int("keys", keys), slog.Any("panic", value), slog.String("stack", string(stack)))
}

// Close refuses new loads, cancels running batches, answers every waiting
// caller with Errors.Closed, waits for every fn to return, and stops the
// workers and the actors. It is idempotent; every call returns after the
// shutdown has finished.
func (e *Engine[K, V, R]) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.startOnce.Do(func() {}) // wait for a start under way; prevent a later one
		if e.live.Load() {
			e.shutdown()
		}
	})
	return nil
}

func (e *Engine[K, V, R]) shutdown() {
	// 1. Refuse new loads and wait for those posting now.
	for _, s := range e.shards {
		s.api.Close()
	}
	for _, s := range e.shards {
		s.api.Wait()
	}
	// 2. The collector first: it dispatches nothing more, drops the batches
	//    not dispatched and cancels the running ones. Then the shards answer
	//    every caller still waiting.
	m := &closeMsg{done: make(chan struct{})}
	e.col.send(m)
	<-m.done
	for _, s := range e.shards {
		m := &closeMsg{done: make(chan struct{})}
		s.send(m)
		<-m.done
	}
	// 3. Wait for every fn to return.
	<-e.col.drained
	// 4. Only stale posts are left (a timer or a ctx watch firing just now):
	//    refuse them and wait for those under way; then stop the workers
	//    and the actors. Nothing can post to them any more.
	e.posts.Close()
	e.posts.Wait()
	e.pool.Close()
	for _, s := range e.shards {
		e.system.Root.Stop(s.pid)
		<-s.stopped
	}
}

type closeMsg struct{ done chan struct{} }
