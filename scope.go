package flight

import (
	"context"
	"fmt"

	"github.com/actorflight/flight/batch"
	"github.com/actorflight/flight/coordinator"
)

// WithScope makes the scope of a call part of its key: two calls share a
// flight, a retained result or a batch only when their keys and their
// scopes are equal. scope is called once per call, on the caller's ctx (a
// LoadMany: once for all its keys; a nil ctx: context.Background()); its
// value must be comparable and equal to itself, else the call gets
// ErrInvalidKey. Use it for tenants, users or credentials: a long-lived
// Batcher then never fetches one user's keys with another user's token
// (graph-gophers/dataloader#121), and a Coordinator never hands one user's
// result to another.
//
// A Coordinator with a scope keeps one flight (and one retained result) per
// (scope, key); fn's ctx carries the values of the flight's first caller, of
// that scope. Forget(key) has no ctx to tell a scope: it forgets key in
// every scope, at the cost of a message to every shard and a scan of its
// keys and retained results (Forget without WithScope is one message).
//
// A Batcher with a scope never puts keys of two scopes in one call of its
// BatchFunc, and the batch's ctx carries the values of a caller of that
// scope (the batch's first caller), so fn can read the credentials from it.
// Each scope has its own open batch, dispatched when full or WithMaxWait
// after its first key; finding a scope's open batch costs a scan of the
// scopes that have one open at that moment. The keys fn gets and the map
// it returns are the unscoped keys: a scoped Batcher converts them once per
// batch (one slice and one map).
//
// scope must be quick, must not block, and is called on the caller's
// goroutine before anything is posted: a panic in it propagates from the
// call, as a panic in the caller's own code would, and leaves the
// Coordinator or Batcher as it was. It applies to New and NewBatcher,
// which panic if scope is nil.
func WithScope(scope func(ctx context.Context) any) Option {
	return &option{id: optScope, p: scope, isNil: scope == nil}
}

// scopedKey is a key with its caller's scope: the key of a scoped Batcher's
// engine. Keyspace checks it as any struct: an invalid scope or key makes it
// invalid.
type scopedKey[K comparable] struct {
	scope any
	key   K
}

// validScope reports whether s is comparable and equal to itself (a NaN is
// not, nor a slice inside an any): whether it can scope a key, or, for a
// key boxed in an any, whether the key can be compared safely.
func validScope(s any) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return s == s
}

// scopedBatcher is the engine of a Batcher made with WithScope.
type scopedBatcher[K comparable, V any] struct {
	e     *batch.Engine[scopedKey[K], V, Result[V]]
	scope func(ctx context.Context) any
}

// scopedKeyErrors carries the KeyErrors of a scoped batch, keyed by scoped
// keys, from the adapter to the engine.
type scopedKeyErrors[K comparable] map[scopedKey[K]]error

func (scopedKeyErrors[K]) Error() string { return "flight: scoped key errors" }

// scopedFn adapts fn to the engine's scoped keys: every key of a batch has
// the same scope (the collector never mixes them).
func scopedFn[K comparable, V any](fn BatchFunc[K, V]) func(context.Context, []scopedKey[K]) (map[scopedKey[K]]V, error) {
	return func(ctx context.Context, sks []scopedKey[K]) (map[scopedKey[K]]V, error) {
		keys := make([]K, len(sks))
		for i, sk := range sks {
			keys[i] = sk.key
		}
		scope := sks[0].scope
		vals, err := fn(ctx, keys)
		out := make(map[scopedKey[K]]V, len(vals))
		for k, v := range vals {
			out[scopedKey[K]{scope, k}] = v
		}
		if err != nil {
			if ke, ok := keyErrorsOf[K](err); ok {
				ske := make(scopedKeyErrors[K], len(ke))
				for k, e := range ke {
					ske[scopedKey[K]{scope, k}] = e
				}
				return out, ske
			}
		}
		return out, err
	}
}

// scopedHooks are batchHooks for a scoped engine: its keys' errors are a
// scopedKeyErrors (see scopedFn).
type scopedHooks[K comparable, V any] struct{ batchHooks[K, V] }

func (scopedHooks[K, V]) KeyErrors(err error) (map[scopedKey[K]]error, bool) {
	ske, ok := err.(scopedKeyErrors[K])
	return ske, ok
}

