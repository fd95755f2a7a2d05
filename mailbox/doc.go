// Package mailbox holds the parts of a shard's message path that are not the
// per-key logic: the protoactor mailbox the shard actors run on ([Mailbox],
// [Props]), bounded admission for flights ([Limit]) and the one-shot result
// broadcast of a flight to its waiters ([Broadcast]).
//
// # Dispatch policy
//
// Shard actors are drained the way protoactor's synchronized dispatcher
// drains a mailbox: the goroutine that posts a message to an idle shard
// drains the shard's mailbox itself, and a goroutine that posts to a busy
// shard only enqueues. ([Mailbox] does this itself, without the per-post
// closure of protoactor's default mailbox; see its doc for the figures.) No goroutine exists for
// a shard between messages, so an idle coordinator holds none, and a round
// trip costs about 0.35 µs instead of the ≈ 6 µs of the default dispatcher,
// which starts a goroutine every time a mailbox turns busy (figures measured
// on protoactor-go v0.0.0-20240822202345-3c0e61ca19c9, see DESIGN.md §3). The
// price is that a handler runs on whichever goroutine posted, so shard
// handlers must never block: they only touch maps and counters, close
// channels, send once on channels with a free buffer slot, and hand fn to a
// worker goroutine.
//
// # Admission
//
// protoactor's bounded mailboxes do not fit admission control (BoundedDropping
// busy-loops, protoactor #403; Bounded allocates its whole ring at spawn), so
// the shard counts waiters per key itself and [Limit] counts flights across
// shards.
package mailbox
