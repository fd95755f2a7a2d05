package actor

import "sync/atomic"

// Stats are the counters of one shard. The shard actor writes them from its
// handlers (and a DoChan caller refused for the shard's backlog adds to
// Overloaded itself); anyone may read them at any time. Each field is exact on
// its own; a read of several fields is not one snapshot. A Coordinator's
// shard publishes its changes to InFlight and Waiters (Env.Publish) before
// it answers a caller, signals one, or hands fn to a worker, and at the end
// of every message: no caller or fn sees a gauge that does not count it
// yet, or that still counts an answered caller. A Batcher's shards add
// theirs at once (AddGauges).
//
// The gauges (Keys, InFlight, Waiters) return to 0 when the shard is idle.
type Stats struct {
	Keys atomic.Int64 // key actors alive in the shard's map
	// gauges holds two gauges in one word, InFlight (flights whose fn is
	// running) in its high half and Waiters (callers attached to a flight
	// and not yet answered) in its low half, so that a handler that moves
	// both (a flight's start with its first caller, its end with the callers
	// it answers) publishes them with one atomic add: a distinct key's
	// flight makes two such adds instead of four. Neither can reach 2³² in
	// one shard (each running fn, each waiting caller holds memory of its
	// own), and neither is negative once a handler is over, so the halves
	// never carry into each other. Read them with InFlight and Waiters.
	gauges     atomic.Uint64
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

// InFlight returns the flights whose fn is running.
func (s *Stats) InFlight() int64 { return int64(s.gauges.Load() >> 32) }

// Waiters returns the callers attached to a flight and not yet answered.
func (s *Stats) Waiters() int64 { return int64(uint32(s.gauges.Load())) }

// AddGauges adds inFlight to InFlight and waiters to Waiters, with one
// atomic add. Neither gauge may go below 0 (see gauges); only the shard
// actor calls it.
func (s *Stats) AddGauges(inFlight, waiters int64) {
	s.gauges.Add(uint64(inFlight<<32 + waiters))
}
