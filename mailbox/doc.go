// Package mailbox is the protoactor mailbox the shard actors of a flight
// coordinator run on ([Mailbox], made through [Props]).
//
// It is part of flight's engine: the root package flight is the API, and
// this package carries no compatibility promise.
//
// # Dispatch policy
//
// Shard actors are drained the way protoactor's synchronized dispatcher
// drains a mailbox: the goroutine that posts a message to an idle shard
// drains the shard's mailbox itself, and a goroutine that posts to a busy
// shard only enqueues. A poster handles at most a bounded number of
// messages: if others keep posting, it hands the rest to a goroutine of its
// own, which exits when the mailbox is empty, so that no caller is kept
// draining a flood for others. No goroutine exists for a shard between
// messages, so an idle coordinator holds none, and a round trip costs a fraction of a
// microsecond, where protoactor's default dispatcher starts a goroutine
// every time a mailbox turns busy (several microseconds). The price is that a
// handler runs on whichever goroutine posted, so shard handlers must never
// block: they only touch maps and counters, close channels, send once on
// channels with a free buffer slot, and hand fn to a worker goroutine.
//
// # Posting directly
//
// A shard's hot messages are posted with [Mailbox.Post], in a [Node] the
// message carries inside itself: one compare-and-swap, no protoactor send
// path, no allocation. Messages sent the protoactor way (RootContext.Send)
// enter the same FIFO. The drainer takes every posted message at once and
// handles them in posting order (see [Mailbox]).
package mailbox
