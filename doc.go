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
// Beyond one key and one moment, a Coordinator can keep each result for a
// window ([WithTTL], [WithErrorTTL], [WithRefreshAhead], bounded by
// [WithMaxEntries]): a dedup window, negative caching and refresh-ahead,
// served without running fn or sending a message. It can retry a failing fn
// inside one flight ([WithRetry], [WithRetryIf], [ExponentialBackoff]): one
// retry loop per key, whatever the number of callers, its waits timer
// messages rather than sleeping goroutines. And a [Batcher] ([NewBatcher],
// [Batcher.Load], [Batcher.LoadMany]) collects the keys that callers ask for
// into calls of one [BatchFunc], DataLoader-style, with the same per-caller
// cancellation, panic and Close rules.
//
// # Design
//
// Each key is owned by a lightweight actor, made on the key's first call and
// retired when its last flight ends, that serializes the key's executions and
// broadcasts each result to the callers queued on it. Key actors live inside
// shard supervisor actors of github.com/asynkron/protoactor-go: every change
// to a key is a message handled by its shard, one at a time, so there is no
// map of mutexes to get wrong. The packages actor, coordinator, mailbox and
// keyspace are that engine, batch is the Batcher's (its key shards and the
// collector actor that owns the open batch), and internal/gate counts who
// may still post to a shard so that Close stops it only when nobody will;
// this package is the API, and the only one with a compatibility promise.
package flight
