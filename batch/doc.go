// Package batch is the engine behind flight.Batcher: key shard actors that
// own the callers of each key, and one collector (a mutex-guarded state
// machine, not an actor) that owns the batch being collected, the batches
// waiting for a slot, and the batches running.
//
// It is part of flight's engine: the root package flight is the API, and
// this package carries no compatibility promise. How a load flows through
// it: https://github.com/actorflight/flight/blob/main/docs/batching.md.
//
// # What is shared with the Coordinator
//
// This package holds only what is specific to collecting and dispatching
// batches: a key's entry, the collector and its batches, LoadMany's group,
// and the batch's context (its values and deadline). The rest is the
// Coordinator's code: the shards' mailbox and its direct posts (package
// mailbox), the gates Close waits on (internal/gate), the shared actor
// system, the keyspace, the cancellation of fn's context (internal/fnctx),
// the run of fn with panic recovery and Goexit detection
// (internal/outcome), the worker pool (package actor's Pool), the error set
// ([Errors] embeds package actor's), the counters ([Stats] embeds package
// actor's), the retained results' store (coordinator.Retained) and the
// spans (internal/tracing). The fault policy is the Coordinator's shards'.
//
// # Shards and the collector
//
// A [shard] (one per keyspace shard, a protoactor actor on package mailbox's
// mailbox, drained by the goroutine that posts to it) owns the keys of its
// share of the keyspace: for each key with callers, an entry with its
// callers. A load is one message to its key's shard. The first caller of a
// key makes the entry and hands it to the collector (add); later callers
// join the entry, whether its key is still being collected, waits for a
// slot, or is in a running batch, so a key is never sent twice while it is
// wanted. When every caller of a key has left, the shard detaches the entry
// and tells the collector (drop).
//
// The [collector] (one per Batcher) handles its events one at a time under
// its mutex, on the goroutine that has them: add and drop from the shards,
// the tick of its one WithMaxWait timer (reset for each batch, never a
// sleeping goroutine), the WithTimeout expiry of a running batch, done from
// a worker, close. It owns the open batch, the full batches waiting for a
// WithMaxConcurrentBatches slot, and the running ones with their contexts,
// which are embedded in the batches (see batchCtx). It hands a batch to a
// warm worker goroutine (package actor's Pool), which runs fn through
// internal/outcome and hands the outcome back; the collector resolves it
// and, once its mutex is released, sends it to each shard that has keys in
// the batch, which answers the keys' callers.
//
// With Config.Retain (WithTTL), a load first looks its key up in its
// shard's store of retained results (coordinator.Retained) and, on a hit,
// is answered on its own goroutine without a message; a shard retains a
// key's outcome when it answers it; a refresh-ahead is posted as a load of
// its key, so refreshes are batched (retain.go).
//
// The shard actors are spawned by the first load, not by New: an engine
// never used holds nothing but its struct, and closing it stops nothing.
//
// # Faults
//
// A panic in a shard's or the collector's own handling of a message is
// contained as in the Coordinator's shards: the callers of the keys it was
// about get the panic as an error, the keys are detached, and the engine
// goes on serving (see shard.Receive and collector.handle).
//
// No goroutine exists while the Batcher is idle: the actors run on their
// posters' goroutines, the timers are runtime timers, and the workers exit
// a few milliseconds after their last batch.
package batch
