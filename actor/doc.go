// Package actor is the per-key actor of a flight coordinator: [Owner] owns
// one key's flights, [Flight] is one execution of fn and the callers that
// share it, [Waiter] is one caller's place in it (a DoChan caller gets its
// result as a [Subscriber]), [Limit] bounds the flights across keys, and
// [Pool] runs fn on warm worker goroutines with panic and runtime.Goexit
// detection ([Flight.Run]).
//
// It is part of flight's engine: the root package flight is the API, and
// this package carries no compatibility promise.
//
// # Which actor
//
// An Owner has no mailbox and no goroutine of its own: its shard supervisor
// (package coordinator, a real protoactor actor) handles every message about
// it — join, leave, done, expired, forget, close — one at a time, and calls
// the matching Owner method. The key is still owned by an actor spawned on
// demand: the Owner is made on the key's first call, serializes the key's
// executions, broadcasts results to the queued callers, and is retired
// (dropped from the shard's map) the moment it has no flight, so an idle key
// costs nothing. (Why not a protoactor child actor per key:
// https://github.com/actorflight/flight/blob/main/docs/design.md.)
//
// # Ownership
//
// Every Owner and Flight field belongs to the shard actor, except the ones a
// worker writes before it posts Done (documented on Flight). Callers touch a
// Waiter only before posting it and after the shard has signalled it (the
// signal word, Waiter.Signal and Park, orders the shard's writes before the
// caller's reads), except for its Wake channel, which a caller makes in Park
// before it sets the parked bit the shard reads first; no caller reads a
// Flight after it is woken, which is what lets a shard reuse an owner and
// its first flight (Owner.Recyclable), and, where fn never sees it
// (Env.PrivateCtx), the flight's context.
package actor
