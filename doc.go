// Package flight coordinates flights: while a call for a key is running,
// every other caller asking for the same key waits for that one call and
// shares its result. It does what golang.org/x/sync/singleflight does, with
// typed keys and values, per-caller context cancellation, a flight that is
// cancelled when nobody waits for it any more, timeouts, panics turned into
// errors, bounded queues and counters.
//
// # Design
//
// Each key is owned by a lightweight actor, made on the key's first call and
// retired when its last flight ends, that serializes the key's executions and
// broadcasts each result to the callers queued on it. Key actors live inside
// shard supervisor actors of github.com/asynkron/protoactor-go: every change
// to a key is a message handled by its shard, one at a time, so there is no
// map of mutexes to get wrong. See the packages actor, coordinator, mailbox
// and keyspace for the parts, and the README for the rules and figures.
//
// # Rules
//
//   - One execution per key at a time; callers arriving meanwhile share it.
//   - Each caller leaves on its own ctx; the flight goes on for the others
//     and is cancelled when the last one leaves.
//   - fn's context keeps the first caller's values, and is cancelled when
//     every caller has left, on the WithTimeout deadline, or on Close.
//   - Forget detaches the running flight (golang/go#31420 guarded).
//   - A panic in fn becomes a *PanicError for every waiter, runtime.Goexit
//     becomes ErrGoexit; the key is usable again at once.
//   - nil fn → ErrNilFunc; after Close → ErrClosed; over a bound →
//     ErrOverloaded. Never a hang, a crash or a silent zero value.
//   - Close answers everyone, waits for every fn, and leaves no goroutine.
//   - DoChan's channel has a buffer of one, gets exactly one Result, and is
//     never closed.
package flight
