package flight

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/actorflight/flight/batch"
)

// BatchFunc loads many keys in one call: a `WHERE id IN (…)` query, a
// multi-get. keys holds each key once, in the order its first caller asked
// for it, at most WithMaxBatch of them; fn must not modify it after it
// returns.
//
// fn returns a value for each key it found. A key missing from the map gets
// ErrNotFound. To fail only some keys, return a KeyErrors naming them (the
// other keys get their values), as it is or wrapped (fmt.Errorf with one
// %w); any other error, or a panic, reaches every key of this batch and no
// other. An error that holds a KeyErrors beside another error
// (errors.Join(err, ke)) is such an other error: every key gets it whole,
// rather than losing err.
//
// A Load from fn, with ctx or a context derived from it, of a key of this
// same batch would wait for fn itself: it gets ErrRecursiveCall at once
// (also through a chain of batches: fn of a's batch loads b with its ctx,
// and b's batch loads a with its own). Loading other keys from fn is fine,
// except under WithMaxConcurrentBatches: their batch waits for a slot,
// which fn itself may hold (with WithMaxConcurrentBatches(1), until its
// ctx ends or Close); that wait is not detected.
//
// ctx carries the values of the batch's first caller and is cancelled when
// every caller of every key in the batch has left, when the WithTimeout
// deadline passes, or on Close; one caller leaving never cancels it for the
// others.
type BatchFunc[K comparable, V any] func(ctx context.Context, keys []K) (map[K]V, error)

// Batcher collects the keys that callers load within a short window into
// batches and loads each batch with one call of its BatchFunc: the
// DataLoader pattern (N+1 queries in GraphQL resolvers, multi-get APIs).
//
// A key that is already waiting for a batch, or inside a running one, is
// joined: its callers share one slot in one batch, and the key is never
// sent twice while it is wanted. A batch holds each key once, at most
// WithMaxBatch keys, in first-arrival order: the order in which the keys'
// shard actors handled their first callers (a key posted to a shard that
// another goroutine is draining may be overtaken by a key posted just
// after it to another shard; with WithShards(1), the order of the calls).
// It is dispatched when full or WithMaxWait after its first key, once a
// WithMaxConcurrentBatches slot is free. Without WithTTL results are not
// kept: a key loaded again after its batch answered goes into a new batch,
// and so does a key whose callers all left (its old batch, if running, no
// longer answers it). With WithTTL (and WithErrorTTL, WithRefreshAhead,
// WithMaxEntries, WithStaleIfError) a key's result is retained: a load of it
// is answered at once on the caller's goroutine, with no message and no
// batch; see those options.
//
// Create one with [NewBatcher]; the zero value is not usable. All methods
// are safe for concurrent use. A Batcher that is no longer needed should be
// closed: Close waits for running batches and stops its actors. Only Close
// closes a Batcher in use (a Load in progress or a pending LoadChan keeps it
// reachable); one dropped without Close is closed, and its telemetry
// removed, once the garbage collector finds it unreachable. An idle Batcher
// holds no goroutine and no per-key memory: the MaxWait deadline is a
// timer, not a sleeping goroutine, and fn runs on warm workers that exit a
// few milliseconds after the last batch.
//
// Cost: NewBatcher costs a struct and spawns nothing; the first load spawns
// the shard actors. A Load costs one actor message (to its key's shard),
// drained on the caller's own goroutine, and one channel receive; a batch
// costs a worker hand-off and no context or timer allocation (its ctx is
// embedded in it; the WithMaxWait deadline is one timer per Batcher, reset
// for each batch). Figures against vikstrous/dataloadgen and
// graph-gophers/dataloader:
// https://github.com/actorflight/flight/blob/main/docs/batching.md.
type Batcher[K comparable, V any] struct {
	e   *batch.Engine[K, V, Result[V]] // nil with WithScope
	s   *scopedBatcher[K, V]           // WithScope (scope.go); nil without
	tel *telemetry                     // metrics callback and log route to undo on Close; nil: none
	eng batchEngine                    // e or s.e

	// armed is set once the cleanup that closes b if it is dropped is
	// registered: by NewBatcher when b has telemetry, else by b's first
	// load (before it, the engine has nothing to close).
	armed atomic.Bool
}

// batchEngine is what a Batcher's Stats and Close need of its engine,
// scoped or not.
type batchEngine interface {
	Stats() *batch.Stats
	Entries() int
	Close() error
	Closed() bool
}

// droppedBatcher is what the cleanup of a Batcher collected without Close
// undoes.
type droppedBatcher struct {
	e   batchEngine
	tel *telemetry
}

