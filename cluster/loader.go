package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/cluster/internal/wire"
	"github.com/actorflight/flight/internal/hooks"
)

// LoaderFunc loads the value of one key. It runs on the member that owns
// the key, at most once at a time per key and activation (see the package
// documentation), with a context cancelled when every caller in the
// cluster has left, when the loader's WithTimeout passes, or when its member
// closes.
type LoaderFunc[V any] func(ctx context.Context, key string) (V, error)

// Loader is a loader registered on a Node under a name: Do runs it once
// cluster-wide per key while it is in flight; DoLocal runs it once per key
// on this member only.
//
// Get one from Register; the zero value is not usable. Methods are safe for
// concurrent use.
type Loader[V any] struct {
	node  *Node
	entry *entry
	fn    LoaderFunc[V]
	codec Codec[V]

	front *flight.Coordinator[string, answer[V]] // this member's callers of Do, one remote call per key
	local *flight.Coordinator[string, V]         // DoLocal

	lost    atomic.Uint64
	retries atomic.Uint64
	stale   atomic.Uint64
}

// answer is a decoded Reply: the value and whether the owner's flight was
// shared by more than one member.
type answer[V any] struct {
	val    V
	shared bool
}

// entry is the type-erased side of a Loader that the Node and its grains
// use: the owner coordinator, which runs the loader for keys this member
// owns, and how to run it for a key.
type entry struct {
	name, kind string
	// fingerprint describes the registration (name, value type, codec
	// type): members must agree on it for a key's value to decode.
	fingerprint string
	// traced: Register was given flight.WithTracerProvider. Then this
	// member's Joins carry the span context of its call for the key, and
	// its grains give the owner coordinator the callers' span contexts.
	traced     bool
	owner      *flight.Coordinator[string, []byte]
	load       func(key string) flight.Func[[]byte]
	closeFront func()
	grains     atomic.Int64 // grains active on this member
}

// fingerprint describes a registration; the owner of a key compares the
// caller's with its own before it runs the loader.
func fingerprint[V any](name string, codec any) string {
	return fmt.Sprintf("loader %q, value %s, codec %s", name, typeName(reflect.TypeFor[V]()), typeName(reflect.TypeOf(codec)))
}

// typeName is t with its package path when it has a name, else its
// String (which names the packages of its elements, not their paths).
func typeName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer && t.Name() == "" {
		return "*" + typeName(t.Elem())
	}
	if t.Name() != "" && t.PkgPath() != "" {
		return t.PkgPath() + "." + t.Name()
	}
	return t.String()
}

// Register makes fn the loader called name on node, with values encoded by
// codec (nil means JSON). Every member that should own keys of this loader
// must register it, under the same name, with the same codec and options,
// before Start; a member that did not is never chosen as an owner for it.
// A call whose owner registered the name with another value type or codec
// fails with ErrMismatch (options are not compared).
//
// opts configure the in-process coordinators that run fn on this member
// (flight.WithTimeout, WithMaxWaiters, WithMaxInFlight, WithShards,
// WithLogger, WithTracerProvider); WithMaxWaiters counts the members waiting on a key, not
// their callers, when applied to cluster calls. The options must be valid
// (flight.New panics otherwise). name must be non-empty and contain no '/'.
//
// Retained results: with flight.WithTTL, WithErrorTTL, WithRefreshAhead and
// WithMaxEntries, the owner of a key keeps the result of its execution, so
// a repeated call from any member within the TTL is answered by the owner
// without running fn (one round trip to the owner, no execution): a
// cluster-wide dedup window, where an idempotency key retried against
// another member gets the first answer. Callers on the owner itself are
// answered through the key's grain on their own member, without a network
// hop. The result is kept on the owner only (the other members keep
// nothing, and every call of theirs is a round trip), for its TTL and at
// most as long as the key's grain: it is dropped when the grain stops —
// after Config.Idle without a call (set Idle at least as long as the TTL
// for the full window), when a membership change moves the key to another
// member (whose first call then runs fn once more), and when the owner
// closes. Loader.Forget drops it on the owner. DoLocal retains its own
// results on each member with the same options.
//
// Tracing: with flight.WithTracerProvider, the member traces its calls and
// the executions it owns. A call of Do runs under this member's flight.run
// span for the key (a child of the first local caller's span, linked to the
// other local callers', as flight.Coordinator does), and its Join carries
// that span's W3C Trace Context (traceparent, tracestate) to the owner. The
// owner's execution runs under a flight.run span that is a child of the
// call that started it, on whichever member, and links every other
// member's call. The format is always W3C Trace Context, whatever global
// propagator the process sets. Give every member the option (with its own
// provider): a member without it sends no trace context and, as the owner,
// makes no span.
//
// Register returns flight.ErrNilFunc for a nil fn, an error wrapping
// ErrNoLoader for a bad or duplicate name, ErrStarted after Start and
// flight.ErrClosed after Close.
func Register[V any](node *Node, name string, fn LoaderFunc[V], codec Codec[V], opts ...flight.Option) (*Loader[V], error) {
	if fn == nil {
		return nil, flight.ErrNilFunc
	}
	if codec == nil {
		codec = JSON[V]()
	}
	opts = append(opts[:len(opts):len(opts)], flight.WithActorSystem(node.system))
	frontOpts := []flight.Option{flight.WithActorSystem(node.system)}
	tp := tracerProvider(opts)
	if tp != nil {
		frontOpts = append(frontOpts, flight.WithTracerProvider(tp))
	}
	l := &Loader[V]{
		node:  node,
		fn:    fn,
		codec: codec,
		front: flight.New[string, answer[V]](frontOpts...),
		local: flight.New[string, V](opts...),
	}
	l.entry = &entry{
		name:        name,
		kind:        kindPrefix + name,
		fingerprint: fingerprint[V](name, codec),
		traced:      tp != nil,
		owner:       flight.New[string, []byte](opts...),
		load:        l.encoded,
		closeFront: func() {
			_ = l.front.Close()
			_ = l.local.Close()
		},
	}
	if err := node.add(l.entry); err != nil {
		_ = l.front.Close()
		_ = l.local.Close()
		_ = l.entry.owner.Close()
		return nil, err
	}
	return l, nil
}

