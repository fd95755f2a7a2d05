package coordinator

import (
	"log/slog"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// SharedSystem returns the process-wide actor system that coordinators use
// when none is given with WithActorSystem. It is made on first use, because
// NewActorSystem costs about 4 ms and 2.9 MB, and with a logger that discards
// everything, because protoactor's default one writes INFO lines to stderr.
// It holds no goroutine while no actor of it is busy, so it is never shut
// down.
var SharedSystem = sync.OnceValue(func() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
})
