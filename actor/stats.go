package actor

import "sync/atomic"

// Stats are the counters of one shard. The shard actor writes them from its
// handlers (and a DoChan caller refused for the shard's backlog adds to
// Overloaded itself); anyone may read them at any time. Each field is exact on
// its own; a read of several fields is not one snapshot.
//
// The gauges (Keys, InFlight, Waiters) return to 0 when the shard is idle.
type Stats struct {
	Keys       atomic.Int64  // key actors alive in the shard's map
	InFlight   atomic.Int64  // flights whose fn is running
	Waiters    atomic.Int64  // callers attached to a flight and not yet answered
	Flights    atomic.Uint64 // fn executions started
	Joins      atomic.Uint64 // callers admitted to a flight another caller started
	Panics     atomic.Uint64 // executions that panicked or called runtime.Goexit
	Timeouts   atomic.Uint64 // flights answered with the WithTimeout error
	Abandoned  atomic.Uint64 // flights cancelled because every caller left
	Forgotten  atomic.Uint64 // Forget calls that detached a running flight
	Overloaded atomic.Uint64 // callers refused by WithMaxWaiters or WithMaxInFlight
	Hits       atomic.Uint64 // calls answered from a retained result
	Refreshes  atomic.Uint64 // background refreshes started (WithRefreshAhead)
	Retries    atomic.Uint64 // attempts of fn after a flight's first (WithRetry)
	Stale      atomic.Uint64 // calls answered with a stale value (WithStaleIfError)
	Open       atomic.Int64  // keys whose breaker is open now (WithBreaker)
	Rejected   atomic.Uint64 // calls refused with ErrOpen (WithBreaker)

	_ [64]byte // keep shards' counters on separate cache lines
}
