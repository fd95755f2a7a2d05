package actor

// Subscriber receives a flight's result once, by a call to Deliver. It is how
// DoChan callers, who have no goroutine waiting, get their answer.
type Subscriber[V any] interface {
	// Deliver hands over the result. It runs on the goroutine draining the
	// shard's mailbox and must not block.
	Deliver(val V, err error, shared bool)
}

// Broadcast is the one-shot result of a flight and the DoChan callers waiting
// for it: each is a Subscriber and gets one Deliver. (Do callers are answered
// on their own waiters, see Waiter.Signal and Flight.answerQueued: one
// channel closed for all of them was the design before, see docs/design.md.)
//
// The zero value is an empty, unpublished Broadcast. It is not safe for
// concurrent use: it belongs to the shard actor that owns the flight, and only
// that actor calls its methods and reads its result fields, written once by
// Publish.
type Broadcast[V any] struct {
	subs []Subscriber[V] // DoChan callers still waiting

	// Written once by Publish, before done is closed.
	Val    V
	Err    error
	Shared bool

	published bool
}

// Subscribe adds s and returns its slot, to be given back to Unsubscribe.
func (b *Broadcast[V]) Subscribe(s Subscriber[V]) int {
	b.subs = append(b.subs, s)
	return len(b.subs) - 1
}

// Unsubscribe removes the subscriber at slot in O(1) by moving the last one
// into its place, and returns the subscriber that moved (nil if none did);
// the caller must tell that one its new slot.
func (b *Broadcast[V]) Unsubscribe(slot int) (moved Subscriber[V]) {
	last := len(b.subs) - 1
	if slot != last {
		moved = b.subs[last]
		b.subs[slot] = moved
	}
	b.subs[last] = nil
	b.subs = b.subs[:last]
	return moved
}

// Published reports whether Publish has run.
func (b *Broadcast[V]) Published() bool { return b.published }

// Publish records the result and delivers it to every subscriber. It reports false, and does nothing, when the result was already
// published: a flight is answered exactly once.
func (b *Broadcast[V]) Publish(val V, err error, shared bool) bool {
	if b.published {
		return false
	}
	b.published = true
	b.Val, b.Err, b.Shared = val, err, shared
	subs := b.subs
	b.subs = nil
	for _, s := range subs {
		s.Deliver(val, err, shared)
	}
	return true
}