// tracerProvider returns the provider opts set with
// flight.WithTracerProvider, or nil.
func tracerProvider(opts []flight.Option) trace.TracerProvider {
	anys := make([]any, len(opts))
	for i, o := range opts {
		anys[i] = o
	}
	return hooks.TracerProvider(anys)
}

// encoded returns the function the owner coordinator runs for key: fn, then
// the codec.
func (l *Loader[V]) encoded(key string) flight.Func[[]byte] {
	return func(ctx context.Context) ([]byte, error) {
		v, err := l.fn(ctx, key)
		if err != nil {
			return nil, err
		}
		b, err := l.codec.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: marshal: %v", ErrCodec, err)
		}
		if max := l.node.cfg.MaxValueSize; max > 0 && len(b) > max {
			return nil, fmt.Errorf("%w: %d bytes encoded, over the owner's Config.MaxValueSize (%d)", ErrTooLarge, len(b), max)
		}
		return b, nil
	}
}

// Do returns the value of key, running the loader once cluster-wide for
// all the callers of key, on every member, while its flight is in the air.
// shared reports whether the flight had more than one caller anywhere.
//
// Do returns ctx.Err() as soon as ctx is done; the flight goes on for the
// other callers and is cancelled when the last caller in the cluster has
// left. Errors: the loader's error as a *RemoteError (its text), a panic as
// a *flight.PanicError (its text and stack), ErrOwnerLost when the owner
// was lost and the retries were spent, ErrResponseTimeout after
// Config.ResponseTimeout without an answer, ErrTooLarge, ErrCodec and
// ErrMismatch (see each), flight.ErrClosed after Close, ErrNotStarted
// before Start.
//
// Cost: callers of one key on one member share one call to the owner; a
// call costs a protoactor actor spawn, a Join and a Reply (plus a watch),
// one codec round trip, and a gRPC round trip when the owner is another
// member: one to two orders of magnitude more than flight.Coordinator
// (the measured figures: https://github.com/actorflight/flight/blob/main/cluster/README.md).
func (l *Loader[V]) Do(ctx context.Context, key string) (v V, shared bool, err error) {
	if err := l.node.usable(); err != nil {
		return v, false, err
	}
	a, shared, err := l.front.Do(ctx, key, func(ctx context.Context) (answer[V], error) {
		return l.call(ctx, key)
	})
	return a.val, shared || a.shared, err
}

// DoLocal is Do without the cluster: it deduplicates the callers of key on
// this member only, running the loader here, as a flight.Coordinator does.
// Use it for keys whose loads need not be unique cluster-wide; it works
// before Start too. Errors are the in-process ones (the loader's own error
// values, *flight.PanicError with the original value).
func (l *Loader[V]) DoLocal(ctx context.Context, key string) (v V, shared bool, err error) {
	return l.local.Do(ctx, key, func(ctx context.Context) (V, error) { return l.fn(ctx, key) })
}

// Forget detaches key's flight on this member and at the key's owner: the
// owner starts a new execution for the calls that reach it afterwards (once
// the detached one has returned), and this member's later callers of key
// make such a call. Callers already waiting still get the old result, and
// so do callers on other members that join a call their member already had
// in flight. Forget also forgets key for DoLocal, and drops key's
// retained result (WithTTL) on the owner and here. It sends one message to
// the owner and may wait for the owner to be resolved (a message round
// trip when not cached).
func (l *Loader[V]) Forget(key string) {
	l.front.Forget(key)
	l.local.Forget(key)
	if l.node.usable() != nil {
		return
	}
	if pid := l.node.resolve(l.entry.kind, key); pid != nil {
		l.node.system.Root.Send(pid, &wire.Forget{})
	}
}

