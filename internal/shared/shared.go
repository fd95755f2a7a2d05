// Package shared holds what the module's engines (package coordinator for a
// Coordinator, package batch for a Batcher) share within one process: the
// actor system they run on when none is given, the routing of that system's
// own log lines, and the default shard count.
package shared

import (
	"log/slog"
	"runtime"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/actorflight/flight/internal/logroute"
)

// System returns the process-wide actor system that engines use when none
// is given. It is made on first use (NewActorSystem costs milliseconds and
// megabytes). Its logger is silent unless a coordinator asked for logs (see
// RouteLogs); protoactor's default one would write INFO lines to stderr. It
// holds no goroutine while no actor of it is busy, and is never shut down.
func System() *actor.ActorSystem { return system() }

var system = sync.OnceValue(func() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(logs.Handler())
	}))
})

// logs routes the shared system's own log lines to the handlers that asked
// for them.
var logs logroute.Router

// RouteLogs makes the shared actor system's own log lines (dead letters,
// actor restarts, supervision events) go to h, with the attribute
// component=protoactor, until the returned function is called. Each
// Coordinator or Batcher that uses the shared system and was given a logger
// routes it here when it is made and unroutes it on Close (or when it is
// collected unclosed).
//
// The shared system is one per process, so a line cannot be attributed to
// one coordinator: every routed handler gets it, once per distinct handler
// (two coordinators given the same logger do not see each line twice). The
// returned function is idempotent.
func RouteLogs(h slog.Handler) (unroute func()) {
	return logs.Route(h.WithAttrs([]slog.Attr{slog.String("component", "protoactor")}), logroute.Inner(h))
}

// LogRoutes returns the number of distinct handlers the shared system's log
// lines go to now.
func LogRoutes() int { return logs.Len() }

// DefaultShards is the shard count of an engine when none is configured:
// four per processor, so that callers on different processors rarely post
// to the same shard's mailbox at once.
func DefaultShards() int { return 4 * runtime.GOMAXPROCS(0) }
