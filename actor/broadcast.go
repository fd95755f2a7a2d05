package actor

// Subscriber receives a flight's result once, by a call to Deliver. It is how
// DoChan callers, who have no goroutine waiting, get their answer.
type Subscriber[V any] interface {
	// Deliver hands over the result. It runs on the goroutine draining the
	// shard's mailbox and must not block.
	Deliver(val V, err error, shared bool)
}

// broadcast is the one-shot result of a flight and the DoChan callers waiting
// for it: each is a Subscriber and gets one Deliver. (Do callers are answered
// on their own waiters: see Waiter.Signal and Flight.answerQueued.)
//
// The zero value is an empty, unpublished broadcast. It is not safe for
// concurrent use: it belongs to the shard actor that owns the flight, and only
// that actor calls its methods and reads its result fields, written once by
// deliverAll.
type broadcast[V any] struct {
	subs []Subscriber[V] // DoChan callers still waiting

	// Written once, by deliverAll.
	Val    V
	Err    error
	Shared bool

	published bool
}

// subscribe adds s and returns its slot, to be given back to unsubscribe.
func (b *broadcast[V]) subscribe(s Subscriber[V]) int {
	b.subs = append(b.subs, s)
	return len(b.subs) - 1
}

// unsubscribe removes the subscriber at slot in O(1) by moving the last one
// into its place, and returns the subscriber that moved (nil if none did);
// the caller must tell that one its new slot.
func (b *broadcast[V]) unsubscribe(slot int) (moved Subscriber[V]) {
	last := len(b.subs) - 1
	if slot != last {
		moved = b.subs[last]
		b.subs[slot] = moved
	}
	b.subs[last] = nil
	b.subs = b.subs[:last]
	return moved
}

// isPublished reports whether deliverAll has run.
func (b *broadcast[V]) isPublished() bool { return b.published }

// deliverAll records the result and delivers it to every subscriber. It
// reports false, and does nothing, when the result was already published: a flight is answered exactly once.
func (b *broadcast[V]) deliverAll(val V, err error, shared bool) bool {
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