// Stats reports this member's view of the loader.
type Stats struct {
	// Callers counts this member's callers of Do: Flights is the remote
	// calls made (one per key and burst of callers), Joins the callers that
	// shared one.
	Callers flight.Stats
	// Owner counts the executions this member ran as the owner of keys:
	// Flights is the loader's executions for Do, Joins the members' calls
	// that shared one; with retained results (flight.WithTTL), Entries is
	// the results kept here and Hits the members' calls answered from one.
	Owner flight.Stats
	// Local counts DoLocal.
	Local flight.Stats
	// Lost counts remote calls whose owner was lost; Retries the calls sent
	// again because of that.
	Lost, Retries uint64
	// Stale counts calls sent again (at once, then after 5 and 10 ms)
	// because the address of the key's grain named one that had
	// passivated (Config.Idle).
	Stale uint64
	// Grains is the number of this loader's grains (keys) active on this
	// member now, idle ones included until they passivate.
	Grains int
}

// Stats returns the loader's counters on this member; see flight.Stats for
// each field's meaning. No message is sent.
func (l *Loader[V]) Stats() Stats {
	return Stats{
		Callers: l.front.Stats(),
		Owner:   l.entry.owner.Stats(),
		Local:   l.local.Stats(),
		Lost:    l.lost.Load(),
		Retries: l.retries.Load(),
		Stale:   l.stale.Load(),
		Grains:  int(l.entry.grains.Load()),
	}
}

// maxStale is how many times one call re-resolves a grain found passivated
// before it counts as lost; staleWait spaces those re-resolves.
const (
	maxStale  = 3
	staleWait = 5 * time.Millisecond
)

// call makes this member's remote call for key, retrying when the owner is
// lost. ctx is the front flight's context: it is cancelled when every local
// caller has left, and then the owner is told to drop this member's call.
func (l *Loader[V]) call(ctx context.Context, key string) (answer[V], error) {
	t := l.node.cfg.ResponseTimeout
	if t <= 0 {
		return l.attempts(ctx, key)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, t, ErrResponseTimeout)
	defer cancel()
	a, err := l.attempts(ctx, key)
	if err != nil && context.Cause(ctx) == ErrResponseTimeout && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (%v) for key %q", ErrResponseTimeout, t, key)
	}
	return a, err
}

// attempts sends this member's call for key until it is answered, retrying
// when the owner is lost.
func (l *Loader[V]) attempts(ctx context.Context, key string) (answer[V], error) {
	n := l.node
	backoff := n.cfg.RetryBackoff
	stale := 0
	for attempt := 0; ; attempt++ {
		r, err := n.send(ctx, l.entry, key)
		if err == nil && r.Code == wire.Code_CODE_CLOSED {
			// The owner is leaving the cluster: retry once it has left.
			err = &lostError{addr: r.Owner, why: "closing", deadAddr: true}
		}
		var le *lostError
		if errors.As(err, &le) && le.notFound && stale < maxStale {
			// The cached PID named a grain that has since passivated
			// (Config.Idle): the owner is fine, resolve again. The owner's
			// placement actor learns of the passivation asynchronously
			// (protoactor's identity lookup drops the activation when it
			// handles the grain's Terminated), so a resolve right after it
			// can still return the dead PID: wait a moment longer each time
			// (0, 5, 10 ms). A grain that keeps vanishing falls back to the
			// usual retries after maxStale of these.
			if stale > 0 {
				t := time.NewTimer(time.Duration(stale) * staleWait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return answer[V]{}, ctx.Err()
				}
			}
			stale++
			l.stale.Add(1)
			attempt--
			continue
		}
		if errors.Is(err, errLost) {
			l.lost.Add(1)
			if attempt >= n.cfg.Retries {
				return answer[V]{}, fmt.Errorf("%w (%d attempts): %v", ErrOwnerLost, attempt+1, err)
			}
			l.retries.Add(1)
			// When the owner's address died or is leaving, resolving again
			// before the provider has dropped it would only reach that
			// member again (and, when dead, wait out protoactor's 5 s
			// activation timeout): wait for the membership to change
			// first, bounded.
			if le != nil && le.deadAddr {
				if err := n.waitGone(ctx, le.addr, deadWait); err != nil {
					return answer[V]{}, err
				}
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return answer[V]{}, ctx.Err()
			}
			backoff *= 2
			continue
		}
		if err != nil {
			return answer[V]{}, err
		}
		if r.Code != wire.Code_CODE_OK {
			return answer[V]{shared: r.Shared}, replyErr(r)
		}
		if max := n.cfg.MaxValueSize; max > 0 && len(r.Value) > max {
			return answer[V]{}, fmt.Errorf("%w: %d bytes from %s, over this member's Config.MaxValueSize (%d)", ErrTooLarge, len(r.Value), r.Owner, max)
		}
		v, err := l.codec.Unmarshal(r.Value)
		if err != nil {
			return answer[V]{}, fmt.Errorf("%w: unmarshal %q from %s: %v", ErrCodec, key, r.Owner, err)
		}
		return answer[V]{val: v, shared: r.Shared}, nil
	}
}
