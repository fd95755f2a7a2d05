package actor

import "github.com/actorflight/flight/mailbox"

// DoneNode returns the Done message about f as a node for its shard's
// mailbox (mailbox.Post), carried inside f: posting it allocates nothing.
// A flight is posted as Done once per attempt, and only after the previous
// Done was handled, so one node is enough.
func (f *Flight[K, V]) DoneNode() *mailbox.Node {
	f.node.Msg = Done[K, V]{f}
	return &f.node
}

// LeaveNode returns the Leave message about w as a node for its shard's
// mailbox, carried inside w. A caller leaves at most once per call.
func (w *Waiter[K, V]) LeaveNode() *mailbox.Node {
	w.node.Msg = Leave[K, V]{w}
	return &w.node
}
