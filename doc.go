// Package flight coordinates flights: while a call for a key is running,
// every other caller asking for the same key waits for that one call and
// shares its result. It does what golang.org/x/sync/singleflight does, with
// typed keys and values, per-caller context cancellation, a flight that is
// cancelled when nobody waits for it any more, timeouts, panics turned into
// errors, bounded queues and counters.
//
// Make a [Coordinator] with [New], call [Coordinator.Do] or
// [Coordinator.DoChan], and [Coordinator.Close] it when done. Each method's
// doc says how it behaves (cancellation, panics, Forget, Close); the README
// states the rules in one place, and docs/design.md explains how they are
// kept.
//
// # Design
//
// Each key is owned by a lightweight actor, made on the key's first call and
// retired when its last flight ends, that serializes the key's executions and
// broadcasts each result to the callers queued on it. Key actors live inside
// shard supervisor actors of github.com/asynkron/protoactor-go: every change
// to a key is a message handled by its shard, one at a time, so there is no
// map of mutexes to get wrong. The packages actor, coordinator, mailbox and
// keyspace are that engine; this package is the API, and the only one with a
// compatibility promise.
package flight