func newScopedBatcher[K comparable, V any](fn BatchFunc[K, V], scope func(context.Context) any, bc batch.Config[K, V, Result[V]]) *scopedBatcher[K, V] {
	e, err := batch.New(batch.Config[scopedKey[K], V, Result[V]]{
		Fn:            scopedFn(fn),
		MaxBatch:      bc.MaxBatch,
		MaxWait:       bc.MaxWait,
		MaxConcurrent: bc.MaxConcurrent,
		Timeout:       bc.Timeout,
		Shards:        bc.Shards,
		System:        bc.System,
		Logger:        bc.Logger,
		Errors:        bc.Errors,
		Hooks:         scopedHooks[K, V]{},
		OnBatch:       bc.OnBatch,
		Scope:         func(k scopedKey[K]) any { return k.scope },
		Retain:        bc.Retain,
		Tracer:        bc.Tracer,
	})
	if err != nil {
		panic(err) // unreachable: the options validated the shard count
	}
	return &scopedBatcher[K, V]{e: e, scope: scope}
}

// scopeOf calls the scope function on ctx (nil: Background) and reports
// whether its value can scope a key.
func (s *scopedBatcher[K, V]) scopeOf(ctx context.Context) (any, bool) {
	if ctx == nil {
		ctx = context.Background()
	}
	sc := s.scope(ctx)
	return sc, validScope(sc)
}

func (s *scopedBatcher[K, V]) load(ctx context.Context, key K) Result[V] {
	sc, ok := s.scopeOf(ctx)
	if !ok {
		return Result[V]{Err: ErrInvalidKey}
	}
	return s.e.Load(ctx, scopedKey[K]{sc, key})
}

func (s *scopedBatcher[K, V]) loadChan(ctx context.Context, key K, anchor any) <-chan Result[V] {
	sc, ok := s.scopeOf(ctx)
	if !ok {
		ch := make(chan Result[V], 1)
		ch <- Result[V]{Err: ErrInvalidKey}
		return ch
	}
	return s.e.LoadChan(ctx, scopedKey[K]{sc, key}, anchor)
}

func (s *scopedBatcher[K, V]) loadMany(ctx context.Context, keys []K) (map[K]V, map[K]error, int, error) {
	sc, ok := s.scopeOf(ctx)
	if !ok {
		return map[K]V{}, nil, 0, fmt.Errorf("flight: LoadMany: scope %T: %w", sc, ErrInvalidKey)
	}
	sks := make([]scopedKey[K], len(keys))
	for i, k := range keys {
		sks[i] = scopedKey[K]{sc, k}
	}
	svals, serrs, unhashable, err := s.e.LoadMany(ctx, sks)
	vals := make(map[K]V, len(svals))
	for k, v := range svals {
		vals[k.key] = v
	}
	var errs map[K]error
	if len(serrs) > 0 {
		errs = make(map[K]error, len(serrs))
		for k, e := range serrs {
			errs[k.key] = e
		}
	}
	return vals, errs, unhashable, err
}

// scopedCoordinator is the engine of a Coordinator made with WithScope.
type scopedCoordinator[K comparable, V any] struct {
	e     *coordinator.Engine[scopedKey[K], V, Result[V]]
	scope func(ctx context.Context) any
}

func newScopedCoordinator[K comparable, V any](cfg coordinator.Config[V, Result[V]], scope func(context.Context) any) *scopedCoordinator[K, V] {
	e, err := coordinator.New[scopedKey[K], V, Result[V]](cfg)
	if err != nil {
		panic(err) // unreachable: the options validated the shard count
	}
	return &scopedCoordinator[K, V]{e: e, scope: scope}
}

func (s *scopedCoordinator[K, V]) scopeOf(ctx context.Context) (any, bool) {
	if ctx == nil {
		ctx = context.Background()
	}
	sc := s.scope(ctx)
	return sc, validScope(sc)
}

func (s *scopedCoordinator[K, V]) do(ctx context.Context, key K, fn Func[V]) (V, bool, error) {
	sc, ok := s.scopeOf(ctx)
	if !ok {
		var zero V
		return zero, false, ErrInvalidKey
	}
	return s.e.Do(ctx, scopedKey[K]{sc, key}, fn)
}

func (s *scopedCoordinator[K, V]) doChan(ctx context.Context, key K, fn Func[V], anchor any) <-chan Result[V] {
	sc, ok := s.scopeOf(ctx)
	if !ok {
		ch := make(chan Result[V], 1)
		ch <- Result[V]{Err: ErrInvalidKey}
		return ch
	}
	return s.e.DoChan(ctx, scopedKey[K]{sc, key}, fn, anchor)
}

// forget forgets key in every scope. An invalid key has no flight (and
// comparing it could panic): nothing to do.
func (s *scopedCoordinator[K, V]) forget(key K) {
	if !validScope(any(key)) {
		return
	}
	s.e.ForgetWhere(func(sk scopedKey[K]) bool { return sk.key == key })
}
