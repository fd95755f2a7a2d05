// Package batch is the engine behind flight.Batcher: key shard actors that
// own the callers of each key, and one collector actor that owns the batch
// being collected, the batches waiting for a slot, and the batches running.
//
// It is part of flight's engine: the root package flight is the API, and
// this package carries no compatibility promise. docs/batching.md describes
// how a load flows through it.
//
// # Actors
//
// A [shard] (one per keyspace shard, a protoactor actor on package mailbox's
// mailbox, drained by the goroutine that posts to it) owns the keys of its
// share of the keyspace: for each key with callers, an entry with its
// callers. The first caller of a key makes the entry and tells the collector
// (add); later callers join the entry, whether its key is still being
// collected, waits for a slot, or is in a running batch, so a key is never
// sent twice while it is wanted. When every caller of a key has left, the
// shard detaches the entry and tells the collector (drop).
//
// The [collector] (one per Batcher, an actor on the same mailbox) owns the
// open batch and its WithMaxWait deadline, which is a timer that posts a
// message to it, never a sleeping goroutine; the full batches waiting for a
// WithMaxConcurrentBatches slot; and the running ones, their contexts and
// WithTimeout deadlines. It hands a batch to a warm worker goroutine
// (package actor's Pool), which runs fn with panic and runtime.Goexit
// recovery and posts the outcome back; the collector resolves it and posts
// it to each shard that has keys in the batch, which answers the keys'
// callers.
//
// The actors are spawned by the first load, not by New: an engine never
// used holds nothing but its struct, and closing it stops nothing.
//
// No goroutine exists while the Batcher is idle: the actors run on their
// posters' goroutines, the timers are runtime timers, and the workers exit
// a few milliseconds after their last batch.
package batch
