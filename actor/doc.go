// Package actor is the per-key flight actor of a coordinator: [Key] owns one
// key's flights, [Flight] is one execution of fn and the callers that share
// it, [Waiter] is one caller's place in it, and [Pool] runs fn on warm worker
// goroutines with panic and runtime.Goexit detection ([Flight.Run]).
//
// # Which actor
//
// DESIGN.md §3 leaves three shapes open for the key actor: a full protoactor
// child actor per key, a lighter actor built from protoactor's mailbox parts,
// or a per-key state machine whose every change is a message handled by its
// shard's mailbox. This package is the third: a Key has no mailbox and no
// goroutine of its own; its shard supervisor (package coordinator, a real
// protoactor actor) handles every message about it — join, leave, done,
// expired, forget, close — one at a time, and calls the matching Key method.
// The key is still "owned by an actor spawned on demand": it is made on the
// key's first call, serializes the key's executions, broadcasts results to
// the queued callers, and is retired (dropped from the shard's map) the
// moment it has no flight, so an idle key costs nothing.
//
// The reason is cost, measured on this machine (2 cores, distinct-key Do with
// a no-op fn under RunParallel; x/sync ≈ 0.3–0.45 µs in the same runs):
//
//	full protoactor child per key, default dispatcher    17–22 µs, 35 allocs (DESIGN.md §3)
//	shard-owned state, synchronized dispatcher, fresh fn goroutine   6.7 µs (DESIGN.md §3)
//	this package, first version (fn on a warm worker, a timer per park,
//	  stdlib flight context, a call and a channel per Do)           3.2 µs, 9 allocs, 656 B
//	+ one pool-level reaper timer instead of a timer per park,
//	  flight context embedded in the Flight, recycled Do calls
//	  with their own wake channel, per-shard Close accounting       2.0 µs, 5 allocs, 416 B
//	+ Flight shrunk from 320 to 208 bytes (rare state behind a
//	  pointer)                                                      1.6–2.0 µs, 5 allocs, 304 B
//	+ the shard's own protoactor Mailbox (package mailbox), without
//	  the default mailbox's closure per idle→busy switch              1.65–1.85 µs, 4 allocs, 304 B
//
// resenje.org/singleflight, which starts a goroutine per flight, measured
// 1.5–1.9 µs in the same runs (flight/resenje ≈ 1.0). A protoactor child per key pays a spawn, a
// registry entry, a mailbox and a stop per flight on top of the same two
// messages, so it cannot get near these figures; a MessageInvoker on a bare
// protoactor mailbox would still need the shard to route to it, adding a
// third hop.
//
// # Where the time goes
//
// A flight is two messages to its shard (join, done), one hand-off of fn to a
// parked worker and one wake-up of the caller: about half of the CPU profile
// is protoactor's send path and mailbox loop (RootContext.Send →
// defaultMailbox.PostUserMessage → processMessages → InvokeUserMessage), a
// fifth is the scheduler (two goroutine switches), a fifth allocation and GC.
// The design change that would close most of the remaining gap to x/sync is
// to run fn on the caller's own goroutine when the caller is Do with a
// context that cannot be cancelled (DESIGN.md §3 measured 1.9 µs → ≈ 4.7×
// for the older design); it is not done because then a runtime.Goexit in fn
// would end the caller's goroutine instead of returning ErrGoexit to it
// (DESIGN.md §2 rule 5), and a timeout could not answer that caller early.
//
// # Ownership
//
// Every Key and Flight field belongs to the shard actor, except the ones a
// worker writes before it posts Done (documented on Flight). Callers touch a
// Waiter only before posting it and after the shard has answered it.
package actor
