// Package gate counts the goroutines that may still post to an actor, so
// that a Close can stop the actor only when nobody will post to it again (a
// post to a stopped protoactor actor becomes a dead letter, and protoactor
// starts a goroutine to throttle dead-letter logging).
package gate

import "sync/atomic"

// Gate is entered before a post and exited after it; Close refuses later
// entries and Wait waits for those already in.
//
// Make one with New; the zero value is not usable. Enter and Exit cost two
// atomic adds and two loads on the gate's own cache line. The ordering
// argument is Dekker's: Close stores closed before Wait loads n, Enter adds
// to n before it loads closed, and all four are sequentially consistent, so
// either Enter sees closed or Wait sees the entry.
type Gate struct {
	n      atomic.Int64
	closed atomic.Bool
	wake   chan struct{} // capacity 1; a token each time n drops to 0 after Close
}

// New returns an open gate.
func New() Gate { return Gate{wake: make(chan struct{}, 1)} }

// Enter reports whether the caller may post; if so it must call Exit.
func (g *Gate) Enter() bool {
	g.n.Add(1)
	if g.closed.Load() {
		g.Exit()
		return false
	}
	return true
}

// Exit leaves the gate.
func (g *Gate) Exit() {
	if g.n.Add(-1) == 0 && g.closed.Load() {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// Close refuses later entries.
func (g *Gate) Close() { g.closed.Store(true) }

// Closed reports whether Close has been called.
func (g *Gate) Closed() bool { return g.closed.Load() }

// Wait waits until every goroutine that entered before Close has exited.
func (g *Gate) Wait() {
	for g.n.Load() != 0 {
		<-g.wake
	}
}
