// Package singleflight is a drop-in replacement for
// golang.org/x/sync/singleflight built on the flight coordinator: the same
// exported names (Group, Result, Do, DoChan, Forget), the same zero-value
// Group and the same semantics, checked by running x/sync's own test file
// against this package (scripts/xsync-conformance.sh). Migrating is a change
// of import path:
//
//	import "github.com/actorflight/flight/compat/singleflight"
//
// Code that needs more — typed keys and values, per-caller cancellation,
// timeouts, panics as errors, bounds, statistics — should use the root
// package flight instead.
//
// # Design
//
// A Group is one byte and owns nothing: no map, no actor, no goroutine. All
// Groups of a process share one coordinator, created on the first call of
// any Group (sync.OnceValue) on the process-wide actor system (made then
// too unless another coordinator made it first: about 4 ms and 2.9 MB, once
// per process), and never closed. Its keys are the pair (Group address, key), so every Group is its
// own namespace at no cost, and a Group that is dropped leaves nothing
// behind: a key exists in the coordinator only while it has a flight. While
// no call is running the coordinator holds no goroutine (its fn workers exit
// about 2 ms after their last flight) and no per-key memory, so tests of
// code that uses a Group stay clean under go.uber.org/goleak.
//
// The coordinator is instantiated with singleflight's Result as the type its
// DoChan delivers, so the shard that ends a flight writes the Result into
// each DoChan channel itself: no goroutine per DoChan call, where x/sync
// starts one to run fn.
//
// Panics and runtime.Goexit in fn are recovered or detected by the worker
// that ran fn and come back to the callers as errors, which this package
// turns back into x/sync's behaviour: Do panics, in every caller of the
// flight, with an error holding the panic value and fn's stack (errors.Is
// and errors.As see through it when the value is an error); Goexit in fn
// makes every Do caller of the flight call runtime.Goexit; a panic in a
// flight that a DoChan caller waits for crashes the process, as x/sync's
// does, because that caller may never read its channel.
//
// Forget posts to the key's shard, in order with the caller's later calls:
// a call that starts after Forget returns never joins the forgotten flight,
// and the forgotten flight ending never detaches a newer one
// (golang/go#31420).
//
// # Differences from x/sync
//
//   - fn always runs on a worker goroutine of the coordinator, never on the
//     caller's goroutine (x/sync's Do runs it on the first caller's).
//     What is tied to a goroutine therefore differs: runtime.LockOSThread,
//     pprof labels set by the caller, the "goroutine N" of fn's stack trace.
//     The outcomes callers observe do not: Do returns, panics or calls
//     runtime.Goexit as x/sync's would.
//   - If fn calls runtime.Goexit, each DoChan caller receives a Result whose
//     Err matches flight.ErrGoexit (errors.Is). x/sync's channel never
//     receives anything then (golang/go#52557).
//   - After Forget, the next call's fn starts at once, beside the forgotten
//     one, as with x/sync. (The root package's Coordinator instead never
//     overlaps executions of one key; compat sets the engine's
//     ForgetOverlaps to keep x/sync's behaviour.)
//   - A call costs more than with x/sync: a message to a shard actor and a
//     hand-off of fn to a worker goroutine. With a no-op fn on 2 cores, Do
//     takes about 1.8 µs and 3–5 allocations against x/sync's 0.25–0.35 µs
//     and 0–2 (5.5–7×); DoChan 2.7 µs against 1.4 µs (1.9×: x/sync starts a
//     goroutine per call). BenchmarkGroup and BenchmarkDoChan measure both
//     in one run. The overhead matters when the deduplicated work itself
//     takes microseconds, not when it is a database or network call.
package singleflight
