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
// Groups of a process share one flight.Coordinator, created on the first
// call of any Group and never closed. Its keys are the pair (Group address,
// key), so every Group is its own namespace at no cost, and a Group that is
// dropped leaves nothing behind: a key exists in the coordinator only while
// it has a flight. While no call is running the coordinator holds no
// goroutine and no per-key memory, so tests of code that uses a Group stay
// clean under go.uber.org/goleak.
//
// The package is built on the root package's public API, plus two hooks
// the public API does not offer (package internal/hooks): a Forget that lets
// the next call run beside the forgotten one, and a panic delivered as
// x/sync's panicError. Do turns the coordinator's answers back into x/sync's
// behaviour: it panics, in every caller of the flight, with one error holding
// the panic value and fn's stack (errors.Is and errors.As see through it when
// the value is an error); Goexit in fn makes every Do caller of the flight
// call runtime.Goexit. DoChan starts a goroutine per call, as x/sync's does,
// which waits for the flight and hands its Result over; a panic in a flight
// that a DoChan caller waits for crashes the process on that goroutine, as
// x/sync's does, because that caller may never read its channel.
//
// Forget is ordered with the caller's later calls: a call that starts after
// Forget returns never joins the forgotten flight, and the forgotten flight
// ending never detaches a newer one (golang/go#31420).
//
// # Differences from x/sync
//
//   - Do runs fn on the first caller's goroutine, as x/sync's does; DoChan
//     runs it on a worker goroutine of the coordinator (x/sync's on a
//     goroutine it starts).
//   - If fn calls runtime.Goexit, each DoChan caller receives a Result whose
//     Err matches flight.ErrGoexit (errors.Is). x/sync's channel never
//     receives anything then (golang/go#52557).
//   - A call costs more than with x/sync: a message to a shard actor and a
//     hand-off of fn to a worker goroutine, about a microsecond more per
//     call (BenchmarkGroup and BenchmarkDoChan measure both side by side;
//     figures in
//     https://github.com/actorflight/flight/blob/main/docs/performance.md).
//     It matters when the deduplicated work
//     itself takes microseconds, not when it is a database or network call.
package singleflight
