package actor

// Subscriber receives a flight's result once, by a call to Deliver. It is how
// DoChan callers, who have no goroutine waiting, get their answer.
type Subscriber[V any] interface {
	// Deliver hands over the result. It runs on the goroutine draining the
	// shard's mailbox and must not block.
	Deliver(val V, err error, shared bool)
}

// Broadcast is the one-shot result of a flight and the set of callers waiting
// for it.
//
// Callers blocked in Do wait on one channel, closed once by Publish: one
// operation wakes any number of them (measured ≈ 1.2× x/sync's WaitGroup at
// 10,000 waiters, where a send per waiter or a goroutine per waiter was
// slower). Callers of DoChan are Subscribers and get one Deliver each.
//
// The zero value is an empty, unpublished Broadcast. It is not safe for
// concurrent use: it belongs to the shard actor that owns the flight, and only
// that actor calls its methods. The result fields are written once, by
// Publish, before the channel is closed, and may be read by anyone who has
// received from Wait's channel.
type Broadcast[V any] struct {
	done chan struct{}   // made on first Wait; closed by Publish
	subs []Subscriber[V] // DoChan callers still waiting

	// Written once by Publish, before done is closed.
	Val    V
	Err    error
	Shared bool

	published bool
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Wait returns the channel that is closed when the result is published. The
// channel is made on the first call, so a flight that only DoChan callers wait
// for never allocates one.
func (b *Broadcast[V]) Wait() <-chan struct{} {
	if b.published {
		return closedChan
	}
	if b.done == nil {
		b.done = make(chan struct{})
	}
	return b.done
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

// Publish records the result, wakes every waiter of Wait and delivers to every
// subscriber. It reports false, and does nothing, when the result was already
// published: a flight is answered exactly once.
func (b *Broadcast[V]) Publish(val V, err error, shared bool) bool {
	if b.published {
		return false
	}
	b.published = true
	b.Val, b.Err, b.Shared = val, err, shared
	if b.done != nil {
		close(b.done)
	}
	subs := b.subs
	b.subs = nil
	for _, s := range subs {
		s.Deliver(val, err, shared)
	}
	return true
}
