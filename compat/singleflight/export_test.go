package singleflight

import (
	"sync/atomic"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/shared"
)

// EngineStats returns the counters of the process-wide coordinator.
func EngineStats() flight.Stats { return engine().Stats() }

// SpawnedActors returns how many processes (actors, futures) the shared
// actor system has ever registered.
func SpawnedActors() uint64 {
	return atomic.LoadUint64(&shared.System().ProcessRegistry.SequenceID)
}
