// Package flight coordinates flights: while a call for a key is running,
// every other caller asking for the same key waits for that one call and
// shares its result. It does what golang.org/x/sync/singleflight does, with
// typed keys and values, per-caller context cancellation, a flight that is
// cancelled when nobody waits for it any more, timeouts, panics turned into
// errors, bounded queues and counters; and the rest of request coalescing:
// results kept for a window, retries inside the flight, and batching.
//
// Each name's doc states its rules (cancellation, panics, Forget, Close),
// its zero value and its cost; this comment is the map.
//
// # Coordinator
//
// A [Coordinator], made with [New], runs one flight per key at a time.
// [Coordinator.Do] runs fn or joins the key's running flight and returns its
// result; [Coordinator.DoChan] does the same and delivers a [Result] on a
// channel, for a select. Each caller leaves on its own ctx; the flight's
// [Func] gets a ctx that is cancelled when every caller has left, on
// [WithTimeout] and on Close. [Coordinator.Forget] detaches a key's running
// flight so that the next call starts afresh. [Coordinator.Stats] reads the
// gauges and counters ([Stats]) without a lock. [Coordinator.Close] answers
// every caller, waits for every fn and stops the coordinator's actors. A
// panic reaches every waiter as a [*PanicError]; the other errors are
// [ErrClosed], [ErrOverloaded], [ErrNilFunc], [ErrGoexit], [ErrInvalidKey]
// and [ErrRecursiveCall].
//
// # Retained results
//
// [WithTTL] keeps each successful result for a window, served to later
// calls without running fn (a dedup window, a memo); [WithErrorTTL] keeps
// errors too (negative caching); [WithRefreshAhead] renews a hot key in the
// background before its TTL ends; [WithMaxEntries] bounds the results kept
// (default [DefaultMaxEntries]).
//
// # Retries
//
// [WithRetry] runs fn again inside the same flight while it fails, one
// retry loop per key whatever the number of callers, its waits timer
// messages rather than sleeping goroutines; [WithRetryIf] says which errors
// are retried; [ExponentialBackoff] is the usual backoff (full jitter).
//
// # Resilience
//
// [WithStaleIfError] answers a failed flight with the key's last good value
// (Result.Stale) for a while past its TTL; [WithBreaker] gives every key a
// circuit breaker that refuses calls with [ErrOpen] for a cooldown after
// repeated failures, then lets one trial flight through.
//
// # Bounds
//
// [WithMaxWaiters] bounds the callers of one key's flight, [WithMaxInFlight]
// the flights across keys: a caller beyond either gets [ErrOverloaded] at
// once.
//
// # Batcher
//
// A [Batcher], made with [NewBatcher], collects the keys callers ask for
// within a short window into calls of one [BatchFunc], DataLoader-style:
// [Batcher.Load] and [Batcher.LoadChan] for one key, [Batcher.LoadMany] for
// many. A BatchFunc fails only some keys by returning [KeyErrors]; a key
// missing from its map gets [ErrNotFound]. [WithMaxBatch] bounds the keys of
// a batch, [WithMaxWait] how long a batch collects after its first key (not
// to be confused with WithMaxWaiters, a Coordinator's bound on callers), and
// [WithMaxConcurrentBatches] the calls of the BatchFunc at once (a
// Batcher's counterpart of WithMaxInFlight). [Batcher.Stats] reads its
// [BatchStats].
//
// # Scopes
//
// [WithScope] makes a scope taken from each call's ctx (a tenant, a user,
// credentials) part of its key, for a Coordinator and a Batcher: flights,
// retained results and batches are never shared across scopes.
//
// # Observability
//
// [WithMeterProvider] reports the counters and two histograms to an
// OpenTelemetry meter provider (tell coordinators apart with
// [WithMetricAttributes]); [WithTracerProvider] runs each execution under an
// OpenTelemetry span linked to its callers' spans; [WithLogger] sets where
// panics and protoactor's own lines are logged (by default nowhere). The
// instruments, spans and log lines are listed in
// https://github.com/actorflight/flight/blob/main/docs/observability.md.
//
// # Embedding
//
// By default every coordinator runs on one protoactor-go actor system shared
// by the process; [WithActorSystem] runs it in yours instead, and
// [WithShards] sets how many shard actors split its keyspace.
//
// # Beyond this package
//
// Package github.com/actorflight/flight/compat/singleflight is a drop-in for
// golang.org/x/sync/singleflight (a change of import path) on top of a
// Coordinator. Module github.com/actorflight/flight/cluster runs flights
// cluster-wide on protoactor-go's cluster: every caller of a key on every
// member waits for one execution. The README
// (https://github.com/actorflight/flight#readme) is a tour with runnable
// examples; the figures against x/sync and its peers are in
// https://github.com/actorflight/flight/blob/main/docs/performance.md.
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
// How the engine keeps the rules is in
// https://github.com/actorflight/flight/blob/main/docs/design.md.
package flight
