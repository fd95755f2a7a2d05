package coordinator

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// SharedSystem returns the process-wide actor system that coordinators use
// when none is given with WithActorSystem. It is made on first use, because
// NewActorSystem costs about 4 ms and 2.9 MB. Its logger is silent unless a
// coordinator asked for logs (see RouteSystemLogs): protoactor's default one
// writes INFO lines to stderr. It holds no goroutine while no actor of it is
// busy, so it is never shut down.
var SharedSystem = sync.OnceValue(func() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(&view{r: systemLogs})
	}))
})

// systemLogs routes the shared system's log lines: its logger's handler
// forwards protoactor's own log lines to the handlers routed here and drops
// them when there are none.
var systemLogs = &router{}

// RouteSystemLogs makes the shared actor system's own log lines (dead
// letters, actor restarts, supervision events) go to h, with the attribute
// component=protoactor, until the returned function is called. Each
// coordinator that uses the shared system and was given a logger routes it
// here on New and unroutes it on Close; with none routed the lines are
// dropped before they are formatted.
//
// The shared system is one per process, so a line cannot be attributed to
// one coordinator: every routed handler gets it, once per distinct handler
// (two coordinators given the same logger do not see each line twice). The
// returned function is idempotent. Cost: a lock and a copy of the list of
// handlers on each call; nothing on the coordinator's paths.
func RouteSystemLogs(h slog.Handler) (unroute func()) {
	return systemLogs.add(h.WithAttrs([]slog.Attr{slog.String("component", "protoactor")}), h)
}

// router is a changing set of handlers that a view fans each record out
// to. The set is an immutable slice swapped under mu, so a view's Enabled
// and Handle read it with one atomic load.
type router struct {
	mu      sync.Mutex                // serialises add and remove
	targets atomic.Pointer[[]*target] // nil or empty: everything is dropped
}

// target is one routed handler: h is the handler with component=protoactor,
// id the handler as given (to recognise a handler routed twice), refs the
// number of routes to it. refs is guarded by router.mu.
type target struct {
	h    slog.Handler
	id   slog.Handler
	refs int
}

func (r *router) add(h, id slog.Handler) func() {
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

func (r *router) remove(t *target) {
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

// sameHandler reports whether a and b are the same handler: the same
// pointer (as slog's own handlers are). Handlers that are not pointers are
// never taken as the same, since comparing them might panic.
func sameHandler(a, b slog.Handler) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Kind() == reflect.Pointer && a == b
}

// view is the slog.Handler of the shared system's logger: the router seen
// through the attributes and groups a logger added with With or WithGroup
// (none for the logger itself). They are applied to each target when a
// record is handled, since the targets change over time.
type view struct {
	r   *router
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
