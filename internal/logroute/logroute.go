// Package logroute fans slog records out to a changing set of handlers.
//
// A [Router] is the handler of a logger that lives longer than the things
// that want its lines: the process-wide protoactor actor system logs through
// one, and each coordinator given a logger routes it there for as long as it
// runs. With no handler routed, records are dropped before they are
// formatted.
package logroute

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
)

// Router is a set of handlers that its [Router.Handler] fans each record out
// to, once per distinct handler.
//
// The zero value is an empty Router, ready to use. All methods are safe for
// concurrent use. The set is an immutable slice swapped under a lock, so
// handling a record costs one atomic load plus the handlers' own work;
// Route and its undo cost a lock and a copy of the set.
type Router struct {
	mu      sync.Mutex                // serialises Route and its undo
	targets atomic.Pointer[[]*target] // nil or empty: everything is dropped
}

// target is one routed handler: h is the handler records go to, id the
// handler that identifies it (to recognise a handler routed twice), refs the
// number of routes to it. refs is guarded by Router.mu.
type target struct {
	h    slog.Handler
	id   slog.Handler
	refs int
}

// Route makes records go to h until the returned function is called; id
// identifies the route's owner, so that two routes with the same id (the
// same pointer) deliver each record once. The returned function is
// idempotent.
func (r *Router) Route(h, id slog.Handler) (unroute func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t *target
	if old := r.targets.Load(); old != nil {
		for _, x := range *old {
			if sameHandler(x.id, id) {
				t = x
				break
			}
		}
	}
	if t == nil {
		t = &target{h: h, id: id}
		var next []*target
		if old := r.targets.Load(); old != nil {
			next = slices.Clone(*old)
		}
		next = append(next, t)
		r.targets.Store(&next)
	}
	t.refs++
	var once sync.Once
	return func() { once.Do(func() { r.remove(t) }) }
}

// Len returns the number of distinct handlers routed now.
func (r *Router) Len() int {
	if ts := r.targets.Load(); ts != nil {
		return len(*ts)
	}
	return 0
}

func (r *Router) remove(t *target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.refs--
	if t.refs > 0 {
		return
	}
	old := r.targets.Load()
	next := slices.DeleteFunc(slices.Clone(*old), func(x *target) bool { return x == t })
	r.targets.Store(&next)
}

// Handler returns the slog.Handler that fans records out to the routed
// handlers.
func (r *Router) Handler() slog.Handler { return &view{r: r} }

// sameHandler reports whether a and b are the same handler: the same
// pointer (as slog's own handlers are). Handlers that are not pointers are
// never taken as the same, since comparing them might panic.
func sameHandler(a, b slog.Handler) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Kind() == reflect.Pointer && a == b
}

// view is the router seen through the attributes and groups a logger added
// with With or WithGroup (none for the logger itself). They are applied to
// each target when a record is handled, since the targets change over time.
type view struct {
	r   *Router
	ops []func(slog.Handler) slog.Handler
}

func (v *view) Enabled(ctx context.Context, l slog.Level) bool {
	ts := v.r.targets.Load()
	if ts == nil {
		return false
	}
	for _, t := range *ts {
		if t.h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (v *view) Handle(ctx context.Context, rec slog.Record) error {
	ts := v.r.targets.Load()
	if ts == nil {
		return nil
	}
	var first error
	for _, t := range *ts {
		if !t.h.Enabled(ctx, rec.Level) {
			continue
		}
		h := t.h
		for _, op := range v.ops {
			h = op(h)
		}
		if err := h.Handle(ctx, rec.Clone()); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (v *view) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return v
	}
	as = slices.Clone(as)
	return v.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(as) })
}

func (v *view) WithGroup(g string) slog.Handler {
	if g == "" {
		return v
	}
	return v.with(func(h slog.Handler) slog.Handler { return h.WithGroup(g) })
}

func (v *view) with(op func(slog.Handler) slog.Handler) slog.Handler {
	ops := append(slices.Clip(v.ops), op)
	return &view{r: v.r, ops: ops}
}

// Safe returns h as a handler whose panics are recovered: a record whose
// handling panics is dropped (Handle returns an error, which slog.Logger
// ignores), and a panicking Enabled reports false. The engines log through
// it, so that a user's handler that panics cannot fail a flight or wedge
// the actor that was logging. Safe of a handler Safe returned is that
// handler.
func Safe(h slog.Handler) slog.Handler {
	if s, ok := h.(*safe); ok {
		return s
	}
	return &safe{h: h}
}

// Inner returns the handler that Safe wrapped, or h itself: what identifies
// a route (two coordinators given the same logger share one).
func Inner(h slog.Handler) slog.Handler {
	if s, ok := h.(*safe); ok {
		return s.h
	}
	return h
}

type safe struct{ h slog.Handler }

func (s *safe) Enabled(ctx context.Context, l slog.Level) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return s.h.Enabled(ctx, l)
}

func (s *safe) Handle(ctx context.Context, rec slog.Record) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("flight: log handler panicked: %v", r)
		}
	}()
	return s.h.Handle(ctx, rec)
}

func (s *safe) WithAttrs(as []slog.Attr) (h slog.Handler) {
	defer func() {
		if recover() != nil {
			h = s
		}
	}()
	return &safe{h: s.h.WithAttrs(as)}
}

func (s *safe) WithGroup(name string) (h slog.Handler) {
	defer func() {
		if recover() != nil {
			h = s
		}
	}()
	return &safe{h: s.h.WithGroup(name)}
}
