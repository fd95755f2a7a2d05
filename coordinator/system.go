package coordinator

import (
	"log/slog"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/actorflight/flight/internal/logroute"
)

// SharedSystem returns the process-wide actor system that engines use when
// none is given. It is made on first use, because NewActorSystem costs
// milliseconds and megabytes. Its logger is silent unless a coordinator asked
// for logs (see RouteSystemLogs): protoactor's default one writes INFO lines
// to stderr. It holds no goroutine while no actor of it is busy, so it is
// never shut down.
func SharedSystem() *actor.ActorSystem { return sharedSystem() }

var sharedSystem = sync.OnceValue(func() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(systemLogs.Handler())
	}))
})

// systemLogs routes the shared system's own log lines to the coordinators
// that asked for them.
var systemLogs logroute.Router

// SystemLogs returns the router of the shared system's log lines (for
// tests: how many handlers are routed).
func SystemLogs() *logroute.Router { return &systemLogs }

// RouteSystemLogs makes the shared actor system's own log lines (dead
// letters, actor restarts, supervision events) go to h, with the attribute
// component=protoactor, until the returned function is called. Each
// coordinator that uses the shared system and was given a logger routes it
// here on New and unroutes it on Close (or when it is collected unclosed).
//
// The shared system is one per process, so a line cannot be attributed to
// one coordinator: every routed handler gets it, once per distinct handler
// (two coordinators given the same logger do not see each line twice). The
// returned function is idempotent.
func RouteSystemLogs(h slog.Handler) (unroute func()) {
	return systemLogs.Route(h.WithAttrs([]slog.Attr{slog.String("component", "protoactor")}), h)
}