// close closes a Batcher collected without Close: its engine and its
// telemetry, on a goroutine of its own (a cleanup must not block). A
// Batcher closed already has nothing left to undo, and costs no goroutine.
func (x droppedBatcher) close() {
	if x.e.Closed() {
		x.tel.close() // idempotent; Close has done it
		return
	}
	go func() {
		x.e.Close()
		x.tel.close()
	}()
}

// BatchStats is a reading of a Batcher's counters. Keys, Waiters, Pending
// and Running are gauges: they return to 0 when the batcher is idle. The
// other fields count since NewBatcher. Each field is exact; a BatchStats is
// not an atomic snapshot of all of them together.
type BatchStats struct {
	Keys        int    // keys with at least one caller waiting now
	Waiters     int    // callers waiting now
	Pending     int    // batches collecting keys or waiting for a slot now
	Running     int    // batches whose fn runs now
	Loads       uint64 // callers admitted (Load, LoadChan, each key of LoadMany), ever
	Joins       uint64 // callers that joined a key another caller was waiting for, ever
	Batches     uint64 // calls of fn started, ever
	BatchedKeys uint64 // keys passed to fn, ever (BatchedKeys/Batches: mean batch size)
	Dropped     uint64 // keys taken out of a batch before dispatch because every caller left, ever
	Abandoned   uint64 // running batches cancelled because every caller of every key left, ever
	Panics      uint64 // calls of fn that panicked or called runtime.Goexit, ever
	Timeouts    uint64 // batches answered with the WithTimeout error, ever
	Entries     int    // results retained now (WithTTL, WithErrorTTL; stale values of WithStaleIfError too); never above WithMaxEntries
	Hits        uint64 // calls answered from a retained result, without a message or a batch, ever (each key of LoadMany counts)
	Refreshes   uint64 // WithRefreshAhead loads started, ever (each also counts in Loads as a load of its key)
	Stale       uint64 // calls answered with a stale value (WithStaleIfError), ever
}

// ErrNotFound is the error of a key that fn's map has no value for.
var ErrNotFound = errors.New("flight: key not in batch result")

// KeyErrors fails some keys of a batch: a BatchFunc returns it as its error
// to give the keys it names their own errors, while every other key of the
// batch gets its value from the map (or ErrNotFound). A nil entry means no
// error for that key. It is matched with errors.As, so a wrapped KeyErrors
// works too. LoadMany returns one for the keys that failed.
type KeyErrors[K comparable] map[K]error

// Error lists the keys that failed, in the order of their formatted keys
// (at most 10 of them) and how many there are.
func (ke KeyErrors[K]) Error() string {
	var lines []string
	for k, err := range ke {
		if err != nil {
			lines = append(lines, fmt.Sprintf("%v: %v", k, err))
		}
	}
	slices.Sort(lines)
	n := len(lines)
	if n > 10 {
		lines = append(lines[:10], "…")
	}
	return fmt.Sprintf("flight: %d keys failed: %s", n, strings.Join(lines, "; "))
}

// Unwrap returns the non-nil errors, in no particular order, so that
// errors.Is(err, ErrNotFound) or errors.Is(err, ErrClosed) tells whether
// any key of a LoadMany failed that way.
func (ke KeyErrors[K]) Unwrap() []error {
	errs := make([]error, 0, len(ke))
	for _, err := range ke {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// NewBatcher returns a running Batcher that loads keys with fn.
//
// It accepts WithMaxBatch, WithMaxWait, WithMaxConcurrentBatches,
// WithScope, WithTimeout (a deadline on each call of fn), WithShards (the key shard
// actors), WithActorSystem, WithLogger, WithMeterProvider,
// WithMetricAttributes, WithTracerProvider and the options of retained
// results: WithTTL, WithErrorTTL, WithRefreshAhead, WithMaxEntries and
// WithStaleIfError, validated as New validates them. Any other option
// (WithMaxWaiters, WithMaxInFlight, WithBreaker, and the options for
// retries) does not apply to a Batcher: NewBatcher panics, naming it,
// whatever its value (WithRetry(1, nil) too). It panics with ErrNilFunc if fn is
// nil, and if an option has an invalid value (each option says which): a
// programming error, found the first time the code runs.
//
// NewBatcher spawns no actor and starts no goroutine: it costs a few small
// allocations (a loader per request, the DataLoader convention, is cheap).
// The first load spawns the shard actors and the collector, a few
// microseconds each; Close of a Batcher never used has nothing to stop.
func NewBatcher[K comparable, V any](fn BatchFunc[K, V], opts ...Option) *Batcher[K, V] {
	if fn == nil {
		panic(ErrNilFunc)
	}
	cfg := newConfig(forBatcher, opts)
	onBatch, obs := startBatchTelemetry(&cfg)
	bc := batch.Config[K, V, Result[V]]{
		Fn:            fn,
		MaxBatch:      cfg.batch.maxBatch,
		MaxWait:       cfg.batch.maxWait,
		MaxConcurrent: cfg.batch.maxConcurrent,
		Timeout:       cfg.timeout,
		Shards:        cfg.shards,
		System:        cfg.system,
		Logger:        cfg.logger,
		Errors: batch.Errors{
			Errors:     engineErrors(cfg.timeout, newPanicError),
			NotFound:   ErrNotFound,
			InvalidKey: ErrInvalidKey,
		},
		Hooks:   batchHooks[K, V]{},
		OnBatch: onBatch,
		Tracer:  newTracer(&cfg),
	}
	if cfg.retain.TTL > 0 || cfg.retain.ErrorTTL > 0 {
		rc := cfg.retain
		bc.Retain = &rc
	}
	b := &Batcher[K, V]{}
	var eng batchEngine
	if cfg.batch.scope != nil {
		b.s = newScopedBatcher(fn, cfg.batch.scope, bc)
		eng = b.s.e
	} else {
		e, err := batch.New(bc)
		if err != nil {
			panic(err) // unreachable: the options validated the shard count
		}
		b.e = e
		eng = e
	}
	var stats func() BatchStats
	if obs != nil {
		stats = func() BatchStats { return batchStatsOf(eng.Stats(), eng.Entries()) }
	}
	b.tel = attachTelemetry(&cfg, obs, stats)
	b.eng = eng
	if b.tel != nil {
		b.arm()
	}
	return b
}

// arm registers, once, the cleanup that closes b when the garbage
// collector finds it unreachable without Close. As for a Coordinator (see
// New): the actors hold the engine, not b, except while a LoadChan is
// pending; once b is unreachable nothing can call it or wait for it, and
// the cleanup closes the engine and undoes the telemetry. Load and
// LoadMany keep b on their stacks. A Batcher without telemetry arms on its
// first load: one never used has no actor to stop and nothing to undo, so
// a loader made per request and dropped costs no cleanup.
func (b *Batcher[K, V]) arm() {
	if b.armed.CompareAndSwap(false, true) {
		runtime.AddCleanup(b, droppedBatcher.close, droppedBatcher{b.eng, b.tel})
	}
}

// batchHooks are the root package's part of a Batcher's engine: the
// Result a caller gets, and the KeyErrors in fn's error. A struct of no
// fields, so that a Batcher holds them without an allocation.
type batchHooks[K comparable, V any] struct{}

func (batchHooks[K, V]) Result(v V, err error, shared bool) Result[V] {
	if err == errStale {
		return Result[V]{Val: v, Shared: shared, Stale: true}
	}
	return Result[V]{Val: v, Err: err, Shared: shared}
}

func (batchHooks[K, V]) KeyErrors(err error) (map[K]error, bool) { return keyErrorsOf[K](err) }

// Load returns key's value, loaded in a batch with the keys other callers
// asked for meanwhile. If key is already waiting for a batch or inside a
// running one, Load joins it.
//
// Load returns ctx.Err() as soon as ctx is done; the batch goes on for the
// other callers, and a key whose every caller left before its batch was
// dispatched is taken out of it. A nil ctx is taken as
// context.Background(). A key missing from fn's map gets ErrNotFound, one
// named by a KeyErrors gets its error, and any other error of fn, a
// *PanicError or ErrGoexit is the error of every key of that batch. After
// Close, Load returns ErrClosed; a key that cannot be shared (see
// ErrInvalidKey) gets ErrInvalidKey. A Load from inside fn, with fn's ctx,
// of a key of fn's own batch gets ErrRecursiveCall (see BatchFunc).
func (b *Batcher[K, V]) Load(ctx context.Context, key K) (V, error) {
	if !b.armed.Load() {
		b.arm()
	}
	var r Result[V]
	if b.s != nil {
		r = b.s.load(ctx, key)
	} else {
		r = b.e.Load(ctx, key)
	}
	runtime.KeepAlive(b) // only Close closes b: not the collector while Load waits
	return r.Val, r.Err
}

// LoadChan is like Load but returns at once a channel that receives the
// Result. The channel has a buffer of one, receives exactly one Result, and
// is never closed; a caller that never reads it leaks nothing. Shared
// reports whether the key had more than one caller. When ctx is done first,
// the Result carries ctx.Err().
func (b *Batcher[K, V]) LoadChan(ctx context.Context, key K) <-chan Result[V] {
	if !b.armed.Load() {
		b.arm()
	}
	if b.s != nil {
		return b.s.loadChan(ctx, key, b)
	}
	return b.e.LoadChan(ctx, key, b)
}

// LoadMany loads every key of keys (a key given twice is loaded once) and
// returns the values it got. When some keys failed, the error is a
// KeyErrors[K] with an error for each of them, and the map holds the
// others. When ctx ends first, LoadMany returns ctx.Err() and the values
// received until then; its keys' callers leave as Load's do. After Close it
// returns ErrClosed itself, as Load does (keys that Close answers while
// LoadMany waits fail with ErrClosed in the KeyErrors). An empty keys
// returns an empty map and nil.
//
// An invalid key (see ErrInvalidKey) fails with ErrInvalidKey and the other
// keys are loaded. A key that is not equal to itself (a NaN) is named in the
// KeyErrors; one that cannot be hashed at all (a slice inside an any)
// cannot be a map key, so the error is then the KeyErrors of the other
// failed keys (if any) joined with an error that matches ErrInvalidKey and
// counts those keys: errors.As and errors.Is find both.
func (b *Batcher[K, V]) LoadMany(ctx context.Context, keys []K) (map[K]V, error) {
	if !b.armed.Load() {
		b.arm()
	}
	var vals map[K]V
	var errs map[K]error
	var unhashable int
	var err error
	if b.s != nil {
		vals, errs, unhashable, err = b.s.loadMany(ctx, keys)
	} else {
		vals, errs, unhashable, err = b.e.LoadMany(ctx, keys)
	}
	runtime.KeepAlive(b)
	switch {
	case err != nil:
		return vals, err
	case unhashable > 0:
		err := fmt.Errorf("flight: LoadMany: %d keys cannot be map keys: %w", unhashable, ErrInvalidKey)
		if len(errs) > 0 {
			return vals, errors.Join(KeyErrors[K](errs), err)
		}
		return vals, err
	case len(errs) > 0:
		return vals, KeyErrors[K](errs)
	}
	return vals, nil
}

// keyErrorsOf finds the KeyErrors that fails only some keys of a batch: fn's
// error itself, or the error it wraps through a chain of single wraps
// (fmt.Errorf with one %w). An error that holds more than a KeyErrors
// (errors.Join(other, ke), fmt.Errorf with two %w) is a batch-wide error:
// every key gets it whole, so that the other error is never dropped, and
// errors.As still finds the KeyErrors in it. It runs on the worker, with
// fn's panic recovery.
func keyErrorsOf[K comparable](err error) (map[K]error, bool) {
	for err != nil {
		if ke, ok := err.(KeyErrors[K]); ok {
			return ke, true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return nil, false
		}
		err = u.Unwrap()
	}
	return nil, false
}

// Stats returns the batcher's counters. It takes no lock and sends no
// message.
func (b *Batcher[K, V]) Stats() BatchStats { return batchStatsOf(b.eng.Stats(), b.eng.Entries()) }

func batchStatsOf(s *batch.Stats, entries int) BatchStats {
	return BatchStats{
		Entries:     entries,
		Hits:        s.Hits.Load(),
		Refreshes:   s.Refreshes.Load(),
		Stale:       s.Stale.Load(),
		Keys:        int(s.Keys.Load()),
		Waiters:     int(s.Waiters()),
		Pending:     int(s.Pending.Load()),
		Running:     int(s.Running.Load()),
		Loads:       s.Loads.Load(),
		Joins:       s.Joins.Load(),
		Batches:     s.Batches.Load(),
		BatchedKeys: s.BatchedKeys.Load(),
		Dropped:     s.Dropped.Load(),
		Abandoned:   s.Abandoned.Load(),
		Panics:      s.Panics.Load(),
		Timeouts:    s.Timeouts.Load(),
	}
}

// Close refuses new loads (they get ErrClosed), drops the batches not
// dispatched yet, cancels the context of every running batch, answers every
// waiting caller with ErrClosed, waits until every fn has returned, and
// stops the batcher's actors and goroutines; then it unregisters its
// metrics and its log route. It is idempotent: every call returns nil once
// the shutdown is complete. Close waits for fn, so it must not be called
// from fn.
func (b *Batcher[K, V]) Close() error {
	err := b.eng.Close()
	b.tel.close()
	return err
}
